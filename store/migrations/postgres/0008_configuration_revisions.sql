-- Every revision of every configuration (issue 17): its name and body as saved, when, and by
-- whom (`operator`, `key:<id>` or `system`, as the audit log names them). Revisions only grow:
-- a revert saves an old body as a new revision. Written in the transaction of the command that
-- makes the revision; deleted with the configuration.
--
-- The current revision of each existing configuration is kept from here on; who saved it is
-- not known (NULL), and earlier revisions were not kept.
CREATE TABLE configuration_revisions (
    config_id uuid NOT NULL REFERENCES configurations (id),
    revision  bigint NOT NULL CHECK (revision >= 1),
    name      text NOT NULL,
    body      text NOT NULL,
    bytes     bigint NOT NULL,
    saved_at  bigint NOT NULL,
    saved_by  text,
    PRIMARY KEY (config_id, revision)
);

INSERT INTO configuration_revisions (config_id, revision, name, body, bytes, saved_at, saved_by)
SELECT id, revision, name, body, octet_length(body), updated_at, NULL FROM configurations;
