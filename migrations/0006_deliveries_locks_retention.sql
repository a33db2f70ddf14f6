-- TagoIO's actions: each attempt of a run, deliveries waiting in SQLite
-- (http_post, email), the lock state of actions with an `unlock`, and how
-- long a device's bucket keeps its data.

-- Runs gain the outcome 'pending' (a delivery still being tried) and the
-- record of each delivery attempt. SQLite cannot change a CHECK, so the
-- table is rebuilt (ids kept: they are the paging cursor).
CREATE TABLE action_runs_new (
    id              INTEGER PRIMARY KEY,
    action          TEXT NOT NULL,
    trigger_kind    TEXT NOT NULL,          -- mqtt_topic, variable, schedule, every, device_event
    trigger_detail  TEXT NOT NULL,          -- the topic, the variables, the schedule time, or the event
    device_id       TEXT,
    started_at      INTEGER NOT NULL,       -- unix ms
    ended_at        INTEGER,                -- unix ms; NULL while pending
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'timeout', 'skipped', 'pending')),
    detail          TEXT NOT NULL DEFAULT '',
    exit_code       INTEGER,
    stdout          TEXT NOT NULL DEFAULT '',
    stderr          TEXT NOT NULL DEFAULT '',
    attempts        TEXT NOT NULL DEFAULT '[]'  -- JSON array: one object per delivery attempt
);
INSERT INTO action_runs_new (id, action, trigger_kind, trigger_detail, device_id, started_at,
    ended_at, outcome, detail, exit_code, stdout, stderr)
SELECT id, action, trigger_kind, trigger_detail, device_id, started_at,
    ended_at, outcome, detail, exit_code, stdout, stderr FROM action_runs;
DROP TABLE action_runs;
ALTER TABLE action_runs_new RENAME TO action_runs;
CREATE INDEX action_runs_action ON action_runs(action, id);
CREATE INDEX action_runs_started ON action_runs(started_at);

-- An action with an `unlock`, locked for a device since it last ran for it
-- (TagoIO's Trigger Unlock). No row: unlocked.
CREATE TABLE action_locks (
    action      TEXT NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    locked_at   INTEGER NOT NULL,           -- unix ms
    PRIMARY KEY (action, device_id)
) WITHOUT ROWID;

-- An http_post or email delivery still to be made: written in the same
-- transaction as what triggered it, deleted with its last attempt. The
-- request is rendered when queued (templates filled), so a reload does not
-- change what is sent; `run_id` is the run record its attempts go to.
CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('http_post', 'email')),
    run_id      INTEGER NOT NULL,
    device_id   TEXT,                       -- the triggering device, if any
    request     TEXT NOT NULL,              -- JSON: what to send, and how often to try
    attempts    INTEGER NOT NULL DEFAULT 0, -- attempts made
    next_at     INTEGER NOT NULL,           -- unix ms: when the next attempt is due
    created_at  INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_at);
CREATE INDEX deliveries_action ON deliveries(action, id);

-- Data retention per device (`brook device add --retention --max-rows`).
ALTER TABLE devices ADD COLUMN retention_ms INTEGER;   -- NULL: [data] retention; 0: keep forever
ALTER TABLE devices ADD COLUMN max_rows INTEGER;       -- NULL: no cap; else the newest rows kept
