-- Indexes for projects of a million tasks (docs/benchmarks.md, issue 13's benchmark):
-- the label distribution pages through a project's annotations in id order, and the total
-- agreement reads only the tasks that have an agreement (those with two annotators or more),
-- not every task of the project.
create index annotation_project on annotation (project_id, id);
create index task_project_agreement on task (project_id, agreement) where agreement is not null;
-- Annotator tables count each author's submitted and skipped annotations and their lead
-- times: the same prefix as before, now covering those columns.
drop index annotation_project_user;
create index annotation_project_user on annotation (project_id, completed_by, was_cancelled, lead_time);
-- The label stream's breadth-first search (overlap above 1) looks first among tasks someone
-- has started; this holds just those. Its rework step looks for the user's rejected
-- annotations, which this holds alone.
create index task_project_started on task (project_id, is_labeled, id)
    where total_annotations + cancelled_annotations > 0;
create index annotation_rejected on annotation (project_id, completed_by, task_id)
    where last_action = 'rejected';
