-- Background jobs of the SQL queue backend (the embedded default; ADR 0013). A job is leased
-- by a worker until `lease_until`; an expired lease puts it back in its queue.
create table jobs (
    id text primary key,
    organization_id bigint,
    queue text not null,
    kind text not null,
    payload text not null,
    state text not null,
    attempts bigint not null default 0,
    max_attempts bigint not null,
    timeout_ms bigint not null,
    run_at bigint not null,
    depends_on text,
    lease_token text,
    lease_until bigint,
    enqueued_at bigint not null,
    started_at bigint,
    ended_at bigint,
    progress double precision,
    result text,
    error text
);

create index jobs_ready on jobs (queue, state, run_at);
create index jobs_leases on jobs (state, lease_until);
create index jobs_dependents on jobs (depends_on) where depends_on is not null;
