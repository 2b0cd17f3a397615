-- tessera schema v1 (SQLite). Keep it portable: the PostgreSQL schema mirrors
-- these tables column for column. Times are Unix milliseconds (INTEGER).
-- Ids are random positive 63-bit integers chosen by the application (no
-- sequence to coordinate between nodes); in SQLite they are the rowid.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    realm               TEXT NOT NULL,
    username            TEXT NOT NULL,
    password_hash       TEXT,
    disabled            INTEGER NOT NULL DEFAULT 0,
    registered          INTEGER NOT NULL DEFAULT 0,
    failures            INTEGER NOT NULL DEFAULT 0,
    locked_at           INTEGER,
    lock_until          INTEGER,
    throttle_until      INTEGER,
    last_attempt_at     INTEGER,
    last_attempt_addr   TEXT,
    last_attempt_client TEXT,
    last_success_at     INTEGER,
    last_success_addr   TEXT,
    last_success_client TEXT,
    -- Login state of the user's tokens (counter floor, drift, last use),
    -- newer than the tokens rows; see store/src/sqlite/token_state.rs.
    token_state         BLOB,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (realm, username)
);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER REFERENCES users(id) ON DELETE CASCADE,
    serial       TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('totp', 'hotp')),
    algorithm    TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits       INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period       INTEGER CHECK (period IS NULL OR period IN (30, 60)),
    secret       BLOB NOT NULL,
    counter      INTEGER NOT NULL DEFAULT 0,
    drift        INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active')),
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE backup_codes (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, digest)
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    digest       BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    node   TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    source TEXT,
    client TEXT,
    result TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX audit_at ON audit (at);

-- Nonces of challenge states already answered (single use); rows go when
-- the state would have expired anyway.
CREATE TABLE used_states (
    nonce      BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- RADIUS clients (NAS): matched by source address, most specific prefix
-- first. The shared secret is sealed under the master key.
CREATE TABLE radius_clients (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    address               TEXT NOT NULL,
    secret                BLOB NOT NULL,
    message_authenticator TEXT NOT NULL CHECK (message_authenticator IN ('require', 'auto', 'off')),
    ma_seen               INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL
);

-- Local groups (directory groups come from the directory).
CREATE TABLE group_members (
    group_name TEXT NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id);

-- RADIUS reply attributes added to Access-Accept, by user, group or for all.
CREATE TABLE reply_rules (
    id         INTEGER PRIMARY KEY,
    scope      TEXT NOT NULL CHECK (scope IN ('all', 'user', 'group')),
    subject    TEXT NOT NULL DEFAULT '',
    attribute  TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
