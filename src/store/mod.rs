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

pub mod actions;
pub mod bridge;
pub mod data;
pub mod devices;
pub mod retained;
pub mod sessions;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

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
];

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(Arc<rusqlite::Error>),
    #[error("database: {0}")]
    Other(String),
    #[error("the store has shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(Arc::new(e))
    }
}

/// How durable a commit is. `Normal` survives a crash of brook (kill -9);
/// `Full` also survives a power cut, at the price of an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Normal,
    Full,
}

/// What the writer thread runs: the work inside the transaction, which hands
/// back what to do once the transaction has committed (or failed).
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A handle on the database; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Store {
    /// The writer thread's queue; every write and ordered read goes here.
    writes: mpsc::Sender<Job>,
    /// The reader thread's queue, for reads that may run beside writes.
    reads: mpsc::Sender<ReadJob>,
    /// Where the database file is, for messages and for tests.
    pub path: Arc<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) `data_dir/brook.db`, applies migrations and
    /// starts the writer and reader threads.
    pub fn open(data_dir: &Path, sync: Sync) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", data_dir.display()))?;
        let path = data_dir.join("brook.db");
        let mut conn = open_connection(&path, sync)?;
        Migrations::from_slice(&MIGRATIONS.iter().map(|s| M::up(s)).collect::<Vec<_>>())
            .to_latest(&mut conn)
            .map_err(|e| anyhow::anyhow!("migrating {}: {e}", path.display()))?;

        let (writes, write_rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, write_rx))?;

        let reader = open_connection(&path, sync)?;
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
            reads,
            path: Arc::new(path),
        })
    }

    /// Runs `f` in the writer's next transaction; resolves once it is committed.
    pub fn write<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.and(result));
            })
        });
        let sent = self.writes.send(job).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// Runs `f` in the writer's next transaction without waiting for it; a
    /// failure is logged. For writes whose loss costs a redelivery at most.
    pub fn write_detached<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let job: Job = Box::new(move |conn| {
            if let Err(e) = in_savepoint(conn, f) {
                tracing::warn!(what, error = %e, "store write failed");
            }
            Box::new(|_| {})
        });
        let _ = self.writes.send(job);
    }

    /// Runs `f` on the reader connection.
    pub fn read<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, StoreError>>
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
    pub fn read_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
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
    pub fn flush(&self) -> impl std::future::Future<Output = Result<(), StoreError>> {
        self.write(|_| Ok(()))
    }
}

fn open_connection(path: &Path, sync: Sync) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        },
    )?;
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
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e.into())
        }
    }
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
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = began {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "cannot begin a transaction");
            for job in batch.drain(..) {
                // The job still runs (it may be a read), outside a transaction.
                job(&conn)(Err(err.clone()));
            }
            continue;
        }
        let jobs = batch.len() as u64;
        for job in batch.drain(..) {
            completions.push(job(&conn));
        }
        let commit_started = std::time::Instant::now();
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
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
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
