-- Presence across nodes. Each node records a heartbeat here at every sweep; the high half of
-- a device's `online_conn` is the id of the node it is online on. A node whose heartbeat went
-- stale is given up for dead by the others, which mark its devices offline.
CREATE TABLE nodes (
    id           bigint PRIMARY KEY,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL
);
-- Finds the devices online on one node without reading every online device.
CREATE INDEX devices_online_node ON devices ((online_conn >> 32)) WHERE online_conn IS NOT NULL;
