-- The fleet lists' configuration filter counts an organization's active devices of one
-- configuration. With `devices_by_config` on `(config_id)` alone SQLite, planning without
-- statistics, counted by walking every device of the organization instead (a configuration of
-- 10,000 of 100,000 devices: 14 ms p50, 27 ms p99). With the organization and `ended_at` in the
-- index, the count reads this index alone. It stays a full index (not partial): it also serves
-- the foreign-key check when a configuration is deleted, and a configuration's devices.
DROP INDEX devices_by_config;
CREATE INDEX devices_by_config ON devices (config_id, org_id, ended_at);
