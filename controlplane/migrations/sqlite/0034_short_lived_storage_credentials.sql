-- Short-lived storage credentials (ADR 0054): an S3 storage may name an IAM role to assume
-- (with an optional external id), an Azure storage may sign in as a service principal (its
-- client secret sealed like the other credentials, never returned).
alter table cloud_storage add column role_arn text not null default '';
alter table cloud_storage add column external_id text not null default '';
alter table cloud_storage add column tenant_id text not null default '';
alter table cloud_storage add column client_id text not null default '';
alter table cloud_storage add column client_secret text not null default '';
