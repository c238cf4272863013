-- Annotations waiting to be written to (or deleted from) an export storage (ADR 0052). A row
-- per storage and annotation: repeated changes before the writer runs bump `version` instead of
-- adding rows, so they cost one write. `leased_until` is the writer's hold on the row; a row is
-- removed only when its version is still the one the writer read.
create table export_change (
    storage_kind text not null,
    storage_id bigint not null,
    annotation_id bigint not null,
    project_id bigint not null,
    version bigint not null default 1,
    leased_until bigint,
    created_at bigint not null,
    primary key (storage_kind, storage_id, annotation_id)
);
