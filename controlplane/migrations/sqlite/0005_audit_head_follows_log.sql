-- The chain's head takes the hash of the entry that advanced it, inside the insert: the audit
-- macro reserves the next sequence number on audit_head and inserts the entry, one statement
-- less per audited change.
create trigger audit_log_advance_head after insert on audit_log
begin
    update audit_head set hash = new.hash where chain_id = new.chain_id and seq = new.seq;
end;
