-- RADIUS secret rotation with overlap (issue 19); mirrors SQLite's
-- 0009_radius_secret_rotation.sql. Expand-only: nullable columns, which an
-- older binary sharing this database ignores (it names its columns).
ALTER TABLE radius_clients ADD COLUMN IF NOT EXISTS old_secret BYTEA;
ALTER TABLE radius_clients ADD COLUMN IF NOT EXISTS old_secret_expires_at BIGINT;
ALTER TABLE radius_clients ADD COLUMN IF NOT EXISTS old_secret_last_used_at BIGINT;
ALTER TABLE radius_clients ADD COLUMN IF NOT EXISTS secret_changed_at BIGINT;
ALTER TABLE radius_clients ADD COLUMN IF NOT EXISTS new_secret_first_used_at BIGINT;
