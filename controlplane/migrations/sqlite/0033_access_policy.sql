-- An organization's access policy (ADR 0053): the storage endpoints its S3, GCS and Azure
-- storages may connect to (host names, `*.` suffixes, addresses, networks) and the networks
-- allowed to call the API on its behalf, each a JSON array of strings. No row, or an empty
-- array: no restriction.
create table access_policy (
    organization_id bigint primary key references organization (id) on delete cascade,
    storage_endpoints text not null default '[]',
    api_networks text not null default '[]',
    updated_at bigint not null
);
