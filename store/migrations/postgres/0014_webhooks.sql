-- Webhooks (issue 17): HTTP endpoints an organization registered for chosen kinds of events.
-- The secret signs every delivery; it is kept sealed with the server key (it must be used
-- again at each delivery), shown once when the webhook is made.
CREATE TABLE webhooks (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations (id),
    url           text NOT NULL,
    -- `licenses_expiring` tells of licenses that end within this many days.
    expiring_within_days bigint NOT NULL CHECK (expiring_within_days BETWEEN 1 AND 90),
    -- The kinds of events it receives, comma-separated.
    events        text NOT NULL,
    sealed_secret bytea NOT NULL,
    created_at    bigint NOT NULL,
    created_by    text NOT NULL,
    deleted_at    bigint
);
CREATE INDEX webhooks_of_org ON webhooks (org_id) WHERE deleted_at IS NULL;

-- The outbox: one row per event and webhook, written in the transaction of the change the
-- event tells (so a committed change always has its deliveries, and a rolled-back one none),
-- then delivered by whichever node leases it first (`lease_until`), in `id` order per webhook,
-- retried with back-off until delivered or given up ('failed'); a replay makes it pending again.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks (id),
    org_id          uuid NOT NULL,
    event_id        uuid NOT NULL,
    kind            text NOT NULL,
    payload         text NOT NULL,
    created_at      bigint NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        bigint NOT NULL,
    next_attempt_at bigint NOT NULL,
    lease_until     bigint,
    last_attempt_at bigint,
    last_status     bigint,
    last_error      text,
    delivered_at    bigint
);
CREATE INDEX deliveries_pending ON webhook_deliveries (webhook_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_of_webhook ON webhook_deliveries (webhook_id, id);
