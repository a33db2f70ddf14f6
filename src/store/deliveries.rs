//! Deliveries waiting in SQLite: the `http_post` and `email` runs still to
//! be made. A delivery is written in the transaction of what triggered it
//! (so it survives `kill -9` from the moment its publisher is acknowledged),
//! read back by the delivery worker when due, rescheduled after a failed
//! attempt, and deleted with its last one. Each action holds at most its
//! `max_pending`; past that the oldest is dropped and its run ends
//! `skipped`.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::actions::{self as records, RunOutcome};

/// A delivery to queue: its run record is inserted with it (as `Pending`).
#[derive(Debug, Clone)]
pub(crate) struct NewDelivery {
    pub run: records::RunRecord,
    /// `http_post` or `email`.
    pub kind: &'static str,
    /// What to send and how often to try, as `actions::deliver` reads it.
    pub request: Value,
    /// The action's bound on waiting deliveries.
    pub max_pending: usize,
    /// When the first attempt is due (unix ms): now.
    pub due: i64,
}

/// A queued delivery as read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivery {
    pub id: i64,
    pub action: String,
    pub kind: String,
    pub run_id: i64,
    pub device_id: Option<String>,
    pub request: Value,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_at: i64,
    pub created_at: i64,
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Queued {
    /// The new delivery's run record.
    pub run_id: i64,
    /// Older deliveries of the same action dropped to stay within its bound.
    pub dropped: usize,
}

/// Inserts the delivery and its pending run record; then drops the oldest
/// deliveries of its action past `max_pending` (their runs end `skipped`).
pub(crate) fn enqueue(conn: &Connection, d: &NewDelivery) -> rusqlite::Result<Queued> {
    let run_id = records::insert_run(conn, &d.run)?;
    conn.prepare_cached(
        "INSERT INTO deliveries (action, kind, run_id, device_id, request, attempts, next_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
    )?
    .execute(params![
        d.run.action,
        d.kind,
        run_id,
        d.run.device_id,
        d.request.to_string(),
        d.due,
        d.run.started_at
    ])?;
    let pending = pending_of(conn, &d.run.action)?;
    let mut dropped = 0;
    if pending > d.max_pending {
        let excess = (pending - d.max_pending) as i64;
        let oldest: Vec<(i64, i64)> = conn
            .prepare_cached(
                "SELECT id, run_id FROM deliveries WHERE action = ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![d.run.action, excess], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (id, run) in oldest {
            remove(conn, id)?;
            records::end_run(
                conn,
                run,
                RunOutcome::Skipped,
                d.run.started_at,
                &format!(
                    "dropped before it was delivered: {} newer deliveries of this action were waiting (max_pending)",
                    d.max_pending
                ),
            )?;
            dropped += 1;
        }
        crate::metrics::METRICS
            .deliveries_dropped
            .add(dropped as u64);
    }
    Ok(Queued { run_id, dropped })
}

/// How many deliveries of `action` wait.
pub(crate) fn pending_of(conn: &Connection, action: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("SELECT COUNT(*) FROM deliveries WHERE action = ?1")?
        .query_row(params![action], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
}

const COLUMNS: &str = "id, action, kind, run_id, device_id, request, attempts, next_at, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let request: String = r.get(5)?;
    Ok(Delivery {
        id: r.get(0)?,
        action: r.get(1)?,
        kind: r.get(2)?,
        run_id: r.get(3)?,
        device_id: r.get(4)?,
        request: serde_json::from_str(&request).unwrap_or(Value::Null),
        attempts: r.get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_at: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// The most overdue delivery due by `now` whose action is not in `busy`
/// (the actions with an attempt under way: one at a time per action).
pub(crate) fn next_due(
    conn: &Connection,
    now: i64,
    busy: &[String],
) -> rusqlite::Result<Option<Delivery>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE next_at <= ?1 AND action NOT IN (SELECT value FROM json_each(?2))
         ORDER BY next_at, id LIMIT 1"
    ))?
    .query_row(
        params![now, Value::from(busy.to_vec()).to_string()],
        from_row,
    )
    .optional()
}

/// When the next delivery of an action not in `busy` is due, if any waits.
pub(crate) fn next_due_at(conn: &Connection, busy: &[String]) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(next_at) FROM deliveries
         WHERE action NOT IN (SELECT value FROM json_each(?1))",
    )?
    .query_row(params![Value::from(busy.to_vec()).to_string()], |r| {
        r.get(0)
    })
}

/// After a failed attempt: `attempts` made, the next due at `next_at`.
pub(crate) fn reschedule(
    conn: &Connection,
    id: i64,
    attempts: u32,
    next_at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE deliveries SET attempts = ?2, next_at = ?3 WHERE id = ?1")?
        .execute(params![id, attempts, next_at])?;
    Ok(())
}

