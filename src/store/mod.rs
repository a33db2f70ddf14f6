//! The SQLite file, kept off the network threads.
//!
//! All writes go to one writer thread that batches whatever is waiting into a
//! single transaction (group commit) and answers each caller only after that
//! transaction is committed: a caller that awaits [`Store::write`] knows its
//! rows are on disk (in the WAL) and survive a `kill -9`. One transaction per
//! message caps out near 50k rows/s on this machine; batches of hundreds give
//! ten times that. Each job runs inside its own SAVEPOINT, so one failing job
//! rolls back alone and the rest of the batch still commits.
//!
//! Reads that need not see writes still in flight go to a reader thread with
//! its own connection ([`Store::read`]); WAL lets it read while the writer
//! writes. A read that must come after earlier writes (loading a session's
//! queue on reconnect) goes through [`Store::write`], which keeps order.
//!
//! Stored data with its run records ([`Store::ingest`]: what an
//! `insert_bucket` publish, `tago/data/post` or `POST /data` writes) is
//! grouped before the writer: the batches that arrive while one group waits
//! for the writer join it, and the group is one job, in one SAVEPOINT. A
//! SAVEPOINT per publish made SQLite copy every page each insert touched
//! into its sub-journal (the writer's profile: a third of its time in
//! malloc, free and memcpy under `subjournalPageIfRequired`). Should the
//! group fail, each of its batches is tried again in a SAVEPOINT of its own,
//! so that a failing one still fails alone.
//!
//! The write queue is bounded (`[server] max_write_queue` jobs): a write
//! that finds it full waits for room (first come, first served) before it is
//! queued, and since publishers are acknowledged only once their writes
//! commit, a full queue holds them back instead of growing. A transaction
//! that cannot begin fails its jobs without running them.
//!
//! The data directory is locked (`brook.lock`, holding the server's pid) for
//! as long as the store is open, so a second server on the same directory
//! stops at once and says which process holds it.

pub(crate) mod actions;
pub(crate) mod bridge;
pub(crate) mod data;
pub(crate) mod deliveries;
pub(crate) mod devices;
pub(crate) mod item;
pub(crate) mod props;
pub(crate) mod retained;
pub(crate) mod retention;
pub(crate) mod sessions;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Synchronous;
use crate::metrics::METRICS;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

/// The most jobs one transaction takes. Large enough that group commit pays
/// off, small enough that the first caller in a batch does not wait long.
const MAX_BATCH: usize = 2048;

/// The schema, one file per change, applied in order at start.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_broker.sql"),
    include_str!("../../migrations/0002_data.sql"),
    include_str!("../../migrations/0003_actions.sql"),
    include_str!("../../migrations/0004_bridge.sql"),
    include_str!("../../migrations/0005_mqtt5.sql"),
    include_str!("../../migrations/0006_deliveries_locks_retention.sql"),
    include_str!("../../migrations/0007_run_counts.sql"),
];

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database: {0}")]
    Sql(Arc<rusqlite::Error>),
    #[error("the store has shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(Arc::new(e))
    }
}

/// What the writer thread runs: the work inside the transaction, which hands
/// back what to do once the transaction has committed (or failed). Given
/// the error instead of the connection when the transaction could not even
/// begin: then it must not touch the database.
type Work = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A job in the write queue with its place in the queue's bound, given back
/// once it has run.
struct Job {
    work: Work,
    _room: Option<OwnedSemaphorePermit>,
}

/// What one stored batch writes through [`Store::ingest`]: its items, the
/// run records of its own, and the `insert_bucket` runs to tally (with the
/// items each stored).
#[derive(Default)]
pub(crate) struct Ingest {
    pub items: Vec<item::DataItem>,
    pub runs: Vec<actions::RunRecord>,
    pub tallied: Vec<(actions::RunRecord, usize)>,
}

impl Ingest {
    fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        data::insert_rows(conn, &self.items)?;
        for r in &self.runs {
            actions::insert_run(conn, r)?;
        }
        Ok(())
    }
}

/// A batch waiting in the group, with its caller's answer and its place in
/// the write queue's bound.
struct Grouped {
    batch: Ingest,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    _room: OwnedSemaphorePermit,
}

