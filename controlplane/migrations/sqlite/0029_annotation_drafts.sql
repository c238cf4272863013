-- Drafts (ADR 0044): a user's unsubmitted work on a task, or on one of its annotations, saved by
-- the editor's autosave and private to that user. Creating an annotation from a draft copies the
-- draft's creation time into the annotation and deletes the draft.
create table annotation_draft (
    id integer primary key,
    task_id bigint not null references task (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    annotation_id bigint references annotation (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    result text not null,
    lead_time real,
    was_postponed integer not null default 0,
    created_at bigint not null,
    updated_at bigint not null
);
create index annotation_draft_task_user on annotation_draft (task_id, user_id);
alter table annotation add column draft_created_at bigint;
