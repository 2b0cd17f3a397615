-- Cluster trust (issue 13): nodes enrol once and then authenticate with
-- their own certificate; join tokens are single-use and expire; login state
-- a replica decided is journalled durably until the primary has it; a node
-- that restarts as primary is fenced until it has confirmed its epoch.

-- Enrolled nodes (replicated: every node can authenticate every other one,
-- so a promoted replica knows the old primary and the other replicas).
-- `cert_sha256` is the SHA-256 of the node's own client certificate: the
-- credential it presents as mutual TLS on every replication request.
CREATE TABLE IF NOT EXISTS repl_nodes (
    name        TEXT PRIMARY KEY,
    cert_sha256 BLOB NOT NULL UNIQUE,
    url         TEXT,
    https_pin   TEXT,
    enrolled_at INTEGER NOT NULL,
    enrolled_by TEXT NOT NULL
);

CREATE TRIGGER IF NOT EXISTS repl_nodes_insert AFTER INSERT ON repl_nodes
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'repl_nodes' AND pk = json_array(NEW.name);
    INSERT INTO repl_changes (tbl, pk) VALUES ('repl_nodes', json_array(NEW.name));
END;

CREATE TRIGGER IF NOT EXISTS repl_nodes_update AFTER UPDATE ON repl_nodes
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'repl_nodes' AND pk = json_array(NEW.name);
    INSERT INTO repl_changes (tbl, pk) VALUES ('repl_nodes', json_array(NEW.name));
END;

CREATE TRIGGER IF NOT EXISTS repl_nodes_delete AFTER DELETE ON repl_nodes
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'repl_nodes' AND pk = json_array(OLD.name);
    INSERT INTO repl_changes (tbl, pk) VALUES ('repl_nodes', json_array(OLD.name));
END;

-- This node's own identity (node-local): its client certificate and the
-- private key sealed under the master key.
CREATE TABLE IF NOT EXISTS repl_identity (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    name       TEXT NOT NULL,
    cert       BLOB NOT NULL,
    key_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Join tokens this node minted (node-local: only their digests). Single
-- use, with an expiry; a token whose proofs of the master key keep failing
-- is revoked.
CREATE TABLE IF NOT EXISTS repl_join_tokens (
    id            INTEGER PRIMARY KEY,
    digest        BLOB NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    used_at       INTEGER,
    used_by       TEXT,
    revoked_at    INTEGER,
    failed_proofs INTEGER NOT NULL DEFAULT 0
);

-- What this node last heard from each peer (node-local, for `replica
-- nodes`), and how far the peer's forwarded logins were applied (so a
-- batch sent twice counts once).
CREATE TABLE IF NOT EXISTS repl_peers (
    name              TEXT PRIMARY KEY,
    last_contact_at   INTEGER,
    address           TEXT,
    role              TEXT,
    epoch             INTEGER,
    position          INTEGER,
    lag_ms            INTEGER,
    key_id            TEXT,
    version           TEXT,
    following         INTEGER,
    forwarded_through INTEGER NOT NULL DEFAULT 0
);

-- Logins this node decided while it is a replica, until the primary has
-- them (node-local). Written in the login's own transaction, so a restart
-- loses none; deleted once the primary acknowledged them.
CREATE TABLE IF NOT EXISTS repl_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    -- accepted / failed (counted toward the lock) / none (only consumed a
    -- challenge State).
    result     TEXT NOT NULL CHECK (result IN ('accepted', 'failed', 'none')),
    token_id   INTEGER,
    step       INTEGER,
    drift      INTEGER,
    digest     BLOB,
    nonce      BLOB,
    expires_at INTEGER
);

-- repl_state gains `fence` (why this node takes no administrative write
-- although it is not a replica: confirming its epoch after a restart,
-- restored from a backup, a newer primary exists; NULL when not fenced) and
-- `follow_error` (why a replica's server cannot follow its primary now),
-- and loses `join_token` (replicas keep no token). Rebuilt rather than
-- altered, so the migration can run again (ADD COLUMN cannot).
CREATE TABLE IF NOT EXISTS repl_state_v8 (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    role            TEXT NOT NULL DEFAULT 'standalone' CHECK (role IN ('standalone', 'primary', 'replica')),
    epoch           INTEGER NOT NULL DEFAULT 0,
    primary_url     TEXT,
    primary_name    TEXT,
    pin             TEXT,
    position        INTEGER NOT NULL DEFAULT 0,
    pruned_through  INTEGER NOT NULL DEFAULT 0,
    last_contact_at INTEGER,
    clock_offset_ms INTEGER,
    lag_ms          INTEGER,
    fence           TEXT,
    follow_error    TEXT
);
INSERT OR IGNORE INTO repl_state_v8 (id, role, epoch, primary_url, primary_name, pin, position, pruned_through,
                                     last_contact_at, clock_offset_ms, lag_ms)
    SELECT id, role, epoch, primary_url, primary_name, pin, position, pruned_through, last_contact_at,
           clock_offset_ms, lag_ms FROM repl_state;
DROP TABLE repl_state;
ALTER TABLE repl_state_v8 RENAME TO repl_state;
INSERT OR IGNORE INTO repl_state (id) VALUES (1);

-- The old shared join tokens stop working.
DELETE FROM meta WHERE key = 'replication_tokens';
DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array('replication_tokens');

DROP TRIGGER IF EXISTS repl_meta_insert;
DROP TRIGGER IF EXISTS repl_meta_update;
DROP TRIGGER IF EXISTS repl_meta_delete;

CREATE TRIGGER IF NOT EXISTS repl_meta_insert AFTER INSERT ON meta WHEN NEW.key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation')
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array(NEW.key);
    INSERT INTO repl_changes (tbl, pk) VALUES ('meta', json_array(NEW.key));
END;

CREATE TRIGGER IF NOT EXISTS repl_meta_update AFTER UPDATE ON meta WHEN NEW.key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation')
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array(NEW.key);
    INSERT INTO repl_changes (tbl, pk) VALUES ('meta', json_array(NEW.key));
END;

CREATE TRIGGER IF NOT EXISTS repl_meta_delete AFTER DELETE ON meta WHEN OLD.key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation')
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array(OLD.key);
    INSERT INTO repl_changes (tbl, pk) VALUES ('meta', json_array(OLD.key));
END;
