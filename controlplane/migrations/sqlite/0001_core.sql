-- Core schema of the annotation API (SQLite). Timestamps are UTC microseconds since the
-- Unix epoch (BIGINT) in both backends, so one set of repository code reads and compares them;
-- JSON payloads are TEXT so the bytes a client sent come back unchanged. See docs/adr/0002.

create table instance_setting (
    key text primary key,
    value text not null
);

create table organization (
    id integer primary key,
    title text not null,
    token text not null,
    created_at bigint not null,
    updated_at bigint not null
);

create table app_user (
    id integer primary key,
    email text not null,
    username text not null,
    first_name text not null default '',
    last_name text not null default '',
    password_hash text,
    is_active integer not null default 1,
    active_organization_id bigint references organization (id),
    date_joined bigint not null,
    last_activity bigint not null
);
create unique index app_user_email_key on app_user (lower(email));

create table org_member (
    organization_id bigint not null references organization (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    role text not null,
    created_at bigint not null,
    primary key (organization_id, user_id)
);
create index org_member_user on org_member (user_id);

create table api_token (
    id integer primary key,
    user_id bigint not null references app_user (id) on delete cascade,
    kind text not null,
    token_hash text not null,
    jti text,
    preview text not null,
    created_at bigint not null,
    expires_at bigint,
    revoked_at bigint
);
create unique index api_token_hash_key on api_token (token_hash);
create unique index api_token_jti_key on api_token (jti);
create index api_token_user on api_token (user_id);

create table project (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    title text not null,
    settings text not null,
    label_config text not null,
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    updated_at bigint not null,
    next_inner_id bigint not null default 1,
    overlapped_task_number bigint not null default 0,
    task_number bigint not null default 0,
    finished_task_number bigint not null default 0,
    total_annotations_number bigint not null default 0,
    num_tasks_with_annotations bigint not null default 0,
    useful_annotation_number bigint not null default 0,
    ground_truth_number bigint not null default 0,
    skipped_annotations_number bigint not null default 0,
    total_predictions_number bigint not null default 0
);
create index project_org on project (organization_id, id);

create table task (
    id integer primary key,
    project_id bigint not null references project (id) on delete cascade,
    inner_id bigint not null,
    data text not null,
    meta text not null,
    is_labeled integer not null default 0,
    overlap bigint not null default 1,
    total_annotations bigint not null default 0,
    cancelled_annotations bigint not null default 0,
    useful_annotations bigint not null default 0,
    ground_truth_annotations bigint not null default 0,
    total_predictions bigint not null default 0,
    created_at bigint not null,
    updated_at bigint not null,
    updated_by bigint
);
create index task_project on task (project_id, id);
create index task_project_labeled on task (project_id, is_labeled, id);

create table annotation (
    id integer primary key,
    task_id bigint not null references task (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    result text,
    completed_by bigint references app_user (id) on delete set null,
    updated_by bigint,
    was_cancelled integer not null default 0,
    ground_truth integer not null default 0,
    lead_time real,
    prediction text not null default '{}',
    parent_prediction bigint,
    parent_annotation bigint,
    import_id bigint,
    last_action text,
    unique_id text not null,
    created_at bigint not null,
    updated_at bigint not null
);
create index annotation_task on annotation (task_id, id);
create index annotation_task_user on annotation (task_id, completed_by);
create index annotation_project_user on annotation (project_id, completed_by);

create table prediction (
    id integer primary key,
    task_id bigint not null references task (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    result text not null,
    score real,
    model_version text not null default '',
    cluster bigint,
    mislabeling real not null default 0,
    created_at bigint not null,
    updated_at bigint not null
);
create index prediction_task on prediction (task_id, id);
create index prediction_project on prediction (project_id, id);

create table task_lock (
    task_id bigint not null references task (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    project_id bigint not null,
    expire_at bigint not null,
    unique_id text not null,
    primary key (task_id, user_id)
);
create index task_lock_user on task_lock (project_id, user_id);

create table export_snapshot (
    id integer primary key,
    project_id bigint not null references project (id) on delete cascade,
    title text not null,
    status text not null,
    created_by bigint,
    params text not null,
    task_count bigint not null default 0,
    annotation_count bigint not null default 0,
    md5 text not null default '',
    error text,
    created_at bigint not null,
    finished_at bigint
);
create index export_snapshot_project on export_snapshot (project_id, id);
