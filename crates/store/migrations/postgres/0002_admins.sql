-- Web console administrators (issue 7); mirrors SQLite's 0006_admins.sql.
-- `totp_secret` is sealed under the master key (purpose "admin-totp", row =
-- admin id) and NULL until the admin enrolls at first sign-in; `totp_floor`
-- is the first TOTP step not yet used (replay protection).
CREATE TABLE IF NOT EXISTS admins (
    id              BIGINT PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    totp_secret     BYTEA,
    totp_floor      BIGINT NOT NULL DEFAULT 0,
    failures        BIGINT NOT NULL DEFAULT 0,
    locked_at       BIGINT,
    lock_until      BIGINT,
    throttle_until  BIGINT,
    created_at      BIGINT NOT NULL,
    last_login_at   BIGINT,
    last_login_from TEXT
);
