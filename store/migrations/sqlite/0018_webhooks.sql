-- Webhooks (issue 17): HTTP endpoints an organization registered for chosen kinds of events.
-- The secret signs every delivery; it is kept sealed with the server key (it must be used
-- again at each delivery), shown once when the webhook is made.
CREATE TABLE webhooks (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organizations (id),
    url           TEXT NOT NULL,
    -- `licenses_expiring` tells of licenses that end within this many days.
    expiring_within_days INTEGER NOT NULL CHECK (expiring_within_days BETWEEN 1 AND 90),
    -- The kinds of events it receives, comma-separated.
    events        TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    deleted_at    INTEGER
);
CREATE INDEX webhooks_of_org ON webhooks (org_id) WHERE deleted_at IS NULL;

-- The outbox: one row per event and webhook, written in the transaction of the change the
-- event tells (so a committed change always has its deliveries, and a rolled-back one none),
-- then delivered by whichever node leases it first (`lease_until`), in `id` order per webhook,
-- retried with back-off until delivered or given up ('failed'); a replay makes it pending again.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      BLOB NOT NULL REFERENCES webhooks (id),
    org_id          BLOB NOT NULL,
    event_id        BLOB NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER
);
CREATE INDEX deliveries_pending ON webhook_deliveries (webhook_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_of_webhook ON webhook_deliveries (webhook_id, id);
