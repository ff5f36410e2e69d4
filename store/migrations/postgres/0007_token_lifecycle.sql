-- Operator tokens and organization keys: last use and expiry (issue 16).
--
-- Operator tokens get an id (what the admin API lists and revokes them by; the hash stays the
-- key the bearer is looked up by), a label, where they came from (`generated` by paird,
-- `environment` from PAIRD_OPERATOR_TOKEN, `api` from POST /v1/operator-tokens), when they were
-- last used and when they expire. Tokens made before this migration did not record their
-- origin; they are listed as `generated` and can be revoked like any other. A revoked token
-- keeps its row (`revoked_at`), so that a revoked PAIRD_OPERATOR_TOKEN does not come back at
-- the next start.
--
-- `last_used_at` is written by the engine's usage duty at most once a minute per token, never
-- on the request path (engine/src/usage.rs).
ALTER TABLE operator_tokens ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE operator_tokens ALTER COLUMN id DROP DEFAULT;
ALTER TABLE operator_tokens ADD CONSTRAINT operator_tokens_by_id UNIQUE (id);
ALTER TABLE operator_tokens ADD COLUMN label text NOT NULL DEFAULT '';
ALTER TABLE operator_tokens ADD COLUMN source text NOT NULL DEFAULT 'generated'
    CHECK (source IN ('generated', 'environment', 'api'));
ALTER TABLE operator_tokens ADD COLUMN last_used_at bigint;
ALTER TABLE operator_tokens ADD COLUMN expires_at bigint;
ALTER TABLE operator_tokens ADD COLUMN revoked_at bigint;

ALTER TABLE org_keys ADD COLUMN last_used_at bigint;
ALTER TABLE org_keys ADD COLUMN expires_at bigint;
