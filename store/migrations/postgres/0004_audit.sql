-- The audit log, readable by a person: filtered by device, time and action, newest first, a
-- page at a time. Each filter has an index that drives it (see the store's `audit` module), so
-- that a filtered page does not read the whole log.

-- The devices each entry names: its subject, its actor, or the devices it changed (an
-- assignment names every device it assigned). The device filter reads a device's entries here,
-- newest first.
CREATE TABLE audit_devices (
    device_id uuid NOT NULL,
    audit_id  bigint NOT NULL,
    PRIMARY KEY (device_id, audit_id)
);

-- The action filter: an organization's entries of one action, newest first.
CREATE INDEX audit_by_org_action ON audit_log (org_id, action, id);
-- The time filter: an organization's entries in a time window.
CREATE INDEX audit_by_org_time ON audit_log (org_id, at);

-- The entries written before this migration name their devices too: those about a device (its
-- id is their subject), those a device wrote (`device:<id>`), and assignments (`device_ids`).
INSERT INTO audit_devices (device_id, audit_id)
SELECT subject::uuid, id FROM audit_log
WHERE action IN ('device.paired', 'device.pairing_repeated', 'device.unpaired',
                 'device.license_expired')
  AND subject ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
UNION
SELECT substr(actor, 8)::uuid, id FROM audit_log
WHERE actor ~ '^device:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
UNION
SELECT d.value::uuid, a.id
FROM (SELECT id, details::jsonb -> 'device_ids' AS ids FROM audit_log
      WHERE action = 'configuration.assigned') AS a,
     jsonb_array_elements_text(CASE WHEN jsonb_typeof(a.ids) = 'array' THEN a.ids
                                    ELSE '[]'::jsonb END) AS d(value)
WHERE d.value ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
