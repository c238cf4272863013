-- Uploaded files kept as Label Studio keeps them (ADR 0032): media files and task files of a
-- multipart import are stored under <data_dir>/upload/<project>/<file>, served at
-- /data/upload/<project>/<file>, and recorded here. Tasks made of an upload point at it.
create table file_upload (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    -- the stored name, unique in the project's directory: <8 hex>-<sanitized original name>
    file text not null,
    size bigint not null,
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null
);

create unique index file_upload_project_file on file_upload (project_id, file);

alter table task add column file_upload_id bigint references file_upload (id) on delete set null;

create index task_file_upload on task (file_upload_id);
