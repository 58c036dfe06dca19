-- A write batch's audit records and the chain head's move, as one call the batch sends in the
-- same message as its COMMIT (the host's `ChainHead`). The batch hashed its records onto the head
-- it believes current; if the head is elsewhere (another process, or a transaction that appended
-- on its own, moved it, or the batch it hashed onto rolled back), nothing is written and the call
-- fails as a serialization failure, which aborts the COMMIT sent with it: the batch runs again.
-- A call that waited for the head row's lock compares with the head as its holder committed it.
CREATE FUNCTION append_audit_batch(
    records JSON,
    believed_seq BIGINT,
    believed_hash TEXT,
    believed_keyed_from BIGINT,
    new_seq BIGINT,
    new_hash TEXT
) RETURNS VOID AS $$
BEGIN
    UPDATE audit_head SET seq = new_seq, hash = new_hash
     WHERE id = 1 AND seq = believed_seq AND hash = believed_hash AND keyed_from = believed_keyed_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the audit chain head moved: this batch hashed its records onto another head'
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO audit_log SELECT * FROM json_populate_recordset(NULL::audit_log, records);
END;
$$ LANGUAGE plpgsql;
