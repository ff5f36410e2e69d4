-- Two more ways a pairing ends (issue 17). Both are unpairings (`end_reason` 'unpaired': the
-- credential is dead for good), and `end_cause` says which, so that a returning device is told
-- the right thing: 'replaced' (an admin replaced the device with a new installation, which took
-- its license) or 'released_inactive' (not seen for longer than its organization allows). NULL:
-- an admin's unpairing, or an expiry. A column rather than more values of `end_reason`: that
-- column's CHECK cannot be widened in SQLite without rebuilding the devices table.
ALTER TABLE devices ADD COLUMN end_cause TEXT
    CHECK (end_cause IN ('replaced', 'released_inactive'));
ALTER TABLE ended_pairings ADD COLUMN end_cause TEXT
    CHECK (end_cause IN ('replaced', 'released_inactive'));

-- An organization's inactive-device release: the license of an offline device not seen for
-- this many days is released by the expiry duty. NULL: off (the default).
ALTER TABLE organizations ADD COLUMN release_inactive_after_days INTEGER
    CHECK (release_inactive_after_days >= 1);

-- A replacement code is a single-use code that reserves the license of the device it replaces
-- (held by that device until the code is used) and moves the device's configuration, name and
-- notes to the installation that pairs with it, ending the old pairing in the same
-- transaction. NULL: an ordinary code.
ALTER TABLE codes ADD COLUMN replaces_device BLOB;
-- Ending a device revokes its pending replacement code; this finds it.
CREATE INDEX codes_replacing ON codes (replaces_device)
    WHERE replaces_device IS NOT NULL AND used_at IS NULL AND revoked_at IS NULL;
