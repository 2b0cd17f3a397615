-- RADIUS secret rotation with overlap (issue 19). Expand-only: nullable
-- columns, so an older binary on the same database ignores them (it reads
-- named columns) and a row it inserts simply has no rotation.
--
-- `old_secret` is the previous shared secret, sealed under the master key
-- (purpose "radius-old-secret", row = client id); it is accepted until
-- `old_secret_expires_at` (ms). At expiry the value is set to NULL (lazily:
-- the next secret change or a server's periodic clean-up) but the RADIUS
-- path refuses it from the exact expiry on. `old_secret_expires_at` stays as
-- history ("dropped at"). `secret_changed_at` is when the current secret was
-- set by `client set-secret`; `old_secret_last_used_at` when a request
-- signed with the old secret was last seen (written at most once a minute
-- per client and node); `new_secret_first_used_at` when the first request
-- signed with the current secret was seen after the change.
-- The replication triggers of 0007 fire on every UPDATE of the row, and row
-- images are read with SELECT *, so these columns travel with the row.
ALTER TABLE radius_clients ADD COLUMN old_secret BLOB;
ALTER TABLE radius_clients ADD COLUMN old_secret_expires_at INTEGER;
ALTER TABLE radius_clients ADD COLUMN old_secret_last_used_at INTEGER;
ALTER TABLE radius_clients ADD COLUMN secret_changed_at INTEGER;
ALTER TABLE radius_clients ADD COLUMN new_secret_first_used_at INTEGER;
