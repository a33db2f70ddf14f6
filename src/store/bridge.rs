//! The bridges' outgoing queues in SQLite (`bridge_queue`, see
//! `migrations/0004_bridge.sql`): a row per QoS 1/2 message a bridge must
//! still hand to its remote broker, deleted on the remote's acknowledgement.

use bytes::Bytes;
use rusqlite::{params, Connection};

/// A message waiting to go out over a bridge.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueuedRow {
    /// Increasing in commit order and never reused (AUTOINCREMENT).
    pub id: i64,
    /// The local topic.
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// QoS 2 only: the remote sent PUBREC and we sent PUBREL; what is left
    /// is the PUBCOMP, so only PUBREL is sent again.
    pub released: bool,
}

/// Appends a message to a bridge's queue.
pub(crate) fn enqueue(
    conn: &Connection,
    bridge: &str,
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO bridge_queue (bridge, topic, payload, qos, retain, queued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![bridge, topic, payload, qos, retain, at])?;
    Ok(())
}

/// A page of a bridge's queue, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub rows: Vec<QueuedRow>,
    /// The query ran out of rows (rather than stopping at the limits).
    pub exhausted: bool,
}

/// Rows of a bridge with an id above `after`, oldest first: at most `limit`
/// of them, and no more once their payloads reach `max_bytes` (one row at
/// least), so that a page of large messages stays small in memory.
pub(crate) fn page(
    conn: &Connection,
    bridge: &str,
    after: i64,
    limit: usize,
    max_bytes: usize,
) -> rusqlite::Result<Page> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, topic, payload, qos, retain, released FROM bridge_queue
         WHERE bridge = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![bridge, after, limit as i64])?;
    let mut page = Page::default();
    let mut bytes = 0usize;
    loop {
        if page.rows.len() >= limit || (bytes >= max_bytes && !page.rows.is_empty()) {
            return Ok(page);
        }
        let Some(r) = rows.next()? else {
            page.exhausted = true;
            return Ok(page);
        };
        let row = QueuedRow {
            id: r.get(0)?,
            topic: r.get(1)?,
            payload: Bytes::from(r.get::<_, Vec<u8>>(2)?),
            qos: r.get(3)?,
            retain: r.get(4)?,
            released: r.get(5)?,
        };
        bytes += row.payload.len() + row.topic.len();
        page.rows.push(row);
    }
}

/// Removes rows (acknowledged by the remote, or given up); returns how many
/// existed.
pub(crate) fn delete(conn: &Connection, ids: &[i64]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached("DELETE FROM bridge_queue WHERE id = ?1")?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute(params![id])?;
    }
    Ok(n)
}

/// Marks a QoS 2 row as released (PUBREC received, PUBREL about to go).
pub(crate) fn release(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE bridge_queue SET released = 1 WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Drops the oldest rows of a bridge that were not read yet (id above
/// `after`) until at most `keep` rows remain, as far as unread rows allow;
/// returns how many were dropped.
pub(crate) fn trim(
    conn: &Connection,
    bridge: &str,
    keep: usize,
    after: i64,
) -> rusqlite::Result<usize> {
    let total = count(conn, bridge)?;
    let over = total.saturating_sub(keep);
    if over == 0 {
        return Ok(0);
    }
    conn.prepare_cached(
        "DELETE FROM bridge_queue WHERE id IN
         (SELECT id FROM bridge_queue WHERE bridge = ?1 AND id > ?2 ORDER BY id LIMIT ?3)",
    )?
    .execute(params![bridge, after, over as i64])
}

/// How many rows a bridge has.
pub(crate) fn count(conn: &Connection, bridge: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("SELECT COUNT(*) FROM bridge_queue WHERE bridge = ?1")?
        .query_row(params![bridge], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as usize)
}

/// The highest row id of a bridge, 0 when it has none.
pub(crate) fn max_id(conn: &Connection, bridge: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM bridge_queue WHERE bridge = ?1")?
        .query_row(params![bridge], |r| r.get(0))
}

/// Every bridge name with rows, and how many: to warn about the queue of a
/// bridge that is no longer configured.
pub(crate) fn queued_by_bridge(conn: &Connection) -> rusqlite::Result<Vec<(String, usize)>> {
    let mut stmt =
        conn.prepare("SELECT bridge, COUNT(*) FROM bridge_queue GROUP BY bridge ORDER BY bridge")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as usize))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(include_str!("../../migrations/0004_bridge.sql"))
            .expect("schema");
        conn
    }

    fn put(conn: &Connection, bridge: &str, topic: &str) {
        enqueue(conn, bridge, topic, b"p", 1, false, 0).expect("enqueue");
    }

    #[test]
    fn pages_are_in_order_per_bridge() {
        let conn = db();
        for i in 0..5 {
            put(&conn, "a", &format!("t/{i}"));
            put(&conn, "b", &format!("u/{i}"));
        }
        let first = page(&conn, "a", 0, 3, usize::MAX).expect("page");
        assert!(!first.exhausted);
        assert_eq!(
            first
                .rows
                .iter()
                .map(|r| r.topic.as_str())
                .collect::<Vec<_>>(),
            ["t/0", "t/1", "t/2"]
        );
        let rest = page(&conn, "a", first.rows[2].id, 10, usize::MAX).expect("page");
        assert_eq!(rest.rows.len(), 2);
        assert!(rest.exhausted);
        let small = page(&conn, "a", 0, 10, 1).expect("page");
        assert_eq!(
            small.rows.len(),
            1,
            "a byte budget stops the page, after one row"
        );
        assert!(!small.exhausted);
        assert_eq!(count(&conn, "b").expect("count"), 5);
    }

    #[test]
    fn ids_are_never_reused_after_the_newest_row_is_deleted() {
        let conn = db();
        put(&conn, "a", "t");
        let last = max_id(&conn, "a").expect("max");
        delete(&conn, &[last]).expect("delete");
        put(&conn, "a", "t");
        assert!(max_id(&conn, "a").expect("max") > last);
    }

    #[test]
    fn trim_drops_the_oldest_unread_rows() {
        let conn = db();
        for i in 0..10 {
            put(&conn, "a", &format!("t/{i}"));
        }
        let read = page(&conn, "a", 0, 2, usize::MAX).expect("page").rows;
        let cursor = read[1].id;
        assert_eq!(trim(&conn, "a", 6, cursor).expect("trim"), 4);
        let left: Vec<String> = page(&conn, "a", 0, 100, usize::MAX)
            .expect("page")
            .rows
            .into_iter()
            .map(|r| r.topic)
            .collect();
        assert_eq!(left, ["t/0", "t/1", "t/6", "t/7", "t/8", "t/9"]);
        assert_eq!(trim(&conn, "a", 6, cursor).expect("trim"), 0);
    }

    #[test]
    fn release_and_delete() {
        let conn = db();
        enqueue(&conn, "a", "t", b"x", 2, true, 0).expect("enqueue");
        let id = max_id(&conn, "a").expect("max");
        release(&conn, id).expect("release");
        let rows = page(&conn, "a", 0, 1, usize::MAX).expect("page").rows;
        assert!(rows[0].released && rows[0].retain && rows[0].qos == 2);
        assert_eq!(delete(&conn, &[id, id]).expect("delete"), 1);
        assert_eq!(
            queued_by_bridge(&conn).expect("by bridge"),
            Vec::<(String, usize)>::new()
        );
    }
}
