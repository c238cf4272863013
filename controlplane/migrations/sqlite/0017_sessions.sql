-- Browser sign-in (ADR 0027): server-side sessions and per-account lock-out.
-- A session is found by the SHA-256 of its cookie value; the CSRF token is tied to it. Ending a
-- session deletes its row, so "sign out everywhere" is one delete.
create table user_session (
    id integer primary key,
    token_hash text not null,
    user_id bigint not null references app_user (id) on delete cascade,
    csrf_token text not null,
    created_at bigint not null,
    expires_at bigint not null,
    client_ip text not null default '',
    user_agent text not null default ''
);
create unique index user_session_hash_key on user_session (token_hash);
create index user_session_user on user_session (user_id);

-- Consecutive failed password sign-ins and, once they reach the limit, until when the account
-- refuses password sign-in.
alter table app_user add column failed_logins integer not null default 0;
alter table app_user add column locked_until bigint;
