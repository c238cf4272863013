-- Comments of their own (ADR 0038): besides those written with a review, people comment on
-- an annotation directly, optionally on one of its regions, and resolve them.
alter table review_comment add column region_ref text;
alter table review_comment add column classifications text;
alter table review_comment add column resolved_at bigint;