/// The batches waiting for the group job already queued (`queued`), or for
/// the next one.
#[derive(Default)]
struct Group {
    waiting: Vec<Grouped>,
    queued: bool,
}

/// How the store is opened.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// SQLite's `synchronous`: `Normal` survives a crash of brook (kill -9),
    /// `Full` also a power cut, at the price of an fsync per commit.
    pub sync: Synchronous,
    /// Jobs the write queue holds at most.
    pub max_write_queue: usize,
    /// How long SQLite waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

impl Options {
    pub(crate) fn new(sync: Synchronous) -> Options {
        Options {
            sync,
            max_write_queue: 65_536,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle on the database; cheap to clone, usable from any thread.
#[derive(Clone)]
pub(crate) struct Store {
    /// The writer thread's queue; every write and ordered read goes here.
    writes: mpsc::Sender<Job>,
    /// Room in the write queue: one permit per job it may hold.
    room: Arc<Semaphore>,
    /// The lock on the data directory, held while any handle lives.
    _lock: Arc<std::fs::File>,
    /// The reader thread's queue, for reads that may run beside writes.
    reads: mpsc::Sender<ReadJob>,
    /// Stored batches waiting to be written as one job ([`Store::ingest`]).
    group: Arc<Mutex<Group>>,
    /// Where the database file is, for messages and for tests.
    pub path: Arc<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) `data_dir/brook.db`, applies migrations and
    /// starts the writer and reader threads.
    #[cfg(test)]
    pub(crate) fn open(data_dir: &Path, sync: Synchronous) -> anyhow::Result<Store> {
        Store::open_with(data_dir, Options::new(sync))
    }

    pub(crate) fn open_with(data_dir: &Path, options: Options) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", data_dir.display()))?;
        let lock = Arc::new(lock_dir(data_dir)?);
        let path = data_dir.join("brook.db");
        let mut conn = open_connection(&path, &options)?;
        Migrations::from_slice(&MIGRATIONS.iter().map(|s| M::up(s)).collect::<Vec<_>>())
            .to_latest(&mut conn)
            .map_err(|e| anyhow::anyhow!("migrating {}: {e}", path.display()))?;

        let (writes, write_rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, write_rx))?;

        let reader = open_connection(&path, &options)?;
        let (reads, read_rx) = mpsc::channel::<ReadJob>();
        std::thread::Builder::new()
            .name("store-reader".into())
            .spawn(move || {
                while let Ok(job) = read_rx.recv() {
                    job(&reader);
                }
            })?;
        Ok(Store {
            writes,
            room: Arc::new(Semaphore::new(options.max_write_queue.max(1))),
            _lock: lock,
            reads,
            group: Arc::new(Mutex::new(Group::default())),
            path: Arc::new(path),
        })
    }

    /// Queues `work` now if the queue has room; hands it back otherwise.
    fn try_queue(&self, work: Work) -> Result<bool, Work> {
        match self.room.clone().try_acquire_owned() {
            Ok(room) => Ok(self.queue(work, Some(room))),
            Err(_) => Err(work),
        }
    }

    fn queue(&self, work: Work, room: Option<OwnedSemaphorePermit>) -> bool {
        METRICS.store_queue.inc();
        self.writes.send(Job { work, _room: room }).is_ok()
    }

