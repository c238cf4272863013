-- GCS and Azure Blob storages share the S3 storages' table, sync, media and export code (ADR
-- 0028): the table becomes cloud_storage with a provider column ('s3', 'gcs', 'azure').
-- Azure's container is kept in bucket; endpoint is s3_endpoint / gcs_endpoint / azure_endpoint
-- of the API. New credentials are sealed (secrets.rs) and never returned, like the AWS keys.
alter table s3_storage rename to cloud_storage;
alter table cloud_storage rename column s3_endpoint to endpoint;
alter table cloud_storage add column provider text not null default 's3';
alter table cloud_storage add column google_project_id text not null default '';
-- sealed service-account JSON; empty when not set
alter table cloud_storage add column google_application_credentials text not null default '';
alter table cloud_storage add column account_name text not null default '';
-- sealed; empty when not set
alter table cloud_storage add column account_key text not null default '';

drop index s3_storage_project;
create index cloud_storage_project on cloud_storage (project_id, provider, direction, id);
