-- tessera schema (PostgreSQL), version 1 = the SQLite schema at its
-- version 5 (0001_init .. 0005_oob), table for table and column for column.
-- Ids are the application's random positive 63-bit integers (BIGINT), blobs
-- are BYTEA, times are Unix milliseconds (BIGINT), flags are BOOLEAN.
-- Text that is sorted or compared in order uses the "C" collation (byte
-- order, as in SQLite and Rust). Audit ids come from a sequence (SQLite uses MAX(id) + 1 under its single
-- writer; several nodes need a sequence).

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE users (
    id                  BIGINT PRIMARY KEY,
    realm               TEXT COLLATE "C" NOT NULL,
    username            TEXT COLLATE "C" NOT NULL,
    password_hash       TEXT,
    disabled            BOOLEAN NOT NULL DEFAULT FALSE,
    registered          BOOLEAN NOT NULL DEFAULT FALSE,
    failures            BIGINT NOT NULL DEFAULT 0,
    locked_at           BIGINT,
    lock_until          BIGINT,
    throttle_until      BIGINT,
    last_attempt_at     BIGINT,
    last_attempt_addr   TEXT,
    last_attempt_client TEXT,
    last_success_at     BIGINT,
    last_success_addr   TEXT,
    last_success_client TEXT,
    -- SQLite keeps the tokens' login state here (a write-path optimisation
    -- of its single writer). The PostgreSQL backend updates the tokens rows
    -- directly and leaves this NULL; the column is kept so the two schemas
    -- stay the same for export/import.
    token_state         BYTEA,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    grace_used          BIGINT NOT NULL DEFAULT 0,
    UNIQUE (realm, username)
);

CREATE TABLE tokens (
    id           BIGINT PRIMARY KEY,
    user_id      BIGINT REFERENCES users(id) ON DELETE CASCADE,
    serial       TEXT COLLATE "C" NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('totp', 'hotp', 'email', 'sms')),
    algorithm    TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits       BIGINT NOT NULL CHECK (digits IN (6, 8)),
    period       BIGINT CHECK (period IS NULL OR period IN (30, 60)),
    secret       BYTEA NOT NULL,
    counter      BIGINT NOT NULL DEFAULT 0,
    drift        BIGINT NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active')),
    description  TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    address      TEXT,
    CHECK ((kind IN ('email', 'sms')) = (address IS NOT NULL))
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE backup_codes (
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, digest)
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    digest       BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE SEQUENCE audit_id_seq;
CREATE TABLE audit (
    id        BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    node      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT,
    source    TEXT,
    client    TEXT,
    result    TEXT NOT NULL,
    reason    TEXT,
    seq       BIGINT,
    prev_hash BYTEA,
    hash      BYTEA
);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE audit_chain (
    node        TEXT COLLATE "C" PRIMARY KEY,
    head_seq    BIGINT NOT NULL,
    head_id     BIGINT NOT NULL,
    head_hash   BYTEA NOT NULL,
    anchor_seq  BIGINT NOT NULL,
    anchor_id   BIGINT NOT NULL,
    anchor_hash BYTEA NOT NULL
);

CREATE TABLE used_states (
    nonce      BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE radius_clients (
    id                    BIGINT PRIMARY KEY,
    name                  TEXT COLLATE "C" NOT NULL UNIQUE,
    address               TEXT NOT NULL,
    secret                BYTEA NOT NULL,
    message_authenticator TEXT NOT NULL CHECK (message_authenticator IN ('require', 'auto', 'off')),
    ma_seen               BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            BIGINT NOT NULL,
    default_realm         TEXT
);

CREATE TABLE group_members (
    group_name TEXT COLLATE "C" NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE reply_rules (
    id         BIGINT PRIMARY KEY,
    scope      TEXT NOT NULL CHECK (scope IN ('all', 'user', 'group')),
    subject    TEXT NOT NULL DEFAULT '',
    attribute  TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE realms (
    name       TEXT COLLATE "C" PRIMARY KEY,
    settings   TEXT NOT NULL,
    secrets    BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE inventory (
    id            BIGINT PRIMARY KEY,
    serial        TEXT COLLATE "C" NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('totp', 'hotp')),
    algorithm     TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits        BIGINT NOT NULL CHECK (digits IN (6, 8)),
    period        BIGINT CHECK (period IS NULL OR period IN (30, 60)),
    secret        BYTEA NOT NULL,
    counter       BIGINT NOT NULL DEFAULT 0,
    manufacturer  TEXT,
    model         TEXT,
    token_id      BIGINT,
    imported_at   BIGINT NOT NULL
);
CREATE INDEX inventory_token ON inventory (token_id);

-- A token deleted with its user (or by `token delete`) returns its seed to
-- the inventory with the floor it had reached.
CREATE FUNCTION inventory_token_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE inventory SET counter = GREATEST(counter, OLD.counter), token_id = NULL WHERE token_id = OLD.id;
    RETURN OLD;
END;
$$;
CREATE TRIGGER inventory_token_deleted AFTER DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION inventory_token_deleted();

CREATE TABLE oob_codes (
    id         BIGINT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_id   BIGINT NOT NULL,
    digest     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    used_at    BIGINT
);
CREATE INDEX oob_codes_user ON oob_codes (user_id, created_at);

-- Audit ids up to this one were written before chaining began (none here).
INSERT INTO meta (key, value) VALUES ('audit_chain_start', convert_to('0', 'UTF8'));
