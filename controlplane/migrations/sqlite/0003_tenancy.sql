-- Tenancy: workspaces, memberships, project roles, pauses, invitations and the audit log.
-- Projects live in workspaces; people reach a project through their organization role,
-- a workspace membership or a project membership (see src/authz.rs for the rules).

alter table organization add column slug text;
alter table organization add column managed_by text;
alter table organization add column audit_retention_days bigint not null default 180;
create unique index organization_slug_key on organization (slug);

-- Users belong to the organization that created them: the same email may exist in two
-- organizations as two unrelated accounts, so one tenant never learns about another's users.
alter table app_user add column home_organization_id bigint references organization (id);
update app_user set home_organization_id = active_organization_id;
drop index app_user_email_key;
create unique index app_user_home_email_key on app_user (home_organization_id, lower(email));

-- A deactivated member keeps every row they authored but can no longer sign in here.
alter table org_member add column deactivated_at bigint;

create table workspace (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    key text,
    title text not null,
    description text not null default '',
    color text not null default '',
    is_personal integer not null default 0,
    is_archived integer not null default 0,
    managed_by text,
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    updated_at bigint not null
);
create unique index workspace_org_key on workspace (organization_id, key);
create index workspace_org on workspace (organization_id, id);

create table workspace_member (
    workspace_id bigint not null references workspace (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    created_at bigint not null,
    primary key (workspace_id, user_id)
);
create index workspace_member_user on workspace_member (user_id);

alter table project add column workspace_id bigint references workspace (id) on delete set null;
alter table project add column is_archived integer not null default 0;
alter table project add column admin_key text;
alter table project add column managed_by text;
alter table project add column managed_fields text not null default '[]';
create unique index project_org_admin_key on project (organization_id, admin_key);
create index project_workspace on project (workspace_id);

create table project_member (
    project_id bigint not null references project (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    role text,
    created_at bigint not null,
    primary key (project_id, user_id)
);
create index project_member_user on project_member (user_id);

create table project_pause (
    id integer primary key,
    project_id bigint not null references project (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    reason text not null,
    verbose_reason text not null default '',
    paused_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    deleted_at bigint
);
create index project_pause_member on project_pause (project_id, user_id);

create table invitation (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    token_hash text not null,
    preview text not null,
    role text not null,
    workspace_id bigint references workspace (id) on delete cascade,
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    expires_at bigint not null,
    used_at bigint,
    used_by bigint references app_user (id) on delete set null,
    revoked_at bigint
);
create unique index invitation_token_key on invitation (token_hash);
create index invitation_org on invitation (organization_id, id);

-- The audit log: one hash chain per organization (chain 0 holds instance-level events such as
-- failed sign-ins with unknown credentials). audit_head keeps each chain's last link, and is
-- updated in the same transaction as the change the entry describes.
create table audit_head (
    chain_id bigint primary key,
    seq bigint not null,
    hash text not null
);

create table audit_log (
    id integer primary key,
    chain_id bigint not null,
    seq bigint not null,
    organization_id bigint,
    actor_id bigint,
    actor_email text not null,
    action text not null,
    outcome text not null,
    target_type text not null,
    target_id text not null,
    summary text not null,
    request_id text not null,
    client_ip text not null,
    user_agent text not null,
    created_at bigint not null,
    prev_hash text not null,
    hash text not null
);
create unique index audit_log_chain_seq on audit_log (chain_id, seq);
create index audit_log_chain_id on audit_log (chain_id, id);
create index audit_log_chain_actor on audit_log (chain_id, actor_id, id);
create index audit_log_chain_action on audit_log (chain_id, action, id);
create index audit_log_chain_target on audit_log (chain_id, target_type, target_id, id);
create index audit_log_chain_time on audit_log (chain_id, created_at);

-- Where verification of a purged chain starts: the last purged link.
create table audit_anchor (
    chain_id bigint primary key,
    seq bigint not null,
    hash text not null
);

-- The purge job inserts a permit for its chain, deletes, and removes the permit in one
-- transaction; without a permit the database refuses to change or remove entries.
create table audit_purge_permit (
    chain_id bigint primary key
);

create trigger audit_log_no_update before update on audit_log
begin
    select raise(abort, 'audit_log is append-only: UPDATE refused');
end;

create trigger audit_log_no_delete before delete on audit_log
    when not exists (select 1 from audit_purge_permit where chain_id = old.chain_id)
begin
    select raise(abort, 'audit_log is append-only: DELETE refused');
end;

-- Sources a token has been used from, so the first use from a new one is audited.
create table token_source (
    token_key text not null,
    client_ip text not null,
    first_seen bigint not null,
    primary key (token_key, client_ip)
);

-- Every chain starts at the genesis link: the instance chain and one per organization.
insert into audit_head (chain_id, seq, hash)
    values (0, 0, '0000000000000000000000000000000000000000000000000000000000000000');
insert into audit_head (chain_id, seq, hash)
    select id, 0, '0000000000000000000000000000000000000000000000000000000000000000' from organization;
