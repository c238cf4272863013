-- The periodic purge forgets (credential, address) pairs by age.
create index token_source_first_seen on token_source (first_seen);
