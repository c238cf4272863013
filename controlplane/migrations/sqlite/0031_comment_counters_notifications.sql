-- Comment counters on tasks and notifications (ADR 0051).
-- The counters are refreshed for a task in the transaction of every write that changes its
-- comments; existing comments are counted here once.
alter table task add column comment_count bigint not null default 0;
alter table task add column unresolved_comment_count bigint not null default 0;
alter table task add column last_comment_updated_at bigint;
alter table task add column comment_authors text not null default '[]';
create index review_comment_task on review_comment (task_id);
update task set
    comment_count = (select count(*) from review_comment c where c.task_id = task.id),
    unresolved_comment_count = (select count(*) from review_comment c
        where c.task_id = task.id and not c.is_resolved),
    last_comment_updated_at = (select max(c.updated_at) from review_comment c where c.task_id = task.id),
    comment_authors = (select json_group_array(x.created_by) from (select distinct c.created_by from review_comment c where c.task_id = task.id and c.created_by is not null order by c.created_by) x)
where exists (select 1 from review_comment c where c.task_id = task.id);

-- A user's notification of a comment on an annotation: who is told follows ADR 0051.
create table notification (
    id integer primary key,
    user_id bigint not null references app_user (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    task_id bigint not null,
    annotation_id bigint references annotation (id) on delete cascade,
    comment_id bigint references review_comment (id) on delete cascade,
    kind text not null,
    created_by bigint references app_user (id) on delete set null,
    is_read integer not null default 0,
    created_at bigint not null,
    read_at bigint
);
create index notification_user on notification (user_id, is_read, id);
create index notification_comment on notification (comment_id);
