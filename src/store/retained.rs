//! Retained messages in SQLite: one row per topic, written before the
//! publisher's PUBACK so that a retained message survives a `kill -9`.

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::props;
use crate::protocol::PublishProperties;

/// A retained message as stored.
pub(crate) struct RetainedRow {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub properties: Option<Arc<PublishProperties>>,
    /// Unix ms when its message expiry interval ends; None = never.
    pub expires_at: Option<i64>,
}

/// Sets (non-empty payload) or clears (empty payload) a topic's retained message.
pub(crate) fn set(conn: &Connection, row: &RetainedRow, at: i64) -> rusqlite::Result<()> {
    if row.payload.is_empty() {
        conn.prepare_cached("DELETE FROM retained WHERE topic = ?1")?
            .execute(params![row.topic])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO retained (topic, payload, qos, updated_at, properties, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos,
             updated_at = excluded.updated_at, properties = excluded.properties,
             expires_at = excluded.expires_at",
        )?
        .execute(params![
            row.topic,
            &row.payload[..],
            row.qos,
            at,
            props::to_column(row.properties.as_ref()),
            row.expires_at,
        ])?;
    }
    Ok(())
}

/// Every retained message whose expiry has not passed by `now` (unix ms).
pub(crate) fn all(conn: &Connection, now: i64) -> rusqlite::Result<Vec<RetainedRow>> {
    let mut stmt = conn.prepare(
        "SELECT topic, payload, qos, properties, expires_at FROM retained
         WHERE expires_at IS NULL OR expires_at > ?1",
    )?;
    let rows = stmt.query_map(params![now], |r| {
        Ok(RetainedRow {
            topic: r.get(0)?,
            payload: Bytes::from(r.get::<_, Vec<u8>>(1)?),
            qos: r.get(2)?,
            properties: props::from_column(r.get(3)?),
            expires_at: r.get(4)?,
        })
    })?;
    rows.collect()
}
