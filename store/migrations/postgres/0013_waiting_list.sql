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
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    installation_id uuid NOT NULL,
    credential_hash bytea NOT NULL,
    code_id         uuid NOT NULL REFERENCES codes (id),
    name            text NOT NULL,
    model           text NOT NULL,
    os              text NOT NULL,
    app_version     text NOT NULL,
    peer            text NOT NULL,
    connection      bigint NOT NULL,
    queued_at       bigint NOT NULL
);
CREATE INDEX waiting_by_org ON waiting_devices (org_id, seq);
