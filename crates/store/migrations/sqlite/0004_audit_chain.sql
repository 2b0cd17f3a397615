-- Tamper-evident audit log: every record is chained to the previous record
-- of its node by a SHA-256 hash (tessera_core::audit::chain). Records written
-- before this migration keep NULL links; `tessera audit verify` reports them
-- as unchained (before the migration), not as tampered.
ALTER TABLE audit ADD COLUMN seq INTEGER;
ALTER TABLE audit ADD COLUMN prev_hash BLOB;
ALTER TABLE audit ADD COLUMN hash BLOB;

-- Per node: the head (the newest record, so deleting the newest records
-- shows) and the anchor the remaining records continue from: genesis
-- (seq 0, id 0, a zero hash) until pruning moves it to the last record it
-- deleted. Updated in the same transaction as the records.
CREATE TABLE audit_chain (
    node        TEXT PRIMARY KEY,
    head_seq    INTEGER NOT NULL,
    head_id     INTEGER NOT NULL,
    head_hash   BLOB NOT NULL,
    anchor_seq  INTEGER NOT NULL,
    anchor_id   INTEGER NOT NULL,
    anchor_hash BLOB NOT NULL
) WITHOUT ROWID;

-- Audit ids up to this one were written before chaining began.
INSERT INTO meta (key, value) SELECT 'audit_chain_start', COALESCE(MAX(id), 0) FROM audit;
