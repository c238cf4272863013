-- Postponed drafts (ADR 0003 addendum): the label stream serves a user's postponed tasks after
-- every other queue, the longest postponed first. This holds just the postponed drafts, by
-- project and user in that order, so the postponed queue reads the user's few rows and never
-- the project's tasks.
create index annotation_draft_postponed on annotation_draft (project_id, user_id, updated_at, id)
    where was_postponed;
