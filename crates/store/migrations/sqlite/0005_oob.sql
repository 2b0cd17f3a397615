-- Email and SMS tokens ("out-of-band" codes, tessera_core::oob).
--
-- tokens.kind gains 'email' and 'sms', and tokens an `address` (the email
-- address or phone number codes are sent to; NULL for OTP tokens). SQLite
-- cannot alter a CHECK constraint, so the table is rebuilt with the same
-- rows and ids (users.token_state refers to them); its index and the
-- inventory trigger are recreated as they were. No table references tokens.
DROP TRIGGER inventory_token_deleted;

CREATE TABLE tokens_new (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER REFERENCES users(id) ON DELETE CASCADE,
    serial       TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('totp', 'hotp', 'email', 'sms')),
    algorithm    TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits       INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period       INTEGER CHECK (period IS NULL OR period IN (30, 60)),
    -- OTP tokens: the seed. Email/SMS tokens: a random key for the digests
    -- of the codes sent. Sealed under the master key either way.
    secret       BLOB NOT NULL,
    counter      INTEGER NOT NULL DEFAULT 0,
    drift        INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active')),
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    address      TEXT,
    CHECK ((kind IN ('email', 'sms')) = (address IS NOT NULL))
);
INSERT INTO tokens_new (id, user_id, serial, kind, algorithm, digits, period, secret, counter, drift, state,
                        description, created_at, last_used_at)
    SELECT id, user_id, serial, kind, algorithm, digits, period, secret, counter, drift, state,
           description, created_at, last_used_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TRIGGER inventory_token_deleted AFTER DELETE ON tokens
BEGIN
    UPDATE inventory SET counter = MAX(counter, OLD.counter), token_id = NULL WHERE token_id = OLD.id;
END;

-- Codes sent by email or SMS: only a keyed digest (HMAC under the token's
-- sealed secret), never the code. A row is single-use (used_at set once, by
-- a conditional update), expires, and counts toward its user's send limit
-- until it leaves the rate window; then it is pruned. No reference to
-- tokens: a code of a deleted token simply never matches.
CREATE TABLE IF NOT EXISTS oob_codes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_id   INTEGER NOT NULL,
    digest     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS oob_codes_user ON oob_codes (user_id, created_at);
