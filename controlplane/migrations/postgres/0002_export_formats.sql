-- Converted formats of an export snapshot, as a JSON list of {"export_type", "status", "error"}.
alter table export_snapshot add column converted text not null default '[]';