    /// Runs `f` in the writer's next transaction; resolves once it is
    /// committed. Queued at once when the write queue has room; otherwise the
    /// returned future waits for room first (so it must be awaited).
    pub(crate) fn write<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |conn| match conn {
            Ok(conn) => {
                let result = in_savepoint(conn, f);
                Box::new(move |committed: Result<(), StoreError>| {
                    let _ = tx.send(committed.and(result));
                })
            }
            Err(e) => Box::new(move |_| {
                let _ = tx.send(Err(e));
            }),
        });
        let queued = self.try_queue(work);
        let store = self.clone();
        async move {
            let sent = match queued {
                Ok(sent) => sent,
                Err(work) => {
                    METRICS.store_queue_full.inc();
                    let Ok(room) = store.room.clone().acquire_owned().await else {
                        return Err(StoreError::Closed);
                    };
                    store.queue(work, Some(room))
                }
            };
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// Writes a stored batch in the writer's next transaction, grouped with
    /// the other batches waiting (see the module documentation); resolves
    /// once it is committed. Each batch takes a place in the write queue's
    /// bound, as a job does.
    pub(crate) fn ingest(
        &self,
        batch: Ingest,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> {
        let store = self.clone();
        async move {
            let room = match store.room.clone().try_acquire_owned() {
                Ok(room) => room,
                Err(_) => {
                    METRICS.store_queue_full.inc();
                    store
                        .room
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| StoreError::Closed)?
                }
            };
            let (done, answer) = tokio::sync::oneshot::channel();
            let first = {
                let mut g = store.group.lock();
                g.waiting.push(Grouped {
                    batch,
                    done,
                    _room: room,
                });
                !std::mem::replace(&mut g.queued, true)
            };
            if first {
                let group = store.group.clone();
                // Its batches hold their places in the bound themselves.
                if !store.queue(Box::new(move |conn| write_group(&group, conn)), None) {
                    // The writer is gone: the waiting batches' answers are
                    // dropped, so their callers see the store closed.
                    store.group.lock().waiting.clear();
                    return Err(StoreError::Closed);
                }
            }
            answer.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// Runs `f` in the writer's next transaction without waiting for it; a
    /// failure is logged. For writes whose loss costs a redelivery at most.
    /// When the queue is full, a task waits for room (outside a runtime, the
    /// job is queued past the bound rather than lost).
    pub(crate) fn write_detached<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let work: Work = Box::new(move |conn| {
            if let Err(e) = conn.and_then(|c| in_savepoint(c, f)) {
                tracing::warn!(what, error = %e, "store write failed");
            }
            Box::new(|_| {})
        });
        let Err(work) = self.try_queue(work) else {
            return;
        };
        METRICS.store_queue_full.inc();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let store = self.clone();
                runtime.spawn(async move {
                    if let Ok(room) = store.room.clone().acquire_owned().await {
                        store.queue(work, Some(room));
                    }
                });
            }
            Err(_) => {
                self.queue(work, None);
            }
        }
    }

    /// Runs `f` on the reader connection.
    pub(crate) fn read<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .reads
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn).map_err(StoreError::from));
            }))
            .is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// Runs `f` on the reader connection and blocks for the answer. For start-up
    /// and command-line paths only, never on a network thread.
    pub(crate) fn read_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.reads
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn).map_err(StoreError::from));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Resolves once every write queued before it is committed; used by a
    /// graceful shutdown to finish pending writes.
    pub(crate) fn flush(&self) -> impl std::future::Future<Output = Result<(), StoreError>> {
        self.write(|_| Ok(()))
    }
}

/// Takes the exclusive lock on `data_dir/brook.lock` and writes this
/// process's id into it; refused with the holder's pid when another process
/// has it.
fn lock_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::io::AsRawFd;
    let path = data_dir.join("brook.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor this function owns; it only sets an
    // advisory lock that the kernel releases when the descriptor is closed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another process".to_string()
        } else {
            format!("process {holder}")
        };
        anyhow::bail!(
            "data_dir {} is in use by {who} (another brook serve?); {} holds its lock",
            data_dir.display(),
            path.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(file)
}

fn open_connection(path: &Path, options: &Options) -> anyhow::Result<Connection> {
    let sync = options.sync;
    let conn = Connection::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
    // A new database hands the pages that retention pruning frees back to
    // the file system bit by bit (`PRAGMA incremental_vacuum`, see
    // `retention`). It only takes before the first table and before WAL;
    // on a database created earlier it changes nothing, and freed pages
    // stay on SQLite's free list, where new rows reuse them.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.as_pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each job runs in a SAVEPOINT, whose sub-journal would otherwise be a
    // temporary file written on every insert (seen in the writer's profile).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 32 MiB of page cache per connection (the default is 2 MiB): the data
    // indexes stay in memory under a steady insert load.
    conn.pragma_update(None, "cache_size", -32768)?;
    // Checkpoint the WAL every ~40 MB rather than every 4 MB: under a steady
    // insert load the same index pages are copied back far less often.
    conn.pragma_update(None, "wal_autocheckpoint", 10000)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    // Prepared once (execute_batch would parse them on every job).
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e.into())
        }
    }
}

