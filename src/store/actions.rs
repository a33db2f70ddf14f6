//! Actions in SQLite: the set loaded from the action files (with the hash of
//! each definition, so that a change shows) and the record of every run.
//!
//! Runs are kept per action up to a count and an age ([`prune`]); the runs of
//! an action that is no longer loaded stay until pruned, so that its history
//! can still be read.
//!
//! The `ok` runs of `insert_bucket` are recorded in aggregate: a job of the
//! store's writer hands them to [`tally`], and the writer writes what was
//! tallied, one row per action, device and topic with its `count`, just
//! before it commits the transaction ([`write_tallies`]). So a publish's run
//! is on record in the same commit as its rows, and a batch of a thousand
//! publishes writes a few run rows instead of a thousand. Every other run
//! (a rejection with its reason, say) is a row of its own, `count` 1.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a run ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunOutcome {
    Ok,
    Error,
    Timeout,
    /// Not run: the queue of waiting runs was full, or the action was
    /// disabled or reloaded away before its turn (or, for a delivery, its
    /// action's queue was full and it was the oldest).
    Skipped,
    /// A delivery (http_post, email) still being tried.
    Pending,
}

impl RunOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Error => "error",
            RunOutcome::Timeout => "timeout",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Pending => "pending",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<RunOutcome> {
        Some(match s {
            "ok" => RunOutcome::Ok,
            "error" => RunOutcome::Error,
            "timeout" => RunOutcome::Timeout,
            "skipped" => RunOutcome::Skipped,
            "pending" => RunOutcome::Pending,
            _ => return None,
        })
    }
}

/// One run, to record or as recorded (`id` is 0 until inserted).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunRecord {
    pub id: i64,
    /// The action's name.
    pub action: String,
    /// What triggered it: `mqtt_topic`, `variable`, `schedule`, `every`,
    /// `device_event` (the trigger's key in the action file).
    pub trigger_kind: String,
    /// The topic, the scheduled time, or the event (`connect`).
    pub trigger_detail: String,
    /// The device whose message or event it was; none for a schedule.
    pub device_id: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds; none for a run recorded before it ended.
    pub ended_at: Option<i64>,
    pub outcome: RunOutcome,
    /// One line for people: "exit code 2", "3 items stored", the reason it
    /// was skipped or rejected.
    pub detail: String,
    /// An analysis's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The first kilobytes of an analysis's output.
    pub stdout: String,
    pub stderr: String,
    /// A delivery's attempts, one JSON object each (see
    /// `actions::deliver`); empty for the other types.
    pub attempts: Vec<Value>,
    /// How many runs this record stands for: more than 1 only for the
    /// `insert_bucket` runs of one commit, recorded together ([`tally`]).
    pub count: i64,
}

/// A loaded action as recorded, with its last run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActionRow {
    pub name: String,
    pub file: String,
    pub line: i64,
    pub hash: String,
    /// The definition as JSON (as `GET /actions` shows it).
    pub definition: Value,
    pub enabled: bool,
    /// Unix ms when this definition (this hash) was first loaded.
    pub loaded_at: i64,
    pub last_run: Option<RunRecord>,
}

/// What [`sync`] changed, for the reload's log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncSummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

/// A loaded action as the `actions` table records it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActionRecord {
    pub name: String,
    /// The file it came from, as found in the actions directory.
    pub file: String,
    /// The line of its `[[action]]` header.
    pub line: i64,
    /// Hex sha256 of the definition: a change is visible.
    pub hash: String,
    /// The definition as JSON.
    pub definition: Value,
    pub enabled: bool,
}

/// Makes the `actions` table the loaded set `defs`: new ones are inserted,
/// changed ones (another hash) updated with `loaded_at = at`, moved ones get
/// their new file and line, and the rest are deleted (their runs stay).
pub(crate) fn sync(
    conn: &Connection,
    defs: &[ActionRecord],
    at: i64,
) -> rusqlite::Result<SyncSummary> {
    let mut summary = SyncSummary::default();
    let existing: std::collections::HashMap<String, String> = conn
        .prepare("SELECT name, hash FROM actions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO actions (name, file, line, hash, definition, enabled, loaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(name) DO UPDATE SET
            file = excluded.file, line = excluded.line, enabled = excluded.enabled,
            loaded_at = CASE WHEN hash = excluded.hash THEN loaded_at ELSE excluded.loaded_at END,
            definition = excluded.definition, hash = excluded.hash",
    )?;
    for def in defs {
        match existing.get(&def.name) {
            None => summary.added.push(def.name.clone()),
            Some(hash) if *hash != def.hash => summary.changed.push(def.name.clone()),
            Some(_) => summary.unchanged += 1,
        }
        upsert.execute(params![
            def.name,
            def.file,
            def.line,
            def.hash,
            def.definition.to_string(),
            def.enabled,
            at
        ])?;
    }
    let loaded: std::collections::HashSet<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    let mut delete = conn.prepare_cached("DELETE FROM actions WHERE name = ?1")?;
    let mut gone: Vec<&String> = existing
        .keys()
        .filter(|name| !loaded.contains(name.as_str()))
        .collect();
    gone.sort();
    for name in gone {
        delete.execute(params![name])?;
        summary.removed.push(name.clone());
    }
    Ok(summary)
}

