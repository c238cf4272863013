-- Imports run as jobs (`POST /api/projects/{id}/import?async=true`): the upload is kept here
-- until the job has imported it, so a worker in another process or pod can read it, and a
-- retried job finds it again. The files are deleted when the import ends.
create table project_import (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    created_by bigint references app_user (id) on delete set null,
    -- created, in_progress, completed or failed (Label Studio's states)
    status text not null default 'created',
    job_id text,
    error text,
    return_task_ids boolean not null default false,
    -- the import summary once completed (JSON)
    summary text,
    created_at bigint not null,
    finished_at bigint
);

create index project_import_project on project_import (project_id, id);

create table project_import_file (
    import_id bigint not null references project_import (id) on delete cascade,
    seq bigint not null,
    format text not null,
    extension text not null,
    body blob not null,
    primary key (import_id, seq)
);