/// Whether a delivery is still queued (not dropped from a full queue while
/// an attempt of it was under way).
pub(crate) fn exists(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1")?
        .query_row(params![id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// Deletes a delivery (its last attempt was made, or it was dropped).
pub(crate) fn remove(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite_migration::{Migrations, M};
    use serde_json::json;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        Migrations::from_slice(
            &super::super::MIGRATIONS
                .iter()
                .map(|s| M::up(s))
                .collect::<Vec<_>>(),
        )
        .to_latest(&mut conn)
        .unwrap();
        conn
    }

    fn new(action: &str, at: i64, max_pending: usize) -> NewDelivery {
        NewDelivery {
            run: records::RunRecord {
                id: 0,
                action: action.into(),
                trigger_kind: "variable".into(),
                trigger_detail: "temperature".into(),
                device_id: Some("d".into()),
                started_at: at,
                ended_at: None,
                outcome: RunOutcome::Pending,
                detail: "queued".into(),
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                attempts: Vec::new(),
                count: 1,
            },
            kind: "http_post",
            request: json!({"url": "http://x/"}),
            max_pending,
            due: at,
        }
    }

    #[test]
    fn due_deliveries_come_one_per_action_in_order() {
        let conn = db();
        let a1 = enqueue(&conn, &new("a", 10, 10)).unwrap();
        enqueue(&conn, &new("a", 20, 10)).unwrap();
        enqueue(&conn, &new("b", 30, 10)).unwrap();
        let first = next_due(&conn, 100, &[]).unwrap().unwrap();
        assert_eq!((first.action.as_str(), first.run_id), ("a", a1.run_id));
        assert_eq!(first.request["url"], "http://x/");
        let other = next_due(&conn, 100, &["a".into()]).unwrap().unwrap();
        assert_eq!(other.action, "b");
        assert!(next_due(&conn, 5, &[]).unwrap().is_none(), "none due yet");
        reschedule(&conn, first.id, 1, 500).unwrap();
        assert_eq!(next_due_at(&conn, &["b".into()]).unwrap(), Some(20));
        remove(&conn, first.id).unwrap();
        assert_eq!(pending_of(&conn, "a").unwrap(), 1);
        assert_eq!(pending_of(&conn, "b").unwrap(), 1);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_ends_its_run() {
        let conn = db();
        let first = enqueue(&conn, &new("a", 1, 2)).unwrap();
        enqueue(&conn, &new("a", 2, 2)).unwrap();
        let third = enqueue(&conn, &new("a", 3, 2)).unwrap();
        assert_eq!(third.dropped, 1);
        assert_eq!(pending_of(&conn, "a").unwrap(), 2);
        let runs = records::runs_of(&conn, "a", 10, None).unwrap();
        let dropped = runs.iter().find(|r| r.id == first.run_id).unwrap();
        assert_eq!(dropped.outcome, RunOutcome::Skipped);
        assert!(dropped.detail.starts_with("dropped"), "{}", dropped.detail);
        assert_eq!(
            runs.iter()
                .filter(|r| r.outcome == RunOutcome::Pending)
                .count(),
            2
        );
    }

    #[test]
    fn an_attempt_of_a_dropped_delivery_keeps_its_run_skipped() {
        let conn = db();
        let first = enqueue(&conn, &new("a", 1, 1)).unwrap();
        // Its attempt is under way when a newer delivery drops it.
        enqueue(&conn, &new("a", 2, 1)).unwrap();
        let id: i64 = conn
            .query_row("SELECT max(id) FROM deliveries", [], |r| r.get(0))
            .unwrap();
        assert!(!exists(&conn, id - 1).unwrap());
        assert!(exists(&conn, id).unwrap());
        records::append_attempt(&conn, first.run_id, &json!({"attempt": 1, "ok": false})).unwrap();
        let runs = records::runs_of(&conn, "a", 10, None).unwrap();
        let dropped = runs.iter().find(|r| r.id == first.run_id).unwrap();
        assert_eq!(dropped.outcome, RunOutcome::Skipped);
        assert_eq!(dropped.attempts, vec![json!({"attempt": 1, "ok": false})]);
    }

    #[test]
    fn attempts_accumulate_in_the_run_record() {
        let conn = db();
        let q = enqueue(&conn, &new("a", 1, 10)).unwrap();
        records::record_attempt(
            &conn,
            q.run_id,
            &json!({"attempt": 1, "status": 500}),
            RunOutcome::Pending,
            None,
            "retrying",
        )
        .unwrap();
        records::record_attempt(
            &conn,
            q.run_id,
            &json!({"attempt": 2, "status": 200}),
            RunOutcome::Ok,
            Some(9),
            "delivered",
        )
        .unwrap();
        let run = records::runs_of(&conn, "a", 1, None).unwrap().remove(0);
        assert_eq!(run.outcome, RunOutcome::Ok);
        assert_eq!(run.ended_at, Some(9));
        assert_eq!(
            run.attempts,
            vec![
                json!({"attempt": 1, "status": 500}),
                json!({"attempt": 2, "status": 200})
            ]
        );
        // A pending run is never pruned away from under its delivery.
        let pending = enqueue(&conn, &new("a", 2, 10)).unwrap();
        records::prune(&conn, 0, Some(std::time::Duration::ZERO), 1_000_000).unwrap();
        let left: Vec<i64> = records::runs_of(&conn, "a", 10, None)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, vec![pending.run_id]);
    }
}
