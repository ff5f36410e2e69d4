-- paird schema, SQLite.
--
-- Ids are UUIDv7 stored as 16-byte BLOBs; times are milliseconds since the Unix epoch (UTC);
-- secrets appear only as SHA-256 hashes (and reusable codes also sealed with the server key).
-- The constraints below are the second line of defence behind the engine's conditional writes.

CREATE TABLE server_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE organizations (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE operator_tokens (
    token_hash BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL
);

CREATE TABLE org_keys (
    id         BLOB PRIMARY KEY,
    org_id     BLOB NOT NULL REFERENCES organizations (id),
    name       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX org_keys_by_org ON org_keys (org_id, id);

CREATE TABLE licenses (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organizations (id),
    purchased_at   INTEGER NOT NULL,
    valid_until    INTEGER,
    -- The device holding the license (unique: see licenses_device below).
    device_id      BLOB,
    -- A valid single-use code reserves the license until reserved_until.
    reserved_by    BLOB,
    reserved_until INTEGER
) WITHOUT ROWID;
CREATE INDEX licenses_by_org ON licenses (org_id, id);
-- A license is never held by two devices. Partial, so that "device_id IS NULL" is never
-- planned as a lookup in this index (which would visit every unassigned license).
CREATE UNIQUE INDEX licenses_device ON licenses (device_id) WHERE device_id IS NOT NULL;
-- The free-license scan: unassigned licenses of an organization, oldest first. Covering, so
-- that the scan never visits the table.
CREATE INDEX licenses_unassigned ON licenses (org_id, id, valid_until, reserved_until)
    WHERE device_id IS NULL;
-- The expiry sweep: assigned licenses with an end.
CREATE INDEX licenses_expiring ON licenses (valid_until)
    WHERE device_id IS NOT NULL AND valid_until IS NOT NULL;

CREATE TABLE codes (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organizations (id),
    kind           TEXT NOT NULL CHECK (kind IN ('reusable', 'single_use')),
    code_hash      BLOB NOT NULL UNIQUE,
    sealed_secret  BLOB,
    label          TEXT,
    license_id     BLOB,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_uses       INTEGER,
    uses           INTEGER NOT NULL DEFAULT 0,
    last_used_at   INTEGER,
    revoked_at     INTEGER,
    used_at        INTEGER,
    used_by_device BLOB,
    CHECK (kind = 'reusable' OR license_id IS NOT NULL),
    CHECK (max_uses IS NULL OR uses <= max_uses)
);
CREATE INDEX codes_by_org ON codes (org_id, kind, id);
-- At most one live single-use code per license.
CREATE UNIQUE INDEX codes_live_single_use ON codes (license_id)
    WHERE kind = 'single_use' AND revoked_at IS NULL AND used_at IS NULL;

CREATE TABLE configurations (
    id         BLOB PRIMARY KEY,
    org_id     BLOB NOT NULL REFERENCES organizations (id),
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    revision   INTEGER NOT NULL CHECK (revision >= 1),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX configurations_by_org ON configurations (org_id, created_at, id);

CREATE TABLE devices (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL REFERENCES organizations (id),
    installation_id   BLOB NOT NULL,
    credential_hash   BLOB NOT NULL,
    license_id        BLOB NOT NULL,
    name              TEXT NOT NULL,
    model             TEXT NOT NULL,
    os                TEXT NOT NULL,
    app_version       TEXT NOT NULL,
    paired_at         INTEGER NOT NULL,
    paired_by_code    BLOB,
    -- The assigned configuration; a configuration cannot be deleted while assigned.
    config_id         BLOB REFERENCES configurations (id) ON DELETE RESTRICT,
    assigned_at       INTEGER,
    applied_config_id BLOB,
    applied_revision  INTEGER,
    ack_status        TEXT CHECK (ack_status IN ('applied', 'failed')),
    ack_reason        TEXT,
    ack_at            INTEGER,
    -- Presence: the connection the device is online on (NULL = offline).
    online_conn       INTEGER,
    last_seen         INTEGER NOT NULL,
    ended_at          INTEGER,
    end_reason        TEXT CHECK (end_reason IN ('unpaired', 'license_expired')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
-- One active pairing per installation, and one active device per license.
CREATE UNIQUE INDEX devices_active_installation ON devices (installation_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX devices_active_license ON devices (license_id) WHERE ended_at IS NULL;
CREATE INDEX devices_by_org ON devices (org_id, id) WHERE ended_at IS NULL;
-- Full (not partial): it also serves the foreign-key check when a configuration is deleted.
CREATE INDEX devices_by_config ON devices (config_id);

-- The most recent ended pairing of each installation, so that a device returning with an ended
-- credential can be told why (unpaired, license expired) instead of "authentication failed".
CREATE TABLE ended_pairings (
    installation_id BLOB PRIMARY KEY,
    credential_hash BLOB NOT NULL,
    end_reason      TEXT NOT NULL CHECK (end_reason IN ('unpaired', 'license_expired')),
    ended_at        INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    org_id  BLOB,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_by_org ON audit_log (org_id, id);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,
    sealed_reply BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);
