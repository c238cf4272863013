-- SCIM 2.0 provisioning (ADR 0029).
-- One provisioning token per organization (rotating revokes the previous one); it authenticates
-- /scim/v2 of its organization only. Stored as a SHA-256 hash, like API tokens.
create table scim_token (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    token_hash text not null,
    preview text not null,
    created_at bigint not null,
    revoked_at bigint
);
create unique index scim_token_hash_key on scim_token (token_hash);
create index scim_token_org on scim_token (organization_id);

-- Group mapping settings of an organization (JSON: roles_groups, workspaces_groups,
-- projects_groups, default_role).
create table scim_settings (
    organization_id bigint primary key references organization (id) on delete cascade,
    settings text not null,
    updated_at bigint not null
);

-- A member of an organization as its identity provider provisioned them: the SCIM attributes
-- as last written (doc, JSON), and a version for ETags. deleted_at: the IdP deleted the
-- resource; the membership stays, deactivated, so authorship is kept.
create table scim_user (
    organization_id bigint not null references organization (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    doc text not null,
    version bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    deleted_at bigint,
    primary key (organization_id, user_id)
);

create table scim_group (
    id integer primary key,
    organization_id bigint not null references organization (id) on delete cascade,
    display_name text not null,
    doc text not null,
    version bigint not null,
    created_at bigint not null,
    updated_at bigint not null
);
create unique index scim_group_name_key on scim_group (organization_id, lower(display_name));

create table scim_group_member (
    group_id bigint not null references scim_group (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    primary key (group_id, user_id)
);
create index scim_group_member_user on scim_group_member (user_id);
