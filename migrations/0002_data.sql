-- Device buckets: the data points stored by insert_bucket actions, the
-- legacy tago/data/post topic and POST /data, in TagoIO's format.

CREATE TABLE data (
    seq         INTEGER PRIMARY KEY,        -- insertion order: query=last_insert, and a cheap rowid
    id          TEXT NOT NULL UNIQUE,       -- the item's public id (24 hex)
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    variable    TEXT NOT NULL,
    value       TEXT,                       -- the JSON text of the value (number, string or boolean)
    value_num   REAL,                       -- the value when it is a number: min, max, avg, sum
    unit        TEXT,
    time        INTEGER NOT NULL,           -- unix milliseconds
    grp         TEXT,
    location    TEXT,                       -- GeoJSON point, JSON text
    metadata    TEXT,                       -- JSON object text
    created_at  INTEGER NOT NULL
);
-- last_value and a time range over one variable: a seek on this index.
CREATE INDEX data_device_variable_time ON data(device_id, variable, time);
-- every variable of a device by time (GET /data without variable).
CREATE INDEX data_device_time ON data(device_id, time);
