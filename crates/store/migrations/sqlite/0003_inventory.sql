-- Hardware token inventory: seeds imported unassigned (PSKC, CSV), then
-- assigned to a user (a token row is made from the seed) and returned.
CREATE TABLE inventory (
    id            INTEGER PRIMARY KEY,
    serial        TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('totp', 'hotp')),
    algorithm     TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits        INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period        INTEGER CHECK (period IS NULL OR period IN (30, 60)),
    secret        BLOB NOT NULL,
    -- HOTP: next counter; TOTP: lowest step still accepted (kept across
    -- assignments, so codes used by one holder stay used).
    counter       INTEGER NOT NULL DEFAULT 0,
    manufacturer  TEXT,
    model         TEXT,
    -- The token made from this seed while assigned.
    token_id      INTEGER,
    imported_at   INTEGER NOT NULL
);
CREATE INDEX inventory_token ON inventory (token_id);

-- A token deleted with its user (or by `token delete`) returns its seed to
-- the inventory with the floor it had reached.
CREATE TRIGGER inventory_token_deleted AFTER DELETE ON tokens
BEGIN
    UPDATE inventory SET counter = MAX(counter, OLD.counter), token_id = NULL WHERE token_id = OLD.id;
END;
