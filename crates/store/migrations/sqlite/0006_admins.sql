-- Web console administrators (issue 7). An admin signs in with a password
-- (argon2id PHC string) and their own TOTP: `totp_secret` is sealed under
-- the master key (purpose "admin-totp", row = admin id) and NULL until the
-- admin enrolls at first sign-in; `totp_floor` is the first TOTP step not yet
-- used (replay protection, as tokens.counter). Failures and lock follow the
-- users' lockout policy (failures, locked_at, lock_until, throttle_until).
CREATE TABLE IF NOT EXISTS admins (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    totp_secret     BLOB,
    totp_floor      INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    locked_at       INTEGER,
    lock_until      INTEGER,
    throttle_until  INTEGER,
    created_at      INTEGER NOT NULL,
    last_login_at   INTEGER,
    last_login_from TEXT
);