/// Records a run; returns its id.
pub(crate) fn insert_run(conn: &Connection, run: &RunRecord) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO action_runs (action, trigger_kind, trigger_detail, device_id, started_at,
            ended_at, outcome, detail, exit_code, stdout, stderr, attempts, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        run.action,
        run.trigger_kind,
        run.trigger_detail,
        run.device_id,
        run.started_at,
        run.ended_at,
        run.outcome.as_str(),
        run.detail,
        run.exit_code,
        run.stdout,
        run.stderr,
        Value::Array(run.attempts.clone()).to_string(),
        run.count.max(1)
    ])?;
    Ok(conn.last_insert_rowid())
}

/// What a detail line of an `insert_bucket` run says: the items stored, and
/// how many runs (publishes) stored them when it stands for more than one.
pub(crate) fn stored_detail(items: u64, runs: i64) -> String {
    if runs > 1 {
        format!("{items} items stored by {runs} runs")
    } else {
        format!("{items} items stored")
    }
}

/// `ok` runs of `insert_bucket` tallied in the writer's open transaction,
/// by (action, device, topic): the first run (its `count` summed, its end
/// the latest end) and the items stored. Only the store's writer thread
/// uses it: jobs run there, and the writer drains it before each commit.
type TallyKey = (String, Option<String>, String);

thread_local! {
    static TALLY: RefCell<HashMap<TallyKey, (RunRecord, u64)>> = RefCell::new(HashMap::new());
}

/// Adds an `ok` run that stored `items` items to the open transaction's
/// tally; written by [`write_tallies`] before the commit. Call it from a
/// job of `Store::write`, as the job's last step (nothing after it may
/// fail, or the run would be counted while the job's rows roll back).
pub(crate) fn tally(mut run: RunRecord, items: usize) {
    let key = (
        std::mem::take(&mut run.action),
        run.device_id.take(),
        std::mem::take(&mut run.trigger_detail),
    );
    TALLY.with(|t| {
        let mut t = t.borrow_mut();
        match t.get_mut(&key) {
            Some((first, n)) => {
                first.count += run.count.max(1);
                first.started_at = first.started_at.min(run.started_at);
                first.ended_at = first.ended_at.max(run.ended_at);
                *n += items as u64;
            }
            None => {
                run.count = run.count.max(1);
                t.insert(key, (run, items as u64));
            }
        }
    });
}

/// Writes the runs tallied since the last call, one row per action, device
/// and topic (oldest first), and forgets them; the store's writer calls it
/// just before each commit. Whether it succeeds or not, the tally is empty
/// afterwards (a failure fails the whole transaction).
pub(crate) fn write_tallies(conn: &Connection) -> rusqlite::Result<()> {
    let mut pending: Vec<(TallyKey, (RunRecord, u64))> =
        TALLY.with(|t| t.borrow_mut().drain().collect());
    if pending.is_empty() {
        return Ok(());
    }
    pending.sort_by_key(|(_, (run, _))| run.started_at);
    for ((action, device_id, trigger_detail), (mut run, items)) in pending {
        run.action = action;
        run.device_id = device_id;
        run.trigger_detail = trigger_detail;
        run.detail = stored_detail(items, run.count);
        insert_run(conn, &run)?;
    }
    Ok(())
}

/// Appends one attempt to a run's record and sets how it stands now (a
/// delivery's run: `Pending` until its last attempt, with `ended_at` set
/// then). A run pruned meanwhile is not an error.
pub(crate) fn record_attempt(
    conn: &Connection,
    id: i64,
    attempt: &Value,
    outcome: RunOutcome,
    ended_at: Option<i64>,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE action_runs SET attempts = json_insert(attempts, '$[#]', json(?2)),
            outcome = ?3, ended_at = ?4, detail = ?5 WHERE id = ?1",
    )?
    .execute(params![
        id,
        attempt.to_string(),
        outcome.as_str(),
        ended_at,
        detail
    ])?;
    Ok(())
}

