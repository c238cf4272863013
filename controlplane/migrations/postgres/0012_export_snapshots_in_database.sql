-- Export snapshots are written by jobs (ADR 0023) and kept here, not in a server's data
-- directory: any replica can serve a snapshot any worker wrote, and a restart loses nothing.
alter table export_snapshot add column job_id text;

-- One file of a snapshot per format (JSON, and its conversions). `writer` names the job
-- attempt that writes it; only a `completed` file is downloadable, and it is marked so in the
-- transaction that marks the snapshot (or its conversion) completed.
create table export_snapshot_file (
    snapshot_id bigint not null references export_snapshot (id) on delete cascade,
    format text not null,
    writer text not null,
    -- writing or completed
    status text not null,
    size bigint not null default 0,
    chunks bigint not null default 0,
    primary key (snapshot_id, format)
);

-- The content, in chunks of about 1 MiB (memory is bounded by a chunk, never by the project).
-- A retried job writes under a new `writer`; chunks of other writers are removed when it ends.
create table export_snapshot_chunk (
    snapshot_id bigint not null references export_snapshot (id) on delete cascade,
    format text not null,
    writer text not null,
    seq bigint not null,
    body bytea not null,
    primary key (snapshot_id, format, writer, seq)
);

-- Snapshots of earlier versions were files in one server's data directory, which this version
-- no longer reads.
update export_snapshot
set status = 'failed',
    error = 'this export was written to a server''s data directory by an earlier version and is no longer available; create a new export',
    converted = '[]'
where status <> 'failed';
