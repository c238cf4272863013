-- A task's agreement (ADR 0025): the mean pairwise agreement of its submitted annotations, null
-- with fewer than two. Written in the transaction that creates, changes or deletes one of them.
alter table task add column agreement real;