/// Appends a delivery attempt to a run record and leaves the rest as it is:
/// for an attempt that was under way when its delivery was dropped from a
/// full queue (the run stays `skipped`, with the attempt it made).
pub(crate) fn append_attempt(conn: &Connection, id: i64, attempt: &Value) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE action_runs SET attempts = json_insert(attempts, '$[#]', json(?2)) WHERE id = ?1",
    )?
    .execute(params![id, attempt.to_string()])?;
    Ok(())
}

/// Ends a run that never got to run (a delivery dropped from a full queue).
pub(crate) fn end_run(
    conn: &Connection,
    id: i64,
    outcome: RunOutcome,
    at: i64,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE action_runs SET outcome = ?2, ended_at = ?3, detail = ?4 WHERE id = ?1",
    )?
    .execute(params![id, outcome.as_str(), at, detail])?;
    Ok(())
}

const RUN_COLUMNS: &str = "id, action, trigger_kind, trigger_detail, device_id, started_at, \
                           ended_at, outcome, detail, exit_code, stdout, stderr, attempts, count";

fn run_from(r: &Row<'_>, first: usize) -> rusqlite::Result<RunRecord> {
    let outcome: String = r.get(first + 7)?;
    Ok(RunRecord {
        id: r.get(first)?,
        action: r.get(first + 1)?,
        trigger_kind: r.get(first + 2)?,
        trigger_detail: r.get(first + 3)?,
        device_id: r.get(first + 4)?,
        started_at: r.get(first + 5)?,
        ended_at: r.get(first + 6)?,
        // The table's CHECK admits only the five names.
        outcome: RunOutcome::parse(&outcome).unwrap_or(RunOutcome::Error),
        detail: r.get(first + 8)?,
        exit_code: r.get(first + 9)?,
        stdout: r.get(first + 10)?,
        stderr: r.get(first + 11)?,
        attempts: match serde_json::from_str(&r.get::<_, String>(first + 12)?) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        count: r.get(first + 13)?,
    })
}

/// An action's runs, newest first: at most `limit`, and only those older
/// than run `before_id` when given (the last id of the previous page).
pub(crate) fn runs_of(
    conn: &Connection,
    action: &str,
    limit: usize,
    before_id: Option<i64>,
) -> rusqlite::Result<Vec<RunRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM action_runs
         WHERE action = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![action, before_id.unwrap_or(i64::MAX), limit as i64],
        |r| run_from(r, 0),
    )?;
    rows.collect()
}

/// Deletes old runs: beyond the newest `keep_per_action` of each action, and
/// (when `max_age` is given) those started before `now - max_age`. A run
/// still pending (a delivery being tried) stays. Returns how many were
/// deleted.
pub(crate) fn prune(
    conn: &Connection,
    keep_per_action: usize,
    max_age: Option<Duration>,
    now: i64,
) -> rusqlite::Result<usize> {
    let mut deleted = conn
        .prepare_cached(
            "DELETE FROM action_runs WHERE id IN (
                SELECT id FROM (
                    SELECT id, outcome,
                        ROW_NUMBER() OVER (PARTITION BY action ORDER BY id DESC) AS n
                    FROM action_runs
                ) WHERE n > ?1 AND outcome != 'pending'
            )",
        )?
        .execute(params![keep_per_action as i64])?;
    if let Some(age) = max_age {
        let cutoff = now.saturating_sub(age.as_millis().min(i64::MAX as u128) as i64);
        deleted += conn
            .prepare_cached(
                "DELETE FROM action_runs WHERE started_at < ?1 AND outcome != 'pending'",
            )?
            .execute(params![cutoff])?;
    }
    Ok(deleted)
}

const ACTION_COLUMNS: &str = "a.name, a.file, a.line, a.hash, a.definition, a.enabled, a.loaded_at";

fn action_from(r: &Row<'_>) -> rusqlite::Result<ActionRow> {
    let definition: String = r.get(4)?;
    let last_run = match r.get::<_, Option<i64>>(7)? {
        Some(_) => Some(run_from(r, 7)?),
        None => None,
    };
    Ok(ActionRow {
        name: r.get(0)?,
        file: r.get(1)?,
        line: r.get(2)?,
        hash: r.get(3)?,
        definition: serde_json::from_str(&definition).unwrap_or(Value::Null),
        enabled: r.get(5)?,
        loaded_at: r.get(6)?,
        last_run,
    })
}

