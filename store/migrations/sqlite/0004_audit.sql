-- The audit log, readable by a person: filtered by device, time and action, newest first, a
-- page at a time. Each filter has an index that drives it (see the store's `audit` module), so
-- that a filtered page does not read the whole log.

-- The devices each entry names: its subject, its actor, or the devices it changed (an
-- assignment names every device it assigned). The device filter reads a device's entries here,
-- newest first.
CREATE TABLE audit_devices (
    device_id BLOB NOT NULL,
    audit_id  INTEGER NOT NULL,
    PRIMARY KEY (device_id, audit_id)
) WITHOUT ROWID;

-- The action filter: an organization's entries of one action, newest first.
CREATE INDEX audit_by_org_action ON audit_log (org_id, action, id);
-- The time filter: an organization's entries in a time window.
CREATE INDEX audit_by_org_time ON audit_log (org_id, at);

-- The entries written before this migration name their devices too: those about a device (its
-- id is their subject), those a device wrote (`device:<id>`), and assignments (`device_ids`).
INSERT OR IGNORE INTO audit_devices (device_id, audit_id)
SELECT unhex(replace(subject, '-', '')), id FROM audit_log
WHERE action IN ('device.paired', 'device.pairing_repeated', 'device.unpaired',
                 'device.license_expired')
  AND length(subject) = 36;
INSERT OR IGNORE INTO audit_devices (device_id, audit_id)
SELECT unhex(replace(substr(actor, 8), '-', '')), id FROM audit_log
WHERE actor LIKE 'device:%' AND length(actor) = 43;
INSERT OR IGNORE INTO audit_devices (device_id, audit_id)
SELECT unhex(replace(d.value, '-', '')), a.id
FROM audit_log a, json_each(a.details, '$.device_ids') d
WHERE a.action = 'configuration.assigned' AND json_type(a.details, '$.device_ids') = 'array'
  AND length(d.value) = 36;
