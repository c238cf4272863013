-- Imports run as jobs take everything a synchronous import takes (ADR 0042): a URL the job
-- fetches, the preannotated_from_fields it applies (a JSON list), and for each stored file
-- the upload it was kept as under <data_dir>/upload/<project>/ (its file_upload row is
-- written by the job's transaction, as the synchronous import writes it).
alter table project_import add column url text;
alter table project_import add column preannotated_from_fields text;
alter table project_import_file add column upload_file text;
alter table project_import_file add column upload_size bigint;
