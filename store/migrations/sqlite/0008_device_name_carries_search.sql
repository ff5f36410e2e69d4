-- One index fewer for every pairing to write: the name sort's index carries the searched text
-- as a last column, and the search walks it (store/src/fleet.rs, `Backend::SEARCHED_DEVICES`)
-- as it walked `devices_search`, reading the text from the index alone. The name sort walks it
-- as before (the id is unique, so the text never changes the order). The leading expression is
-- the one the name sort orders by, and the last the search's (`SEARCHED_TEXT`), word for word.
-- Measured in BENCHMARKS.md ("What the fleet lists cost pairing").
--
-- `length(name) >= 0` holds for every row; only the statements that walk devices by name (and a
-- search's walk) write it (`Backend::BY_NAME`): this wide index would otherwise be SQLite's pick,
-- without statistics, for counts of other lists (app version 6 -> 21 ms when it was).
DROP INDEX devices_search;
DROP INDEX devices_by_name;
CREATE INDEX devices_by_name ON devices (
    org_id,
    lower(COALESCE(admin_name, name)),
    id,
    (' ' || lower(COALESCE(admin_name, '') || ' ' || name || ' ' || model || ' ' || os || ' '
        || app_version || ' ' || COALESCE(notes, '')))
) WHERE ended_at IS NULL AND length(name) >= 0;
