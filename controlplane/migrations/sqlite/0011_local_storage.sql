-- Local-files storages (Label Studio's /api/storages/localfiles and
-- /api/storages/export/localfiles): a directory under the administrator's root
-- (local_files_root) whose files become tasks when synced (direction 'import'), or where
-- annotations are written (direction 'export').
create table local_storage (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    title text not null default '',
    description text not null default '',
    -- absolute path, under local_files_root when it was set
    path text not null,
    regex_filter text not null default '',
    use_blob_urls boolean not null default false,
    -- 'import' (source) or 'export' (target)
    direction text not null default 'import',
    -- export: delete an annotation's file when the annotation is deleted
    can_delete_objects boolean not null default false,
    -- initialized, queued, in_progress, completed or failed (Label Studio's states)
    status text not null default 'initialized',
    traceback text,
    last_sync bigint,
    last_sync_count bigint,
    last_sync_job text,
    created_at bigint not null,
    updated_at bigint not null
);

create index local_storage_project on local_storage (project_id, direction, id);

-- The objects a sync imported, so a re-sync imports only new ones. Written in the transaction
-- that creates the tasks; the unique key makes a concurrent second sync of the same object fail
-- instead of duplicating its tasks.
create table storage_object (
    storage_kind text not null,
    storage_id bigint not null,
    object_key text not null,
    tasks bigint not null,
    created_at bigint not null,
    primary key (storage_kind, storage_id, object_key)
);
