-- Label Studio Enterprise's storage types that are a provider with one way of signing in (ADR
-- 0054 addendum): '' for the plain `s3`, `gcs` and `azure` types, `s3s` for S3 by role
-- assumption, `azure_spi` for Azure Blob by service principal. Each type's routes find only
-- its own storages; media, sync and exports go by `provider` as before.
alter table cloud_storage add column variant text not null default '';
