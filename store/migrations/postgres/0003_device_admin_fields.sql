-- What an admin says of a device, kept apart from what the device reports of itself (its
-- `name`, `model`, `os` and `app_version`, updated at every reconnection): a name the admin
-- gave it, shown instead of the reported one, and free-text notes. A reconnection never
-- touches them.
ALTER TABLE devices ADD COLUMN admin_name TEXT;
ALTER TABLE devices ADD COLUMN notes TEXT;

-- The fleet lists' sorts (store/src/fleet.rs): each walks one of these in order, an
-- organization's active devices at a time, and stops after a page. The name index's
-- expression is the one the name sort orders by, word for word.
CREATE INDEX devices_by_name ON devices (org_id, lower(COALESCE(admin_name, name)), id)
    WHERE ended_at IS NULL;
CREATE INDEX devices_by_last_seen ON devices (org_id, last_seen, id) WHERE ended_at IS NULL;
CREATE INDEX devices_by_paired_at ON devices (org_id, paired_at, id) WHERE ended_at IS NULL;
