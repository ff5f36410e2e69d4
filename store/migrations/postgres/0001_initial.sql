-- paird schema, PostgreSQL.
--
-- The same tables, columns, constraints and index names as the SQLite schema, so that the two
-- backends keep one set of invariants. Ids are UUIDv7 (`uuid`); times are milliseconds since the
-- Unix epoch (UTC) as `bigint`, like SQLite's integers, so that the engine's conditions read the
-- same on both; secrets appear only as SHA-256 hashes (`bytea`), and reusable codes also sealed
-- with the server key. Counters and revisions are `bigint` so that every integer column decodes
-- as one Rust type. The constraints below are the second line of defence behind the engine's
-- conditional writes: several nodes share this database, and these indexes hold whatever they do.

CREATE TABLE server_meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE operator_tokens (
    token_hash bytea PRIMARY KEY,
    created_at bigint NOT NULL
);

CREATE TABLE org_keys (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    name       text NOT NULL,
    key_hash   bytea NOT NULL UNIQUE,
    created_at bigint NOT NULL,
    revoked_at bigint
);
CREATE INDEX org_keys_by_org ON org_keys (org_id, id);

CREATE TABLE licenses (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations (id),
    purchased_at   bigint NOT NULL,
    valid_until    bigint,
    -- The device holding the license (unique: see licenses_device below).
    device_id      uuid,
    -- A valid single-use code reserves the license until reserved_until.
    reserved_by    uuid,
    reserved_until bigint
);
CREATE INDEX licenses_by_org ON licenses (org_id, id);
-- A license is never held by two devices.
CREATE UNIQUE INDEX licenses_device ON licenses (device_id) WHERE device_id IS NOT NULL;
-- The free-license scan: unassigned licenses of an organization, oldest first. The extra
-- columns let the scan test validity and reservation from the index before it locks a row.
CREATE INDEX licenses_unassigned ON licenses (org_id, id) INCLUDE (valid_until, reserved_until)
    WHERE device_id IS NULL;
-- The expiry sweep: assigned licenses with an end.
CREATE INDEX licenses_expiring ON licenses (valid_until)
    WHERE device_id IS NOT NULL AND valid_until IS NOT NULL;

CREATE TABLE codes (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations (id),
    kind           text NOT NULL CHECK (kind IN ('reusable', 'single_use')),
    code_hash      bytea NOT NULL UNIQUE,
    sealed_secret  bytea,
    label          text,
    license_id     uuid,
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    max_uses       bigint,
    uses           bigint NOT NULL DEFAULT 0,
    last_used_at   bigint,
    revoked_at     bigint,
    used_at        bigint,
    used_by_device uuid,
    CHECK (kind = 'reusable' OR license_id IS NOT NULL),
    CHECK (max_uses IS NULL OR uses <= max_uses)
);
CREATE INDEX codes_by_org ON codes (org_id, kind, id);
-- At most one live single-use code per license.
CREATE UNIQUE INDEX codes_live_single_use ON codes (license_id)
    WHERE kind = 'single_use' AND revoked_at IS NULL AND used_at IS NULL;

CREATE TABLE configurations (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    name       text NOT NULL,
    body       text NOT NULL,
    revision   bigint NOT NULL CHECK (revision >= 1),
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX configurations_by_org ON configurations (org_id, created_at, id);

CREATE TABLE devices (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organizations (id),
    installation_id   uuid NOT NULL,
    credential_hash   bytea NOT NULL,
    license_id        uuid NOT NULL,
    name              text NOT NULL,
    model             text NOT NULL,
    os                text NOT NULL,
    app_version       text NOT NULL,
    paired_at         bigint NOT NULL,
    paired_by_code    uuid,
    -- The assigned configuration; a configuration cannot be deleted while assigned.
    config_id         uuid REFERENCES configurations (id) ON DELETE RESTRICT,
    assigned_at       bigint,
    applied_config_id uuid,
    applied_revision  bigint,
    ack_status        text CHECK (ack_status IN ('applied', 'failed')),
    ack_reason        text,
    ack_at            bigint,
    -- Presence: the connection the device is online on (NULL = offline).
    online_conn       bigint,
    last_seen         bigint NOT NULL,
    ended_at          bigint,
    end_reason        text CHECK (end_reason IN ('unpaired', 'license_expired')),
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
    installation_id uuid PRIMARY KEY,
    credential_hash bytea NOT NULL,
    end_reason      text NOT NULL CHECK (end_reason IN ('unpaired', 'license_expired')),
    ended_at        bigint NOT NULL
);

-- Ids come from a sequence: they are allocated when a row is inserted, not when its transaction
-- commits, so with several nodes a page of the log can be followed by an entry with a lower id.
CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id  uuid,
    at      bigint NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    subject text,
    details text NOT NULL
);
CREATE INDEX audit_by_org ON audit_log (org_id, id);

CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    fingerprint  bytea NOT NULL,
    sealed_reply bytea NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);