/// The group job: takes every batch waiting and writes them in one
/// SAVEPOINT; when that fails, each in one of its own. Their callers are
/// answered once the transaction has committed.
fn write_group(group: &Mutex<Group>, conn: Result<&Connection, StoreError>) -> Completion {
    let batches = {
        let mut g = group.lock();
        g.queued = false;
        std::mem::take(&mut g.waiting)
    };
    let results: Vec<Result<(), StoreError>> = match conn {
        Err(e) => batches.iter().map(|_| Err(e.clone())).collect(),
        Ok(conn) => {
            let together =
                in_savepoint(conn, |c| batches.iter().try_for_each(|b| b.batch.write(c)));
            match together {
                Ok(()) => batches.iter().map(|_| Ok(())).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, batches = batches.len(), "a group of stored batches failed; trying each alone");
                    batches
                        .iter()
                        .map(|b| in_savepoint(conn, |c| b.batch.write(c)))
                        .collect()
                }
            }
        }
    };
    let mut stored = 0u64;
    let mut answers = Vec::with_capacity(batches.len());
    for (b, result) in batches.into_iter().zip(results) {
        if result.is_ok() {
            stored += b.batch.items.len() as u64;
            for (run, n) in b.batch.tallied {
                actions::tally(run, n);
            }
        }
        answers.push((b.done, result));
    }
    Box::new(move |committed: Result<(), StoreError>| {
        if committed.is_ok() {
            METRICS.data_stored.add(stored);
        }
        for (done, result) in answers {
            let _ = done.send(committed.clone().and(result));
        }
    })
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        METRICS.store_queue.add(-(batch.len() as i64));
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = began {
            let err = StoreError::from(e);
            tracing::error!(error = %err, jobs = batch.len(), "cannot begin a transaction: its jobs fail");
            for job in batch.drain(..) {
                // Not run: outside a transaction each would commit on its
                // own while its caller is told it failed.
                (job.work)(Err(err.clone()))(Err(err.clone()));
            }
            continue;
        }
        let jobs = batch.len() as u64;
        // The jobs' places in the queue are given back as they run.
        for job in batch.drain(..) {
            completions.push((job.work)(Ok(&conn)));
        }
        let commit_started = std::time::Instant::now();
        // The runs the jobs tallied go in just before the commit, in the
        // same transaction as the rows they counted.
        let committed = actions::write_tallies(&conn)
            .and_then(|()| conn.execute_batch("COMMIT"))
            .map_err(StoreError::from);
        let took = commit_started.elapsed().as_micros() as u64;
        let m = &crate::metrics::METRICS;
        m.store_commit_micros.add(took);
        m.store_commit_max_micros.max(took as i64);
        m.store_jobs.add(jobs);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        crate::metrics::METRICS.store_commits.inc();
        for done in completions.drain(..) {
            done(committed.clone());
        }
    }
}

