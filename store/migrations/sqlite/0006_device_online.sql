-- The fleet lists' online filter (store/src/fleet.rs, `Backend::ONLINE_DEVICES`): an
-- organization's online devices alone, so that the filter reads those (their ids, or their count)
-- instead of walking every device of the organization for the few that are online. Small: a
-- device is in it while it is connected.
--
-- `length(name) >= 0` holds for every row; it is there, as in `devices_search`, so that only the
-- statements that name this index use it: SQLite uses a partial index only for a statement whose
-- WHERE has each of its terms, and plans without statistics.
CREATE INDEX devices_online ON devices (org_id, id)
    WHERE ended_at IS NULL AND online_conn IS NOT NULL AND length(name) >= 0;
