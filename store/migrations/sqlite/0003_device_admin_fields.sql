-- What an admin says of a device, kept apart from what the device reports of itself (its
-- `name`, `model`, `os` and `app_version`, updated at every reconnection): a name the admin
-- gave it, shown instead of the reported one, and free-text notes. A reconnection never
-- touches them.
ALTER TABLE devices ADD COLUMN admin_name TEXT;
ALTER TABLE devices ADD COLUMN notes TEXT;
