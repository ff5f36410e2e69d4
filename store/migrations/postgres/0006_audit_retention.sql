-- Audit retention deletes the oldest entries as one id range; their links to devices are found
-- by entry through this index (the primary key leads with the device).
CREATE INDEX audit_devices_by_audit ON audit_devices (audit_id);
