-- S3 storages (Label Studio's /api/storages/s3 and /api/storages/export/s3): a bucket and
-- prefix whose objects become tasks when synced (direction 'import'), or where annotations are
-- written as <prefix>/<annotation id> (direction 'export'). Credentials are sealed (ADR 0016)
-- and never returned by the API.
create table s3_storage (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    direction text not null default 'import',
    title text not null default '',
    description text not null default '',
    bucket text not null,
    prefix text not null default '',
    regex_filter text not null default '',
    use_blob_urls boolean not null default false,
    presign boolean not null default true,
    -- minutes, as in Label Studio
    presign_ttl bigint not null default 1,
    recursive_scan boolean not null default false,
    region_name text not null default '',
    s3_endpoint text not null default '',
    -- sealed (secrets.rs); empty when not set
    aws_access_key_id text not null default '',
    aws_secret_access_key text not null default '',
    aws_session_token text not null default '',
    can_delete_objects boolean not null default false,
    status text not null default 'initialized',
    traceback text,
    -- JSON: the last sync's counters (listed, new, changed, skipped, missing objects)
    meta text not null default '{}',
    last_sync bigint,
    last_sync_count bigint,
    last_sync_job text,
    created_at bigint not null,
    updated_at bigint not null
);

create index s3_storage_project on s3_storage (project_id, direction, id);

-- What a sync saw of each object, so that a re-sync imports only new or changed objects
-- (local-files rows leave them null).
alter table storage_object add column etag text;
alter table storage_object add column size bigint;
