-- Primary/replica replication (issue 5). Every write to a replicated table
-- marks the row's key in `repl_changes` with a new, ever-increasing `seq`;
-- a row keeps one entry (its latest change), so the log is bounded by the
-- number of rows, and a follower that asks for `seq > position` gets the
-- current image of every row changed since (or a deletion when the row is
-- gone). Deletions stay in the log until pruned after the retention time;
-- a follower whose position is older than the pruned horizon
-- (`repl_state.pruned_through`) must take a new snapshot.
--
-- The triggers delete and insert rather than INSERT OR REPLACE: a trigger's
-- conflict clause is overridden by the conflict handling of the statement
-- that fired it (an upsert, for one), which would turn the replace into a
-- failed write.
--
-- `pk` is the JSON array of the row's primary key (blobs as hex), so one
-- table serves every replicated table. Node-local tables (audit, its
-- chain, used challenge states, email/SMS codes) and node-local meta keys
-- (syslog cursor, loaded key, …) have no triggers: they are not replicated.
CREATE TABLE IF NOT EXISTS repl_changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl  TEXT NOT NULL,
    pk   TEXT NOT NULL,
    -- When the change was logged (Unix seconds): deletions are pruned by age.
    at   INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
    UNIQUE (tbl, pk)
);

-- This node's replication settings and progress (one row; node-local).
CREATE TABLE IF NOT EXISTS repl_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    role            TEXT NOT NULL DEFAULT 'standalone' CHECK (role IN ('standalone', 'primary', 'replica')),
    epoch           INTEGER NOT NULL DEFAULT 0,
    primary_url     TEXT,
    primary_name    TEXT,
    pin             TEXT,
    join_token      BLOB,
    position        INTEGER NOT NULL DEFAULT 0,
    pruned_through  INTEGER NOT NULL DEFAULT 0,
    last_contact_at INTEGER,
    clock_offset_ms INTEGER,
    lag_ms          INTEGER
);
INSERT OR IGNORE INTO repl_state (id) VALUES (1);

