-- Staged rollouts (issue 17): an edit of a configuration saved as a new revision that reaches a
-- chosen part of its devices first. The configuration's own `revision` and `body` stay what
-- every other device runs (its stable revision) until the rollout is promoted.
--
-- A device chosen for a rollout carries the rollout's revision in `staged_revision`: it runs
-- the greater of that and its configuration's `revision`. Promotion (the configuration takes the
-- staged revision) and a later plain edit (a higher revision for all) therefore end every
-- device's staging at once, without touching the devices, and no device's revision ever goes
-- back. Assigning a device another configuration clears it (revisions are per configuration).
ALTER TABLE devices ADD COLUMN staged_revision bigint CHECK (staged_revision >= 1);
-- The staged devices of a configuration: counted by the rollout duty and the rollout view.
CREATE INDEX devices_staged ON devices (config_id, staged_revision)
    WHERE staged_revision IS NOT NULL;

-- Every staged rollout, kept after it ends (promoted, or superseded by another edit). At most
-- one per configuration is in progress ('running' or 'halted').
CREATE TABLE configuration_rollouts (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    config_id       uuid NOT NULL REFERENCES configurations (id),
    -- The staged revision, and the revision the other devices kept.
    revision        bigint NOT NULL CHECK (revision >= 2),
    stable_revision bigint NOT NULL CHECK (stable_revision >= 1),
    state           text NOT NULL
        CHECK (state IN ('running', 'halted', 'promoted', 'superseded')),
    -- The share of the configuration's devices chosen (NULL: an explicit list of devices).
    share_percent   bigint CHECK (share_percent BETWEEN 1 AND 100),
    chosen_devices  bigint NOT NULL CHECK (chosen_devices >= 0),
    -- More failed acknowledgements of the staged revision than this halts the rollout.
    max_failures    bigint NOT NULL CHECK (max_failures >= 0),
    -- When the rollout promotes itself, if it is still running; NULL: only by an admin.
    promote_at      bigint,
    started_at      bigint NOT NULL,
    started_by      text NOT NULL,
    -- When it was halted, promoted or superseded, and by whom (`system` for the duty).
    ended_at        bigint,
    ended_by        text,
    -- The failed acknowledgements that halted it.
    failed_devices  bigint
);
CREATE INDEX rollouts_of_config ON configuration_rollouts (config_id, started_at);
CREATE UNIQUE INDEX rollouts_in_progress ON configuration_rollouts (config_id)
    WHERE state IN ('running', 'halted');
CREATE INDEX rollouts_running ON configuration_rollouts (promote_at) WHERE state = 'running';
