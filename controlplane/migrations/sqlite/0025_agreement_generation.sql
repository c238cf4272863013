-- Project-wide agreement refreshes run as jobs (ADR 0035). A change of the labeling
-- configuration or of the control weights bumps agreement_generation in the transaction that
-- makes it; the `agreement.refresh` job recomputes every task's stored agreement in short
-- batches and then records the generation it finished in agreement_generation_done. The two
-- differ exactly while the stored values may be stale: a durable marker that a lost job
-- cannot erase (a sweep enqueues the refresh again).
alter table project add column agreement_generation bigint not null default 0;
alter table project add column agreement_generation_done bigint not null default 0;
