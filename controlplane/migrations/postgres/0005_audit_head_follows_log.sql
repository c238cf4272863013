-- The chain's head takes the hash of the entry that advanced it, inside the insert: the audit
-- macro reserves the next sequence number on audit_head and inserts the entry, one statement
-- less per audited change.
create function audit_log_advance_head() returns trigger language plpgsql as $$
begin
    update audit_head set hash = new.hash where chain_id = new.chain_id and seq = new.seq;
    return null;
end
$$;

create trigger audit_log_advance_head after insert on audit_log
    for each row execute function audit_log_advance_head();
