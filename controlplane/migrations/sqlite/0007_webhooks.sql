-- Webhooks (ADR 0015). A webhook belongs to an organization and, unless it is an
-- organization-wide hook, to one project. Events wait in `webhook_event` (the outbox) until
-- they are delivered, in order, one webhook at a time; every attempt is logged in
-- `webhook_delivery`.
create table webhook (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    project_id bigint references project (id) on delete cascade,
    url text not null,
    send_payload boolean not null default true,
    send_for_all_actions boolean not null default true,
    headers text not null default '{}',
    actions text not null default '[]',
    is_active boolean not null default true,
    secret text not null,
    consecutive_failures bigint not null default 0,
    -- A delivery pass holds the webhook until this time (UTC microseconds), so one pass at a
    -- time delivers its events and their order holds.
    claimed_until bigint,
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    updated_at bigint not null
);

create index webhook_scope on webhook (organization_id, project_id);

create table webhook_event (
    id integer primary key,
    webhook_id bigint not null references webhook (id) on delete cascade,
    action text not null,
    body text not null,
    attempts bigint not null default 0,
    -- pending, delivered or failed (out of attempts)
    state text not null default 'pending',
    next_attempt_at bigint not null,
    created_at bigint not null
);

create index webhook_event_pending on webhook_event (webhook_id, state, id);

create table webhook_delivery (
    id integer primary key,
    webhook_id bigint not null references webhook (id) on delete cascade,
    event_id bigint not null,
    action text not null,
    attempt bigint not null,
    ok boolean not null,
    status_code bigint,
    latency_ms bigint not null,
    response_excerpt text not null default '',
    error text not null default '',
    created_at bigint not null
);

create index webhook_delivery_recent on webhook_delivery (webhook_id, id);
