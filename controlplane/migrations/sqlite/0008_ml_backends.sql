-- ML backends (ADR 0017): model servers speaking Label Studio's ML backend protocol, connected
-- per project. Predictions they make name the backend that made them.
create table ml_backend (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    url text not null,
    title text not null default 'default',
    description text not null default '',
    -- CO connected, DI disconnected, ER error, TR training, PR predicting (Label Studio's codes)
    state text not null default 'DI',
    error_message text,
    is_interactive boolean not null default false,
    auth_method text not null default 'NONE',
    basic_auth_user text,
    -- sealed (secrets.rs), never answered
    basic_auth_pass text,
    extra_params text not null default '{}',
    model_version text not null default '',
    auto_update boolean not null default true,
    timeout double precision not null default 100,
    -- submitted or updated annotations since training was last started (automatic training)
    annotations_since_training bigint not null default 0,
    created_at bigint not null,
    updated_at bigint not null
);

create index ml_backend_project on ml_backend (project_id, id);

alter table prediction add column ml_backend_id bigint references ml_backend (id) on delete set null;
create index prediction_task_version on prediction (task_id, model_version);
