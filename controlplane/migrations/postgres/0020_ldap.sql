-- LDAP sign-in per organization (ADR 0030).
-- The directory settings of an organization (JSON without the service password: server URI,
-- StartTLS, CA, bind DN, user and group search, attribute and group mappings); the service
-- account's password sealed like other stored credentials (secrets.rs, purpose `ldap.bind_password`).
create table ldap_settings (
    organization_id bigint primary key references organization (id) on delete cascade,
    enabled boolean not null,
    native_login_disabled boolean not null,
    settings text not null,
    bind_password text,
    updated_at bigint not null
);

-- Email domains whose sign-ins go to an organization's directory; a domain routes to one
-- organization only.
create table ldap_domain (
    domain text primary key,
    organization_id bigint not null references organization (id) on delete cascade
);
create index ldap_domain_org on ldap_domain (organization_id);
