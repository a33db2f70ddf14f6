-- Actions: the set loaded from actions/*.toml, and a record of every run.

-- The actions loaded now (replaced as a whole at start and on each reload).
CREATE TABLE actions (
    name        TEXT PRIMARY KEY,
    file        TEXT NOT NULL,              -- the file it came from, as found in the actions dir
    line        INTEGER NOT NULL,           -- the line of its [[action]] header
    hash        TEXT NOT NULL,              -- hex sha256 of the definition: a change is visible
    definition  TEXT NOT NULL,              -- the definition as JSON text
    enabled     INTEGER NOT NULL,
    loaded_at   INTEGER NOT NULL            -- unix ms when this definition (this hash) was first loaded
);

-- One row per run (or skipped run). Not tied to the actions table: the
-- runs of a removed action stay until they are pruned.
CREATE TABLE action_runs (
    id              INTEGER PRIMARY KEY,    -- increasing: newest first is id DESC, and the paging cursor
    action          TEXT NOT NULL,
    trigger_kind    TEXT NOT NULL,          -- mqtt_topic, schedule, device_event, ...
    trigger_detail  TEXT NOT NULL,          -- the topic, the schedule time, or the event
    device_id       TEXT,                   -- the device whose message or event it was, if any
    started_at      INTEGER NOT NULL,       -- unix ms
    ended_at        INTEGER,                -- unix ms
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'timeout', 'skipped')),
    detail          TEXT NOT NULL DEFAULT '',
    exit_code       INTEGER,
    stdout          TEXT NOT NULL DEFAULT '',
    stderr          TEXT NOT NULL DEFAULT ''
);
-- An action's runs, newest first: GET /actions/{name}/runs and the last run.
CREATE INDEX action_runs_action ON action_runs(action, id);
-- Pruning by age.
CREATE INDEX action_runs_started ON action_runs(started_at);
