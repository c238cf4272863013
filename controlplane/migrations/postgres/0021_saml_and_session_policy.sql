-- SAML 2.0 single sign-on (ADR 0031).
-- An organization's SAML settings (JSON: domains, attribute mapping, group mappings, manual
-- role management) and its identity provider's metadata XML (given, or fetched from its URL
-- when the settings were saved).
create table saml_settings (
    organization_id bigint primary key references organization (id) on delete cascade,
    settings text not null,
    idp_metadata text not null,
    updated_at bigint not null
);

-- AuthnRequests sent and not yet answered, by the random RelayState sent with each: the ACS
-- accepts a response to one of these (or an unsolicited one when the organization allows it),
-- once. next: where to go after sign-in.
create table saml_request (
    relay_state text primary key,
    request_id text not null,
    organization_id bigint not null references organization (id) on delete cascade,
    next text not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index saml_request_expiry on saml_request (expires_at);

-- Assertion ids already used to sign in, kept until the assertion expires: a replayed
-- response is refused.
create table saml_assertion_seen (
    organization_id bigint not null references organization (id) on delete cascade,
    assertion_id text not null,
    expires_at bigint not null,
    primary key (organization_id, assertion_id)
);
create index saml_assertion_seen_expiry on saml_assertion_seen (expires_at);

-- An organization's session policy (Label Studio Enterprise's /api/session-policy/): browser
-- sessions of its members end max_session_age minutes after sign-in, or after
-- max_time_between_activity minutes without a request. No row: the instance's defaults.
create table session_policy (
    organization_id bigint primary key references organization (id) on delete cascade,
    max_session_age bigint not null,
    max_time_between_activity bigint not null,
    updated_at bigint not null
);

-- When the session was last used (updated at most once a minute).
alter table user_session add column last_seen_at bigint not null default 0;