/// The loaded actions by name, each with its last run.
pub(crate) fn list_actions(conn: &Connection) -> rusqlite::Result<Vec<ActionRow>> {
    let runs: Vec<String> = RUN_COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ACTION_COLUMNS}, {} FROM actions a
         LEFT JOIN action_runs r
           ON r.id = (SELECT max(id) FROM action_runs WHERE action = a.name)
         ORDER BY a.name",
        runs.join(", ")
    ))?;
    let rows = stmt.query_map([], action_from)?;
    rows.collect()
}

/// Whether an action of this name is loaded, or has runs on record.
pub(crate) fn known(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let found: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM actions WHERE name = ?1)
                OR EXISTS (SELECT 1 FROM action_runs WHERE action = ?1)",
        )?
        .query_row(params![name], |r| r.get(0))
        .optional()?;
    Ok(found.is_some())
}

// ---------------------------------------------------------------------------
// Lock state (TagoIO's Trigger Unlock): one row per action and device while
// locked.

/// Records an action's lock state for a device: locked since `at`, or
/// unlocked (`None`).
pub(crate) fn set_lock(
    conn: &Connection,
    action: &str,
    device_id: &str,
    at: Option<i64>,
) -> rusqlite::Result<()> {
    match at {
        Some(at) => conn
            .prepare_cached(
                "INSERT INTO action_locks (action, device_id, locked_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(action, device_id) DO UPDATE SET locked_at = excluded.locked_at",
            )?
            .execute(params![action, device_id, at])?,
        None => conn
            .prepare_cached("DELETE FROM action_locks WHERE action = ?1 AND device_id = ?2")?
            .execute(params![action, device_id])?,
    };
    Ok(())
}

/// One lock as recorded, with its device's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockRow {
    pub action: String,
    pub device_id: String,
    pub device_name: String,
    /// Unix ms.
    pub locked_at: i64,
}

