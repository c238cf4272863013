-- Data-manager views (tabs), ADR 0033. data: the client's free JSON (title, filters,
-- ordering, hiddenColumns, …); its filters and ordering are validated like the task list's.
-- user_id: who created the view (may change and delete it; managers may change anyone's).
create table dm_view (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    user_id bigint references app_user (id) on delete set null,
    position bigint not null default 0,
    data text not null,
    created_at bigint not null,
    updated_at bigint not null
);
create index dm_view_project on dm_view (project_id, position, id);
