-- Realms: first-factor source chains (LDAP, Entra ID). Settings are JSON;
-- secrets (bind passwords, client secrets) are sealed under the master key.
CREATE TABLE realms (
    name       TEXT PRIMARY KEY,
    settings   TEXT NOT NULL,
    secrets    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Grace logins used (first factor alone, before a token is enrolled).
ALTER TABLE users ADD COLUMN grace_used INTEGER NOT NULL DEFAULT 0;

-- Realm for users of a RADIUS client who name none.
ALTER TABLE radius_clients ADD COLUMN default_realm TEXT;
