-- Review routing rules (ADR 0057): an ordered list per project; the first rule whose conditions
-- match an annotation (its annotator, a label value in its result) decides which reviewers the
-- review stream hands it to. The lists of user ids and labels are JSON text (ADR 0002). The
-- bulk endpoint replaces a project's rules in one transaction.
create table review_routing_rule (
    id integer primary key,
    project_id bigint not null references project (id) on delete cascade,
    position bigint not null,
    name text not null default '',
    annotators text not null default '[]',
    labels text not null default '[]',
    reviewers text not null default '[]',
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null,
    unique (project_id, position)
);
