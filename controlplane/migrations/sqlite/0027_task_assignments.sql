-- Manual distribution (ADR 0039): a manager assigns tasks to annotators (type AN, for the label
-- stream in assigned_only mode) and to reviewers (type RE, for the review stream with
-- review_only_manual_assignments). One row per task, user and type; a task's deletion takes
-- its assignments with it.
create table task_assignment (
    id integer primary key,
    task_id bigint not null references task (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    type text not null check (type in ('AN', 'RE')),
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    unique (task_id, user_id, type)
);
create index task_assignment_user on task_assignment (project_id, user_id, type, task_id);
