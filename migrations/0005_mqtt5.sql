-- MQTT 5: what a message and a persistent session carry beyond 3.1.1.
--
-- `properties` is the MQTT 5 PUBLISH properties that travel with the message
-- unchanged (payload format, content type, response topic, correlation data,
-- user properties), as JSON; NULL for a message without any (every 3.1.1
-- message). `expires_at` is when the message expiry interval ends, in unix
-- ms; NULL = never. Rows written before this migration have neither.

ALTER TABLE retained ADD COLUMN properties TEXT;
ALTER TABLE retained ADD COLUMN expires_at INTEGER;

ALTER TABLE session_queue ADD COLUMN properties TEXT;
ALTER TABLE session_queue ADD COLUMN expires_at INTEGER;
-- The subscription identifiers of the matching subscriptions, comma-separated.
ALTER TABLE session_queue ADD COLUMN sub_ids TEXT;

-- A session's expiry interval in seconds (NULL = never: a 3.1.1 session with
-- clean session = 0), and since when it has had no connection (unix ms; NULL
-- while connected). A session whose interval has passed is deleted at start.
ALTER TABLE sessions ADD COLUMN expiry INTEGER;
ALTER TABLE sessions ADD COLUMN disconnected_at INTEGER;

-- The subscription options byte of MQTT 5 (QoS, no local, retain as
-- published, retain handling) and the subscription identifier. Old rows:
-- the options are their QoS, and there is no identifier.
ALTER TABLE subscriptions ADD COLUMN options INTEGER;
ALTER TABLE subscriptions ADD COLUMN sub_id INTEGER;

-- The periodic sweep deletes expired messages by these, touching only rows
-- that have an expiry.
CREATE INDEX session_queue_expires_at ON session_queue(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX retained_expires_at ON retained(expires_at) WHERE expires_at IS NOT NULL;
