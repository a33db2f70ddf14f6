-- Bridges: what each `[[bridge]]` must still send to its remote broker.
--
-- A QoS 1/2 message that matches a bridge's `out` filters is written here
-- before its publisher is acknowledged, and deleted when the remote
-- acknowledges it (PUBACK, or PUBCOMP for QoS 2). The bridge reads the queue
-- in id order, a page at a time, so the rows are the queue and memory only
-- holds the page being sent.
--
-- `id` is AUTOINCREMENT on purpose: ids are handed out by the one writer
-- thread in commit order and never reused, so "every row above the last id
-- read" is exactly what has not been read yet. The packet identifier on the
-- link is derived from it, so that a resend after a restart carries the same
-- one (a QoS 2 remote then recognises it).
CREATE TABLE bridge_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bridge      TEXT NOT NULL,              -- the [[bridge]] name
    topic       TEXT NOT NULL,              -- the local topic; the remote one is derived when sent
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,           -- 1 or 2
    retain      INTEGER NOT NULL,
    released    INTEGER NOT NULL DEFAULT 0, -- QoS 2: PUBREC came, PUBREL was sent; resend only PUBREL
    queued_at   INTEGER NOT NULL            -- unix ms
);
CREATE INDEX bridge_queue_bridge ON bridge_queue(bridge, id);
