-- The data manager's exact totals at a million tasks (ADR 0059, addendum of session 23): a
-- filter on a task's annotation count ("labeled", "not labeled", "more than N annotations")
-- counts index entries instead of reading every task of the project.
create index task_project_annotations on task (project_id, total_annotations);