CREATE TRIGGER IF NOT EXISTS repl_users_insert AFTER INSERT ON users
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'users' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('users', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_users_update AFTER UPDATE ON users
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'users' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('users', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_users_delete AFTER DELETE ON users
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'users' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('users', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_tokens_insert AFTER INSERT ON tokens
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'tokens' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('tokens', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_tokens_update AFTER UPDATE ON tokens
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'tokens' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('tokens', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_tokens_delete AFTER DELETE ON tokens
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'tokens' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('tokens', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_backup_codes_insert AFTER INSERT ON backup_codes
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'backup_codes' AND pk = json_array(NEW.user_id, hex(NEW.digest));
    INSERT INTO repl_changes (tbl, pk) VALUES ('backup_codes', json_array(NEW.user_id, hex(NEW.digest)));
END;

CREATE TRIGGER IF NOT EXISTS repl_backup_codes_update AFTER UPDATE ON backup_codes
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'backup_codes' AND pk = json_array(NEW.user_id, hex(NEW.digest));
    INSERT INTO repl_changes (tbl, pk) VALUES ('backup_codes', json_array(NEW.user_id, hex(NEW.digest)));
END;

CREATE TRIGGER IF NOT EXISTS repl_backup_codes_delete AFTER DELETE ON backup_codes
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'backup_codes' AND pk = json_array(OLD.user_id, hex(OLD.digest));
    INSERT INTO repl_changes (tbl, pk) VALUES ('backup_codes', json_array(OLD.user_id, hex(OLD.digest)));
END;

CREATE TRIGGER IF NOT EXISTS repl_api_keys_insert AFTER INSERT ON api_keys
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'api_keys' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('api_keys', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_api_keys_update AFTER UPDATE ON api_keys
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'api_keys' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('api_keys', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_api_keys_delete AFTER DELETE ON api_keys
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'api_keys' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('api_keys', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_radius_clients_insert AFTER INSERT ON radius_clients
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'radius_clients' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('radius_clients', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_radius_clients_update AFTER UPDATE ON radius_clients
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'radius_clients' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('radius_clients', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_radius_clients_delete AFTER DELETE ON radius_clients
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'radius_clients' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('radius_clients', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_group_members_insert AFTER INSERT ON group_members
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'group_members' AND pk = json_array(NEW.group_name, NEW.user_id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('group_members', json_array(NEW.group_name, NEW.user_id));
END;

CREATE TRIGGER IF NOT EXISTS repl_group_members_update AFTER UPDATE ON group_members
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'group_members' AND pk = json_array(NEW.group_name, NEW.user_id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('group_members', json_array(NEW.group_name, NEW.user_id));
END;

CREATE TRIGGER IF NOT EXISTS repl_group_members_delete AFTER DELETE ON group_members
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'group_members' AND pk = json_array(OLD.group_name, OLD.user_id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('group_members', json_array(OLD.group_name, OLD.user_id));
END;

CREATE TRIGGER IF NOT EXISTS repl_reply_rules_insert AFTER INSERT ON reply_rules
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'reply_rules' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('reply_rules', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_reply_rules_update AFTER UPDATE ON reply_rules
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'reply_rules' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('reply_rules', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_reply_rules_delete AFTER DELETE ON reply_rules
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'reply_rules' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('reply_rules', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_realms_insert AFTER INSERT ON realms
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'realms' AND pk = json_array(NEW.name);
    INSERT INTO repl_changes (tbl, pk) VALUES ('realms', json_array(NEW.name));
END;

CREATE TRIGGER IF NOT EXISTS repl_realms_update AFTER UPDATE ON realms
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'realms' AND pk = json_array(NEW.name);
    INSERT INTO repl_changes (tbl, pk) VALUES ('realms', json_array(NEW.name));
END;

CREATE TRIGGER IF NOT EXISTS repl_realms_delete AFTER DELETE ON realms
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'realms' AND pk = json_array(OLD.name);
    INSERT INTO repl_changes (tbl, pk) VALUES ('realms', json_array(OLD.name));
END;

CREATE TRIGGER IF NOT EXISTS repl_inventory_insert AFTER INSERT ON inventory
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'inventory' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('inventory', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_inventory_update AFTER UPDATE ON inventory
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'inventory' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('inventory', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_inventory_delete AFTER DELETE ON inventory
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'inventory' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('inventory', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_admins_insert AFTER INSERT ON admins
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'admins' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('admins', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_admins_update AFTER UPDATE ON admins
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'admins' AND pk = json_array(NEW.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('admins', json_array(NEW.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_admins_delete AFTER DELETE ON admins
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'admins' AND pk = json_array(OLD.id);
    INSERT INTO repl_changes (tbl, pk) VALUES ('admins', json_array(OLD.id));
END;

CREATE TRIGGER IF NOT EXISTS repl_meta_insert AFTER INSERT ON meta WHEN NEW.key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation', 'replication_tokens')
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array(NEW.key);
    INSERT INTO repl_changes (tbl, pk) VALUES ('meta', json_array(NEW.key));
END;

CREATE TRIGGER IF NOT EXISTS repl_meta_update AFTER UPDATE ON meta WHEN NEW.key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation', 'replication_tokens')
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array(NEW.key);
    INSERT INTO repl_changes (tbl, pk) VALUES ('meta', json_array(NEW.key));
END;

CREATE TRIGGER IF NOT EXISTS repl_meta_delete AFTER DELETE ON meta WHEN OLD.key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation', 'replication_tokens')
BEGIN
    DELETE FROM repl_changes WHERE tbl = 'meta' AND pk = json_array(OLD.key);
    INSERT INTO repl_changes (tbl, pk) VALUES ('meta', json_array(OLD.key));
END;

-- Rows written before this migration are in the log too.
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'users', json_array(id) FROM users;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'tokens', json_array(id) FROM tokens;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'backup_codes', json_array(user_id, hex(digest)) FROM backup_codes;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'api_keys', json_array(id) FROM api_keys;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'radius_clients', json_array(id) FROM radius_clients;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'group_members', json_array(group_name, user_id) FROM group_members;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'reply_rules', json_array(id) FROM reply_rules;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'realms', json_array(name) FROM realms;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'inventory', json_array(id) FROM inventory;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'admins', json_array(id) FROM admins;
INSERT OR REPLACE INTO repl_changes (tbl, pk) SELECT 'meta', json_array(key) FROM meta WHERE key IN ('policy', 'key_check', 'key_id', 'backup_mac_key', 'directory_cache_generation', 'key_rotation', 'replication_tokens');
