-- The broker core: devices and their tokens, retained messages, and the
-- persistent sessions that must survive a restart (also a kill -9).

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,            -- 24 hex characters, like TagoIO's ids
    name        TEXT NOT NULL UNIQUE,
    tags        TEXT NOT NULL DEFAULT '[]',  -- JSON array of {"key","value"}
    params      TEXT NOT NULL DEFAULT '[]',  -- JSON array of {"id","key","value","sent"}
    parser      TEXT,                        -- JavaScript payload parser, if any
    created_at  INTEGER NOT NULL,            -- unix milliseconds
    last_input  INTEGER,                     -- unix milliseconds of the last publish or POST
    last_output INTEGER
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,            -- 24 hex characters; what `token revoke` takes
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    permission  TEXT NOT NULL CHECK (permission IN ('full', 'write', 'read')),
    hash        TEXT NOT NULL UNIQUE,        -- sha256 of the secret, hex; the secret is never stored
    last4       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER                      -- unix milliseconds; NULL = never
);
CREATE INDEX tokens_device ON tokens(device_id);

CREATE TABLE retained (
    topic       TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- A persistent session (clean session = 0) and what it subscribed to.
CREATE TABLE sessions (
    client_id   TEXT PRIMARY KEY,
    device_id   TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE subscriptions (
    client_id   TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
    filter      TEXT NOT NULL,
    qos         INTEGER NOT NULL,
    PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;

-- QoS 1/2 messages for a persistent session: queued while it was away, or
-- sent and not yet acknowledged. A row is deleted when the client acknowledges
-- it (PUBACK, or PUBREC for QoS 2). `id` is the broker's message sequence, so
-- that reading by id gives each topic's messages in publish order.
CREATE TABLE session_queue (
    id          INTEGER PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL
);
CREATE INDEX session_queue_client ON session_queue(client_id, id);
