-- The waiting list (issue 17): devices that asked to wait when no license was free, in the
-- order they arrived (`seq`). A row lives while its device waits: its grant, its refusal (its
-- code expired or was revoked meanwhile), an admin's dismissal or the device's disconnection
-- deletes it. While an organization has a row here, its free licenses go to the line first:
-- an ordinary pairing claims none (the claim's condition), and the line is served whenever a
-- license is added, freed or renewed (and by the expiry duty, for reservations that ran out).
-- What a grant needs is kept: the installation, its credential's hash, the code and what the
-- device said of itself; `connection` names the connection that waits (its node in the high
-- half, so that a dead node's rows can be dropped).
CREATE TABLE waiting_devices (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BLOB NOT NULL REFERENCES organizations (id),
    installation_id BLOB NOT NULL,
    credential_hash BLOB NOT NULL,
    code_id         BLOB NOT NULL REFERENCES codes (id),
    name            TEXT NOT NULL,
    model           TEXT NOT NULL,
    os              TEXT NOT NULL,
    app_version     TEXT NOT NULL,
    peer            TEXT NOT NULL,
    connection      INTEGER NOT NULL,
    queued_at       INTEGER NOT NULL
);
CREATE INDEX waiting_by_org ON waiting_devices (org_id, seq);
