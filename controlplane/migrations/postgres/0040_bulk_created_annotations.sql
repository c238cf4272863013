-- Bulk labeling (ADR 0061): annotations made by `POST /api/annotations/bulk/` (or the data
-- page's "Label selected tasks") carry `bulk_created`, as Label Studio Enterprise shows it.
alter table annotation add column bulk_created boolean not null default false;
