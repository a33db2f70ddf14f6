//! Persistent sessions (clean session = 0) in SQLite: the session itself, its
//! subscriptions, and its queue of QoS 1/2 messages not yet acknowledged.

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::props;
use crate::protocol::PublishProperties;

/// A queued message for a persistent session.
#[derive(Debug, Clone)]
pub(crate) struct QueuedRow {
    /// The broker's message sequence number; order of delivery.
    pub id: i64,
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 properties that travel with it.
    pub properties: Option<Arc<PublishProperties>>,
    /// Unix ms when its message expiry interval ends; None = never.
    pub expires_at: Option<i64>,
    /// The subscription identifiers it is delivered with.
    pub sub_ids: Option<Arc<[u32]>>,
}

/// One stored subscription: filter, MQTT 5 options byte (the QoS in its
/// low bits), and subscription identifier.
pub(crate) type SubscriptionRow = (String, u8, Option<u32>);

/// A persistent session as loaded at start.
pub(crate) struct SessionRow {
    pub client_id: String,
    pub device_id: Option<String>,
    pub subscriptions: Vec<SubscriptionRow>,
    /// The session expiry interval in seconds; None = never.
    pub expiry: Option<u32>,
    /// Since when it has had no connection (unix ms), if it was left.
    pub disconnected_at: Option<i64>,
}

/// Creates or updates a persistent session, connected now.
pub(crate) fn upsert_session(
    conn: &Connection,
    client_id: &str,
    device_id: Option<&str>,
    expiry: Option<u32>,
    at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (client_id, device_id, created_at, expiry) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(client_id) DO UPDATE SET device_id = excluded.device_id,
         expiry = excluded.expiry, disconnected_at = NULL",
    )?
    .execute(params![client_id, device_id, at, expiry])?;
    Ok(())
}

/// Records that a session's connection ended at `at` (unix ms; None: it is
/// connected again), with its expiry interval as it stands then.
pub(crate) fn set_disconnected(
    conn: &Connection,
    client_id: &str,
    expiry: Option<u32>,
    at: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET disconnected_at = ?2, expiry = ?3 WHERE client_id = ?1",
    )?
    .execute(params![client_id, at, expiry])?;
    Ok(())
}

/// Removes a session with its subscriptions and queue (cascade).
pub(crate) fn delete_session(conn: &Connection, client_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?
        .execute(params![client_id])?;
    Ok(())
}

/// Adds or replaces a subscription; `options` is the MQTT 5 options byte.
pub(crate) fn add_subscription(
    conn: &Connection,
    client_id: &str,
    filter: &str,
    options: u8,
    sub_id: Option<u32>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO subscriptions (client_id, filter, qos, options, sub_id) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(client_id, filter) DO UPDATE SET qos = excluded.qos,
         options = excluded.options, sub_id = excluded.sub_id",
    )?
    .execute(params![client_id, filter, options & 0b11, options, sub_id])?;
    Ok(())
}

pub(crate) fn remove_subscription(
    conn: &Connection,
    client_id: &str,
    filter: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2")?
        .execute(params![client_id, filter])?;
    Ok(())
}

pub(crate) fn enqueue(conn: &Connection, client_id: &str, m: &QueuedRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO session_queue
         (id, client_id, topic, payload, qos, retain, properties, expires_at, sub_ids)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        m.id,
        client_id,
        m.topic,
        &m.payload[..],
        m.qos,
        m.retain,
        props::to_column(m.properties.as_ref()),
        m.expires_at,
        props::ids_to_column(m.sub_ids.as_ref()),
    ])?;
    Ok(())
}

pub(crate) fn dequeue(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM session_queue WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Drops the oldest messages of a session beyond `keep`; returns how many.
pub(crate) fn trim(conn: &Connection, client_id: &str, keep: usize) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM session_queue WHERE client_id = ?1 AND id NOT IN
         (SELECT id FROM session_queue WHERE client_id = ?1 ORDER BY id DESC LIMIT ?2)",
    )?
    .execute(params![client_id, keep as i64])
}

/// Up to `max_rows` queued messages of a session with ids in `(after,
/// last]`, in order, stopping early once `max_bytes` of payload are read
/// (always at least one row): a resumed session is read a page at a time.
/// Messages whose expiry has passed by `now` (unix ms) are skipped (and
/// deleted by [`delete_expired`]).
pub(crate) fn queue_page(
    conn: &Connection,
    client_id: &str,
    after: i64,
    last: i64,
    max_rows: usize,
    max_bytes: usize,
    now: i64,
) -> rusqlite::Result<Vec<QueuedRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, topic, payload, qos, retain, properties, expires_at, sub_ids FROM session_queue
         WHERE client_id = ?1 AND id > ?2 AND id <= ?3
         AND (expires_at IS NULL OR expires_at > ?5) ORDER BY id LIMIT ?4",
    )?;
    let mut rows = stmt.query(params![client_id, after, last, max_rows as i64, now])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next()? {
        let payload = Bytes::from(r.get::<_, Vec<u8>>(2)?);
        bytes += payload.len();
        out.push(QueuedRow {
            id: r.get(0)?,
            topic: r.get(1)?,
            payload,
            qos: r.get(3)?,
            retain: r.get(4)?,
            properties: props::from_column(r.get(5)?),
            expires_at: r.get(6)?,
            sub_ids: props::ids_from_column(r.get(7)?),
        });
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// How many queued messages of a session have ids in `(after, last]`.
pub(crate) fn queue_len(
    conn: &Connection,
    client_id: &str,
    after: i64,
    last: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM session_queue WHERE client_id = ?1 AND id > ?2 AND id <= ?3",
    )?
    .query_row(params![client_id, after, last], |r| r.get::<_, i64>(0))
    .map(|n| n as usize)
}

pub(crate) fn all_sessions(conn: &Connection) -> rusqlite::Result<Vec<SessionRow>> {
    let mut sessions: Vec<SessionRow> = conn
        .prepare(
            "SELECT client_id, device_id, expiry, disconnected_at FROM sessions ORDER BY client_id",
        )?
        .query_map([], |r| {
            Ok(SessionRow {
                client_id: r.get(0)?,
                device_id: r.get(1)?,
                subscriptions: Vec::new(),
                expiry: r.get(2)?,
                disconnected_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT client_id, filter, COALESCE(options, qos), sub_id FROM subscriptions ORDER BY client_id",
    )?;
    let subs = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u8>(2)?,
            r.get::<_, Option<u32>>(3)?,
        ))
    })?;
    for sub in subs {
        let (client, filter, options, id) = sub?;
        if let Ok(i) = sessions.binary_search_by(|s| s.client_id.as_str().cmp(&client)) {
            sessions[i].subscriptions.push((filter, options, id));
        }
    }
    Ok(sessions)
}

/// Deletes the queued and retained messages whose expiry has passed by
/// `now` (unix ms); returns how many.
pub(crate) fn delete_expired(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    let queued = conn
        .prepare_cached(
            "DELETE FROM session_queue WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        )?
        .execute(params![now])?;
    let retained = conn
        .prepare_cached("DELETE FROM retained WHERE expires_at IS NOT NULL AND expires_at <= ?1")?
        .execute(params![now])?;
    Ok(queued + retained)
}

/// The highest message sequence number in use, so that new ones go above it.
pub(crate) fn max_queue_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM session_queue", [], |r| {
        r.get(0)
    })
}