/// Milliseconds since the Unix epoch, the time unit of every table.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn row(payload: &'static [u8]) -> retained::RetainedRow {
        retained::RetainedRow {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(payload),
            qos: 1,
            properties: None,
            expires_at: None,
        }
    }

    fn open(dir: &Path, max_write_queue: usize, busy: Duration) -> Store {
        let mut o = Options::new(Synchronous::Normal);
        o.max_write_queue = max_write_queue;
        o.busy_timeout = busy;
        Store::open_with(dir, o).expect("open the store")
    }

    #[test]
    fn a_full_write_queue_makes_writers_wait_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 2, Duration::from_secs(5));
        // The first job holds the writer until it is let go.
        let (go, wait) = mpsc::channel::<()>();
        let blocker = store.write(move |_| {
            let _ = wait.recv();
            Ok(())
        });
        let second = store.write(|_| Ok(2));
        // Two jobs are queued (or running); the third waits for room.
        let third = store.write(|_| Ok(3));
        let mut third = Box::pin(third);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert!(store.room.available_permits() == 0);
        go.send(()).unwrap();
        futures::executor::block_on(blocker).unwrap();
        assert_eq!(futures::executor::block_on(second).unwrap(), 2);
        assert_eq!(futures::executor::block_on(third).unwrap(), 3);
        assert_eq!(store.room.available_permits(), 2);
    }

    fn bucket_run(device: &str, topic: &str, at: i64) -> actions::RunRecord {
        actions::RunRecord {
            trigger_detail: topic.into(),
            device_id: Some(device.into()),
            ended_at: Some(at),
            detail: actions::stored_detail(1, 1),
            ..actions::tests::run("store", at, actions::RunOutcome::Ok)
        }
    }

    #[test]
    fn runs_tallied_in_one_commit_are_one_row_per_device_and_topic_with_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 64, Duration::from_secs(5));
        // The runs of one transaction, in one job: separate jobs queued
        // together are not always taken into one transaction (a run of the
        // full suite once saw them split over two commits).
        let mut runs: Vec<_> = (0..10)
            .map(|i| {
                let topic = if i < 7 { "t/a" } else { "t/b" };
                bucket_run("d1", topic, 1000 + i)
            })
            .collect();
        // A rejection is a row of its own, written by the job.
        let mut rejected = bucket_run("d1", "t/a", 1005);
        rejected.outcome = actions::RunOutcome::Error;
        rejected.detail = "item 0: bad variable".into();
        futures::executor::block_on(store.write(move |c| {
            actions::insert_run(c, &rejected)?;
            for run in runs.drain(..) {
                actions::tally(run, 2);
            }
            Ok(())
        }))
        .unwrap();
        // A job that fails (and so, tallying last, tallied nothing).
        let failing =
            store.write(|_| -> rusqlite::Result<()> { Err(rusqlite::Error::InvalidQuery) });
        assert!(futures::executor::block_on(failing).is_err());
        let runs = store
            .read_blocking(|c| actions::runs_of(c, "store", 100, None))
            .unwrap();
        type Seen<'a> = (&'a str, &'a str, i64, &'a str, i64, Option<i64>);
        let seen: Vec<Seen> = runs
            .iter()
            .map(|r| {
                (
                    r.outcome.as_str(),
                    r.trigger_detail.as_str(),
                    r.count,
                    r.detail.as_str(),
                    r.started_at,
                    r.ended_at,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("ok", "t/b", 3, "6 items stored by 3 runs", 1007, Some(1009)),
                (
                    "ok",
                    "t/a",
                    7,
                    "14 items stored by 7 runs",
                    1000,
                    Some(1006)
                ),
                ("error", "t/a", 1, "item 0: bad variable", 1005, Some(1005)),
            ],
            "newest first: the tallies are written at the commit, after the jobs"
        );
        // The next commit starts a tally of its own.
        let run = bucket_run("d1", "t/a", 2000);
        futures::executor::block_on(store.write(move |_| {
            actions::tally(run, 1);
            Ok(())
        }))
        .unwrap();
        let runs = store
            .read_blocking(|c| actions::runs_of(c, "store", 100, None))
            .unwrap();
        assert_eq!(runs.len(), 4);
        assert_eq!(
            (runs[0].count, runs[0].detail.as_str()),
            (1, "1 items stored")
        );
    }

    fn item(device: &str, n: i64) -> item::DataItem {
        item::DataItem {
            id: item::new_id(),
            device: device.into(),
            variable: "v".into(),
            value: Some(serde_json::json!(n)),
            unit: None,
            time: n,
            group: None,
            location: None,
            metadata: None,
            created_at: n,
        }
    }

    #[test]
    fn grouped_batches_share_a_job_and_a_failing_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 64, Duration::from_secs(5));
        futures::executor::block_on(store.write(|c| {
            c.execute(
                "INSERT INTO devices (id, name, created_at) VALUES ('d1', 'd1', 0)",
                [],
            )
        }))
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Hold the writer so that the batches wait together.
            let (go, wait) = mpsc::channel::<()>();
            let blocker = store.write(move |_| {
                let _ = wait.recv();
                Ok(())
            });
            let mut batches = Vec::new();
            for n in 0..20 {
                // Batch 7's device does not exist (a foreign key fails).
                let device = if n == 7 { "nobody" } else { "d1" };
                batches.push(tokio::spawn(store.ingest(Ingest {
                    items: vec![item(device, n)],
                    runs: Vec::new(),
                    tallied: vec![(bucket_run(device, "t", n), 1)],
                })));
            }
            // Every batch is in the group before the writer is let go.
            while store.group.lock().waiting.len() < 20 {
                tokio::task::yield_now().await;
            }
            go.send(()).unwrap();
            blocker.await.unwrap();
            for (n, b) in batches.into_iter().enumerate() {
                let result = b.await.unwrap();
                assert_eq!(result.is_ok(), n != 7, "batch {n}: {result:?}");
            }
        });
        let (rows, runs) = store
            .read_blocking(|c| {
                let rows: i64 = c.query_row("SELECT COUNT(*) FROM data", [], |r| r.get(0))?;
                Ok((rows, actions::runs_of(c, "store", 100, None)?))
            })
            .unwrap();
        assert_eq!(rows, 19);
        assert_eq!(runs.len(), 1, "one device and topic: one record");
        assert_eq!(runs[0].count, 19, "the failed batch's run is not counted");
    }

    #[test]
    fn a_transaction_that_cannot_begin_fails_its_jobs_without_committing_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 16, Duration::from_millis(200));
        // Another connection holds the write lock past the busy timeout and
        // lets go soon after: a job run outside a transaction would then
        // commit on its own.
        let other = Connection::open(dir.path().join("brook.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let write = store.write(|c| {
            retained::set(c, &row(b"payload"), 0)?;
            Ok(())
        });
        let result = futures::executor::block_on(write);
        release.join().unwrap();
        assert!(result.is_err(), "the job was reported as committed");
        let rows = store
            .read_blocking(|c| {
                c.query_row("SELECT COUNT(*) FROM retained", [], |r| r.get::<_, i64>(0))
            })
            .unwrap();
        assert_eq!(
            rows, 0,
            "a job whose transaction failed to begin was committed"
        );
        // The next transaction works again.
        futures::executor::block_on(store.write(|c| retained::set(c, &row(b"p"), 0))).unwrap();
    }

    #[test]
    fn rows_written_before_mqtt_5_load_after_its_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        let upto = |n: usize| Migrations::new(MIGRATIONS[..n].iter().map(|s| M::up(s)).collect());
        let before = MIGRATIONS
            .iter()
            .position(|m| m.contains("MQTT 5"))
            .expect("the MQTT 5 migration is listed");
        upto(before).to_latest(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO retained VALUES ('r/t', x'6869', 1, 5);
             INSERT INTO sessions VALUES ('c1', NULL, 5);
             INSERT INTO subscriptions VALUES ('c1', 'a/#', 2);
             INSERT INTO session_queue VALUES (7, 'c1', 'a/b', x'21', 1, 0);",
        )
        .unwrap();
        upto(MIGRATIONS.len()).to_latest(&mut conn).unwrap();

        let r = retained::all(&conn, now_ms()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].topic.as_str(), &r[0].payload[..], r[0].qos),
            ("r/t", &b"hi"[..], 1)
        );
        assert!(r[0].properties.is_none() && r[0].expires_at.is_none());
        let s = sessions::all_sessions(&conn).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].subscriptions, vec![("a/#".to_string(), 2, None)]);
        assert_eq!((s[0].expiry, s[0].disconnected_at), (None, None));
        let q = sessions::queue_page(&conn, "c1", 0, i64::MAX, 10, 1 << 20, now_ms()).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].id, q[0].topic.as_str(), q[0].qos), (7, "a/b", 1));
        assert!(q[0].properties.is_none() && q[0].expires_at.is_none());
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), Synchronous::Normal).unwrap();
        let second = Store::open(dir.path(), Synchronous::Normal);
        let err = second
            .err()
            .expect("a second store on the same directory")
            .to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
    }
}