/// Every lock, by action then device name.
pub(crate) fn all_locks(conn: &Connection) -> rusqlite::Result<Vec<LockRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.action, l.device_id, d.name, l.locked_at
         FROM action_locks l JOIN devices d ON d.id = l.device_id
         ORDER BY l.action, d.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(LockRow {
            action: r.get(0)?,
            device_id: r.get(1)?,
            device_name: r.get(2)?,
            locked_at: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Forgets the locks of every action not in `keep` (those no longer loaded
/// with an `unlock`); returns how many went.
pub(crate) fn drop_locks_except(conn: &Connection, keep: &[String]) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM action_locks WHERE action NOT IN (SELECT value FROM json_each(?1))",
    )?
    .execute(params![Value::from(keep.to_vec()).to_string()])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::actions::file::load_dir;
    use rusqlite_migration::{Migrations, M};

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

    fn defs(text: &str) -> Vec<ActionRecord> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), text).unwrap();
        load_dir(dir.path())
            .unwrap()
            .iter()
            .map(|d| d.record())
            .collect()
    }

    fn action(name: &str, topic: &str) -> String {
        format!(
            "[[action]]\nname = \"{name}\"\ntrigger = {{ mqtt_topic = [\"{topic}\"] }}\ntype = \"insert_bucket\"\n\n"
        )
    }

    /// A run record for tests (the store's tests too).
    pub(in crate::store) fn run(action: &str, started_at: i64, outcome: RunOutcome) -> RunRecord {
        RunRecord {
            id: 0,
            action: action.into(),
            trigger_kind: "mqtt_topic".into(),
            trigger_detail: "sensors/t1/temperature".into(),
            device_id: Some("dev1".into()),
            started_at,
            ended_at: Some(started_at + 5),
            outcome,
            detail: "1 item stored".into(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            attempts: Vec::new(),
            count: 1,
        }
    }

    #[test]
    fn sync_adds_updates_and_removes() {
        let conn = db();
        let first = defs(&(action("a", "x") + &action("b", "y")));
        let s = sync(&conn, &first, 1000).unwrap();
        assert_eq!(s.added, vec!["a", "b"]);
        assert!(s.changed.is_empty() && s.removed.is_empty());

        // b changes, a only moves down, c is new, nothing is removed.
        let second =
            defs(&(format!("\n\n{}", action("a", "x")) + &action("b", "z") + &action("c", "q")));
        let s = sync(&conn, &second, 2000).unwrap();
        assert_eq!(s.added, vec!["c"]);
        assert_eq!(s.changed, vec!["b"]);
        assert_eq!(s.unchanged, 1);
        let rows = list_actions(&conn).unwrap();
        let by = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(
            by("a").loaded_at,
            1000,
            "unchanged definition keeps its time"
        );
        assert_eq!(by("a").line, 3, "a moved line is recorded");
        assert_eq!(by("b").loaded_at, 2000);
        assert_eq!(by("b").hash, second[1].hash);
        assert_eq!(by("b").definition["trigger"]["mqtt_topic"][0], "z");
        assert!(by("c").enabled);

        let s = sync(&conn, &second[..1], 3000).unwrap();
        assert_eq!(s.removed, vec!["b", "c"]);
        let names: Vec<String> = list_actions(&conn)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["a"]);
    }

    #[test]
    fn runs_are_paged_newest_first() {
        let conn = db();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(insert_run(&conn, &run("a", 1000 + i, RunOutcome::Ok)).unwrap());
        }
        insert_run(&conn, &run("other", 5000, RunOutcome::Error)).unwrap();
        let page = runs_of(&conn, "a", 2, None).unwrap();
        assert_eq!(
            page.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]]
        );
        assert_eq!(
            page[0],
            RunRecord {
                id: ids[4],
                ..run("a", 1004, RunOutcome::Ok)
            }
        );
        let next = runs_of(&conn, "a", 2, Some(page[1].id)).unwrap();
        assert_eq!(
            next.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![ids[2], ids[1]]
        );
        let last = runs_of(&conn, "a", 2, Some(next[1].id)).unwrap();
        assert_eq!(last.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[0]]);
        assert!(runs_of(&conn, "nobody", 10, None).unwrap().is_empty());
    }

    #[test]
    fn every_outcome_and_field_round_trips() {
        let conn = db();
        for outcome in [
            RunOutcome::Ok,
            RunOutcome::Error,
            RunOutcome::Timeout,
            RunOutcome::Skipped,
        ] {
            let mut r = run("a", 1, outcome);
            r.device_id = None;
            r.ended_at = None;
            r.exit_code = Some(2);
            r.stdout = "out".into();
            r.stderr = "err ✓".into();
            let id = insert_run(&conn, &r).unwrap();
            let back = runs_of(&conn, "a", 1, None).unwrap().remove(0);
            assert_eq!(back, RunRecord { id, ..r });
        }
        assert!(conn
            .execute(
                "INSERT INTO action_runs (action, trigger_kind, trigger_detail, started_at, outcome) VALUES ('a', 'x', 'y', 1, 'maybe')",
                [],
            )
            .is_err());
    }

    #[test]
    fn list_actions_carries_the_last_run() {
        let conn = db();
        sync(&conn, &defs(&(action("a", "x") + &action("b", "y"))), 1).unwrap();
        insert_run(&conn, &run("a", 10, RunOutcome::Ok)).unwrap();
        let last = insert_run(&conn, &run("a", 20, RunOutcome::Timeout)).unwrap();
        let rows = list_actions(&conn).unwrap();
        assert_eq!(rows[0].name, "a");
        let lr = rows[0].last_run.as_ref().unwrap();
        assert_eq!((lr.id, lr.outcome), (last, RunOutcome::Timeout));
        assert_eq!(rows[1].last_run, None);
        assert!(known(&conn, "a").unwrap());
        assert!(!known(&conn, "zzz").unwrap());
        // A removed action with runs is still known.
        sync(&conn, &[], 2).unwrap();
        assert!(known(&conn, "a").unwrap());
        assert!(!known(&conn, "b").unwrap());
    }

    #[test]
    fn prune_by_count_per_action_and_by_age() {
        let conn = db();
        for i in 0..10 {
            insert_run(&conn, &run("a", 1000 + i, RunOutcome::Ok)).unwrap();
            insert_run(&conn, &run("b", 1000 + i, RunOutcome::Ok)).unwrap();
        }
        insert_run(&conn, &run("c", 50_000, RunOutcome::Ok)).unwrap();
        assert_eq!(prune(&conn, 3, None, 60_000).unwrap(), 14);
        let a: Vec<i64> = runs_of(&conn, "a", 100, None)
            .unwrap()
            .iter()
            .map(|r| r.started_at)
            .collect();
        assert_eq!(a, vec![1009, 1008, 1007]);
        assert_eq!(runs_of(&conn, "c", 100, None).unwrap().len(), 1);
        // Older than 20 s at t = 60 s: everything of a and b.
        assert_eq!(
            prune(&conn, 3, Some(Duration::from_secs(20)), 60_000).unwrap(),
            6
        );
        assert!(runs_of(&conn, "a", 100, None).unwrap().is_empty());
        assert_eq!(runs_of(&conn, "c", 100, None).unwrap().len(), 1);
    }
}
