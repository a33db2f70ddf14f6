//! Data that ages out: `[data] retention` (the default for every device),
//! a device's own `retention` and `max_rows` (TagoIO's bucket limits: the
//! newest rows stay, the oldest go first).
//!
//! A background task prunes every `[data] prune_interval`, a device at a
//! time, in batches of [`BATCH`] rows, each its own write job: a publish
//! whose rows commit in the same transaction as a batch waits for that
//! batch only (a few milliseconds), never for a whole device's worth.
//! Which rows are past `max_rows` is found on the reader connection, beside
//! the writer. `GET /data` leaves out items older than the retention
//! itself (see [`cutoff`]), so an expired item is never answered between
//! two rounds.
//!
//! The space of pruned rows is reused: their pages go on SQLite's free
//! list, which later inserts take first, so a bucket at its limits stops
//! growing the file. A database created by this version also has
//! `auto_vacuum = INCREMENTAL`, and each round that pruned something ends
//! with a `PRAGMA incremental_vacuum` of at most [`VACUUM_PAGES`] pages,
//! which hands free pages back to the file system a little at a time.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_ms, Store};
use crate::metrics::METRICS;

/// Rows one prune job deletes at most: small enough that the transaction it
/// joins commits in milliseconds.
pub(crate) const BATCH: usize = 500;

/// Free pages one round hands back at most (4 KiB each: 4 MiB).
const VACUUM_PAGES: u32 = 1024;

/// What the pruner enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// `[data] retention` in ms; 0 keeps data forever.
    pub default_ms: i64,
    /// How often a round runs.
    pub every: Duration,
}

/// A device's limits as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    pub device_id: String,
    /// `None`: the policy's default; `Some(0)`: forever.
    pub retention_ms: Option<i64>,
    pub max_rows: Option<i64>,
}

/// The oldest `time` a device's bucket keeps at `now` (unix ms), or `None`
/// when it keeps everything: its own retention, else `default_ms`.
pub(crate) fn cutoff(retention_ms: Option<i64>, default_ms: i64, now: i64) -> Option<i64> {
    let keep = retention_ms.unwrap_or(default_ms);
    (keep > 0).then(|| now.saturating_sub(keep))
}

