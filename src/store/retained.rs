//! Retained messages in SQLite: one row per topic, written before the
//! publisher's PUBACK so that a retained message survives a `kill -9`.

use bytes::Bytes;
use rusqlite::{params, Connection};

/// A retained message as stored.
pub(crate) struct RetainedRow {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
}

/// Sets (non-empty payload) or clears (empty payload) a topic's retained message.
pub(crate) fn set(
    conn: &Connection,
    topic: &str,
    payload: &[u8],
    qos: u8,
    at: i64,
) -> rusqlite::Result<()> {
    if payload.is_empty() {
        conn.prepare_cached("DELETE FROM retained WHERE topic = ?1")?
            .execute(params![topic])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO retained (topic, payload, qos, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos,
             updated_at = excluded.updated_at",
        )?
        .execute(params![topic, payload, qos, at])?;
    }
    Ok(())
}

pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<RetainedRow>> {
    let mut stmt = conn.prepare("SELECT topic, payload, qos FROM retained")?;
    let rows = stmt.query_map([], |r| {
        Ok(RetainedRow {
            topic: r.get(0)?,
            payload: Bytes::from(r.get::<_, Vec<u8>>(1)?),
            qos: r.get(2)?,
        })
    })?;
    rows.collect()
}
