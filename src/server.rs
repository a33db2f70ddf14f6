//! `brook serve`: opens the store, starts the actors, the listeners and the
//! HTTP server, and shuts them down on SIGINT or SIGTERM (stop accepting,
//! finish pending writes, close). SIGHUP reloads the action files.

use std::sync::Arc;

use actix::prelude::*;

use crate::actions::supervisor::{ActionIndex, Reload, Supervisor, SupervisorConfig};
use crate::broker::Broker;
use crate::config::{Config, Synchronous};
use crate::device::{Auth, Devices};
use crate::router::{QueueLimits, Router};
use crate::session::subscriber::SEQ;
use crate::store::{retained, sessions, Store, Sync};

/// Messages one connected subscriber holds in memory before its publishers
/// are held back. Past `max_queued_messages` nothing is gained (a
/// persistent session keeps no more than that anyway), and a smaller queue
/// keeps memory per slow client small; 1,000 is Mosquitto's default too.
const MAX_IN_MEMORY_QUEUE: usize = 1000;

/// Run records kept per action, and for how long: enough to see what an
/// action has been doing, without the table growing without end.
const KEEP_RUNS: usize = 1000;
const KEEP_RUNS_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

pub fn serve(config: Config) -> anyhow::Result<()> {
    let sync = match config.server.synchronous {
        Synchronous::Normal => Sync::Normal,
        Synchronous::Full => Sync::Full,
    };
    let bridge_secrets = crate::bridge::prepare(&config)?;
    let store = Store::open(&config.server.data_dir, sync)?;
    let auth = Auth::load(&store)?;
    let saved = store.read_blocking(sessions::all_sessions)?;
    let retained = store.read_blocking(retained::all)?;
    SEQ.store(
        store.read_blocking(sessions::max_queue_id)?,
        std::sync::atomic::Ordering::Relaxed,
    );
    tracing::info!(
        db = %store.path.display(),
        sessions = saved.len(),
        retained = retained.len(),
        "store opened"
    );

    let system = actix_rt::System::new();
    system.block_on(async move {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
        let handles: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
        let limits = QueueLimits {
            capacity: config
                .mqtt
                .max_queued_messages
                .clamp(1, MAX_IN_MEMORY_QUEUE),
            max_queued: config.mqtt.max_queued_messages,
            slow_timeout: config.mqtt.slow_subscriber_timeout,
        };
        let router = {
            let (store, handles) = (store.clone(), handles.clone());
            Router::create(move |ctx| {
                let mut router = Router::new(store, handles, limits);
                router.restore(ctx, saved, retained);
                router
            })
        };
        let action_index = Arc::new(parking_lot::RwLock::new(Arc::new(ActionIndex::default())));
        let actions = Supervisor::new(SupervisorConfig {
            store: store.clone(),
            index: action_index.clone(),
            auth: auth.clone(),
            router: router.clone(),
            dir: config.actions.dir.clone(),
            api_base: config.admin_url(),
            keep_runs: KEEP_RUNS,
            keep_runs_for: KEEP_RUNS_FOR,
        })
        .start();
        let devices = Devices::new(auth.clone(), actions.clone().recipient()).start();
        auth.start_flusher(store.clone());
        let config_limits = config.limits.clone();
        let bridges = crate::bridge::statuses(&config);
        let broker = Arc::new(Broker {
            config,
            store: store.clone(),
            router,
            devices,
            auth: auth.clone(),
            actions,
            action_index,
            limits: Arc::new(crate::device::limits::RateLimits::new(&config_limits)),
            started: std::time::Instant::now(),
            conn_ids: std::sync::atomic::AtomicU64::new(1),
            bridges,
        });
        // Before the listeners: the bridges' subscriptions are in force
        // before any device can publish.
        let bridges = crate::bridge::start(broker.clone(), bridge_secrets).await?;

        let listeners = crate::listener::start(broker.clone(), handles).await?;
        for (kind, addr) in &listeners.bound {
            tracing::info!(%addr, "listening for {kind}");
        }
        let (http, http_addr) = crate::http::start(broker.clone())?;
        tracing::info!(addr = %http_addr, "listening for HTTP");
        let http_handle = http.handle();
        actix::spawn(http);
        crate::sys::start(broker.clone());

        wait_for_shutdown(&broker).await;
        tracing::info!("shutting down: no new connections, finishing writes");
        listeners.stop();
        bridges.stop().await;
        http_handle.stop(true).await;
        auth.flush_last_input(&store);
        if let Err(e) = store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        for a in arbiters {
            a.stop();
        }
        System::current().stop();
        tracing::info!("stopped");
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; SIGHUP meanwhile reloads actions.
async fn wait_for_shutdown(broker: &Broker) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading actions");
                let _ = broker.actions.send(Reload).await;
            }
        }
    }
}