/// Every device that has something to enforce under `default_ms`.
pub(crate) fn limits(conn: &Connection, default_ms: i64) -> rusqlite::Result<Vec<Limits>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, retention_ms, max_rows FROM devices
         WHERE max_rows IS NOT NULL OR COALESCE(retention_ms, ?1) > 0",
    )?;
    let rows = stmt.query_map(params![default_ms], |r| {
        Ok(Limits {
            device_id: r.get(0)?,
            retention_ms: r.get(1)?,
            max_rows: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Deletes at most `batch` of a device's items older than `cutoff`;
/// returns how many went.
pub(crate) fn delete_older(
    conn: &Connection,
    device_id: &str,
    cutoff: i64,
    batch: usize,
) -> rusqlite::Result<usize> {
    let n = conn
        .prepare_cached(
            "DELETE FROM data WHERE seq IN (
                SELECT seq FROM data WHERE device_id = ?1 AND time < ?2 LIMIT ?3)",
        )?
        .execute(params![device_id, cutoff, batch as i64])?;
    METRICS.data_pruned.add(n as u64);
    Ok(n)
}

/// The newest item past the device's first `keep` (newest first by time):
/// `(time, seq)` of the first one to delete for `max_rows = keep`.
pub(crate) fn first_past(
    conn: &Connection,
    device_id: &str,
    keep: i64,
) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached(
        "SELECT time, seq FROM data WHERE device_id = ?1
         ORDER BY time DESC, seq DESC LIMIT 1 OFFSET ?2",
    )?
    .query_row(params![device_id, keep.max(0)], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// Deletes at most `batch` of a device's items at or before `(time, seq)`
/// in that order (oldest time first); returns how many went.
pub(crate) fn delete_through(
    conn: &Connection,
    device_id: &str,
    time: i64,
    seq: i64,
    batch: usize,
) -> rusqlite::Result<usize> {
    let n = conn
        .prepare_cached(
            "DELETE FROM data WHERE seq IN (
                SELECT seq FROM data WHERE device_id = ?1
                  AND (time < ?2 OR (time = ?2 AND seq <= ?3))
                ORDER BY time, seq LIMIT ?4)",
        )?
        .execute(params![device_id, time, seq, batch as i64])?;
    METRICS.data_pruned.add(n as u64);
    Ok(n)
}

/// One round over every device; returns the rows it deleted.
pub(crate) async fn prune_once(store: &Store, policy: Policy) -> Result<u64, super::StoreError> {
    let default_ms = policy.default_ms;
    let devices = store.read(move |c| limits(c, default_ms)).await?;
    let mut total = 0u64;
    for device in devices {
        if let Some(cutoff) = cutoff(device.retention_ms, default_ms, now_ms()) {
            loop {
                let id = device.device_id.clone();
                let n = store
                    .write(move |c| delete_older(c, &id, cutoff, BATCH))
                    .await?;
                total += n as u64;
                if n < BATCH {
                    break;
                }
            }
        }
        if let Some(keep) = device.max_rows {
            let id = device.device_id.clone();
            let Some((time, seq)) = store.read(move |c| first_past(c, &id, keep)).await? else {
                continue;
            };
            loop {
                let id = device.device_id.clone();
                let n = store
                    .write(move |c| delete_through(c, &id, time, seq, BATCH))
                    .await?;
                total += n as u64;
                if n < BATCH {
                    break;
                }
            }
        }
    }
    if total > 0 {
        store
            .write(|c| {
                c.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                    .map(|_| ())
            })
            .await?;
        tracing::info!(rows = total, "retention: old data pruned");
    }
    Ok(total)
}

/// Starts the pruner (on the current runtime); it runs until the process
/// ends.
pub(crate) fn start(store: Store, policy: Policy) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(policy.every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = prune_once(&store, policy).await {
                tracing::warn!(error = %e, "retention: pruning failed; next round will retry");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use crate::store::data::insert;
    use crate::store::item::DataItem;

    const DEV: &str = "d0000000000000000000000a";

    fn store_with(
        times: &[i64],
        retention_ms: Option<i64>,
        max_rows: Option<i64>,
    ) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Synchronous::Normal).unwrap();
        let items: Vec<DataItem> = times
            .iter()
            .enumerate()
            .map(|(i, t)| DataItem {
                id: format!("{i:024}"),
                device: DEV.into(),
                variable: "t".into(),
                value: Some(serde_json::json!(i)),
                unit: None,
                time: *t,
                group: None,
                location: None,
                metadata: None,
                created_at: 0,
            })
            .collect();
        futures::executor::block_on(store.write(move |c| {
            c.execute(
                "INSERT INTO devices (id, name, created_at, retention_ms, max_rows) VALUES (?1, 'd', 0, ?2, ?3)",
                params![DEV, retention_ms, max_rows],
            )?;
            insert(c, &items)
        }))
        .unwrap();
        (dir, store)
    }

    fn times_left(store: &Store) -> Vec<i64> {
        store
            .read_blocking(|c| {
                c.prepare("SELECT time FROM data ORDER BY time, seq")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn cutoff_takes_the_devices_own_retention_first() {
        assert_eq!(cutoff(None, 0, 1000), None, "forever by default");
        assert_eq!(cutoff(None, 100, 1000), Some(900));
        assert_eq!(cutoff(Some(10), 100, 1000), Some(990));
        assert_eq!(cutoff(Some(0), 100, 1000), None, "0 keeps this one forever");
    }

    #[test]
    fn old_rows_go_in_batches_and_new_ones_stay() {
        let now = now_ms();
        let old = now - 10 * 86_400_000;
        let mut times: Vec<i64> = (0..(BATCH as i64 * 2 + 7)).map(|i| old + i).collect();
        times.extend([now, now + 1]);
        let (_d, store) = store_with(&times, Some(86_400_000), None);
        let policy = Policy {
            default_ms: 0,
            every: Duration::from_secs(60),
        };
        let pruned = rt().block_on(prune_once(&store, policy)).unwrap();
        assert_eq!(pruned, BATCH as u64 * 2 + 7);
        assert_eq!(times_left(&store), vec![now, now + 1]);
        assert_eq!(rt().block_on(prune_once(&store, policy)).unwrap(), 0);
    }

    #[test]
    fn max_rows_keeps_the_newest_by_time() {
        // Inserted out of time order: the newest by time stay, whatever
        // came in last.
        let times = [50, 10, 40, 20, 30, 30, 60];
        let (_d, store) = store_with(&times, None, Some(3));
        let policy = Policy {
            default_ms: 0,
            every: Duration::from_secs(60),
        };
        assert_eq!(rt().block_on(prune_once(&store, policy)).unwrap(), 4);
        assert_eq!(times_left(&store), vec![40, 50, 60]);
    }

    #[test]
    fn a_new_database_vacuums_incrementally() {
        let (_d, store) = store_with(&[], None, None);
        let mode: i64 = store
            .read_blocking(|c| c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, 2, "auto_vacuum = INCREMENTAL");
    }
}
