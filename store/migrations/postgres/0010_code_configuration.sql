-- A reusable code may carry a configuration of its own (issue 17): devices paired with it get
-- that one instead of the organization's configuration for new devices. NULL: it carries none.
-- A configuration a usable code carries cannot be deleted (the delete command refuses); codes
-- that can no longer pair anyone let go of it when it is deleted.
ALTER TABLE codes ADD COLUMN configuration_id uuid REFERENCES configurations (id);
