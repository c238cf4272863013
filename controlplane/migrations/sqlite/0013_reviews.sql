-- Review workflow (ADR 0024): reviews of annotations, the history of annotation results that
-- reviews replace, comments written with a review, and the review stream's reservations.

-- Earlier results of an annotation, kept when a reviewer's fix replaces them (and the fix
-- itself), readable at /api/annotations/{id}/history.
create table annotation_history (
    id integer primary key,
    annotation_id bigint not null references annotation (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    task_id bigint not null,
    -- the result as it was (null = unfinished)
    result text,
    -- what produced this version: submitted (the annotator's), fixed_and_accepted (a reviewer's)
    action text not null,
    created_by bigint references app_user (id) on delete set null,
    created_at bigint not null
);
create index annotation_history_annotation on annotation_history (annotation_id, id);

create table annotation_review (
    id integer primary key,
    annotation_id bigint not null references annotation (id) on delete cascade,
    project_id bigint not null references project (id) on delete cascade,
    task_id bigint not null,
    created_by bigint references app_user (id) on delete set null,
    accepted boolean not null,
    -- the reviewer's fixed result (fix and accept), else null
    result text,
    -- true: rejected and removed (the annotation was cancelled); false: rejected and requeued
    remove_from_queue boolean,
    started_at bigint,
    previous_annotation_history bigint references annotation_history (id) on delete set null,
    fixed_annotation_history bigint references annotation_history (id) on delete set null,
    created_at bigint not null,
    updated_at bigint not null
);
create index annotation_review_annotation on annotation_review (annotation_id, id);
create index annotation_review_task on annotation_review (task_id, accepted);
create index annotation_review_project on annotation_review (project_id, id);

-- Comments (written with a review's comment, or directly).
create table review_comment (
    id integer primary key,
    project_id bigint not null references project (id) on delete cascade,
    task_id bigint not null,
    annotation_id bigint references annotation (id) on delete cascade,
    review_id bigint references annotation_review (id) on delete set null,
    text text not null,
    created_by bigint references app_user (id) on delete set null,
    is_resolved boolean not null default false,
    created_at bigint not null,
    updated_at bigint not null
);
create index review_comment_annotation on review_comment (annotation_id, id);
create index review_comment_project on review_comment (project_id, id);

-- The review stream's reservations: one reviewer per annotation at a time.
create table review_lock (
    annotation_id bigint primary key references annotation (id) on delete cascade,
    user_id bigint not null references app_user (id) on delete cascade,
    project_id bigint not null,
    expire_at bigint not null,
    unique_id text not null
);
create index review_lock_user on review_lock (project_id, user_id);
