-- One training of an ML backend at a time (ADR 0017): a training job claims the backend until
-- this time (UTC microseconds); a second one waits for its retry. A killed worker's claim runs
-- out by itself.
alter table ml_backend add column training_until bigint;
