-- The configuration new devices get (issue 17): by default the organization's most recently
-- created one, as the source product does; an admin may pin one instead. NULL: not pinned.
-- A pinned configuration cannot be deleted (the delete command refuses; the reference is the
-- second line of defence).
ALTER TABLE organizations ADD COLUMN pinned_configuration_id BLOB REFERENCES configurations (id);
