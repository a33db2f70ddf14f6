//! `brook serve`: opens the store, starts the actors, the listeners and the
//! HTTP server, and shuts them down on SIGINT or SIGTERM (stop accepting,
//! finish pending writes, close). SIGHUP reloads the action files.

use std::sync::Arc;

use actix::prelude::*;

use crate::actions::supervisor::{ActionIndex, Reload, Supervisor, SupervisorConfig};
use crate::broker::Broker;
use crate::config::Config;
use crate::device::{Auth, Devices};
use crate::metrics::METRICS;
use crate::router::acl::ClientAcl;
use crate::router::budget::RetainedBudget;
use crate::router::queue::SEQ;
use crate::router::{QueueLimits, Router, RouterLimits, SavedSession};
use crate::store::{retained, sessions, Store};

/// Messages one connected subscriber holds in memory before its publishers
/// are held back. Past `max_queued_messages` nothing is gained (a
/// persistent session keeps no more than that anyway), and a smaller queue
/// keeps memory per slow client small; 1,000 is Mosquitto's default too.
const MAX_IN_MEMORY_QUEUE: usize = 1000;

/// Run records kept per action, and for how long: enough to see what an
/// action has been doing, without the table growing without end.
const KEEP_RUNS: usize = 1000;
const KEEP_RUNS_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Runs the broker with `config` until SIGINT or SIGTERM (see the module
/// documentation); an error says why it could not start.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let sync = config.server.synchronous;
    let bridge_secrets = crate::bridge::prepare(&config)?;
    let smtp = crate::actions::deliver::SmtpSettings::from_config(&config)?;
    let mut options = crate::store::Options::new(sync);
    options.max_write_queue = config.server.max_write_queue;
    let store = Store::open_with(&config.server.data_dir, options)?;
    let auth = Auth::load(&store)?;
    let saved = store.read_blocking(sessions::all_sessions)?;
    let retained = store.read_blocking(|c| retained::all(c, crate::store::now_ms()))?;
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
    // Each persistent session gets the ACL of the device it belongs to; a
    // session whose device is gone goes too.
    let mut restored = Vec::with_capacity(saved.len());
    for row in saved {
        let device = match &row.device_id {
            None => None,
            Some(id) => match auth.device(id) {
                Some(d) => Some(d),
                None => {
                    tracing::warn!(client_id = %row.client_id, "persistent session of a deleted device dropped");
                    let client = row.client_id.clone();
                    store.write_detached("delete session", move |c| {
                        sessions::delete_session(c, &client)
                    });
                    continue;
                }
            },
        };
        let acl = ClientAcl::for_client(
            &config.acl,
            device.as_ref().map(|d| (d.name.as_str(), &d.tags[..])),
            &row.client_id,
        );
        restored.push(SavedSession {
            row,
            acl: Arc::new(acl),
        });
    }

    let system = actix_rt::System::new();
    system.block_on(async move {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let arbiters = crate::router::home::arbiters(cores);
        let handles: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
        let limits = RouterLimits {
            queue: QueueLimits {
                capacity: config
                    .mqtt
                    .max_queued_messages
                    .clamp(1, MAX_IN_MEMORY_QUEUE),
                max_bytes: config.mqtt.max_queued_bytes,
                max_queued: config.mqtt.max_queued_messages,
                slow_timeout: config.mqtt.slow_subscriber_timeout,
            },
            max_topics: config.mqtt.max_topics,
            max_subscriptions_per_client: config.mqtt.max_subscriptions_per_client,
            max_sessions_per_device: config.mqtt.max_sessions_per_device,
            max_session_expiry: config.mqtt.max_session_expiry.map(|d| d.as_secs() as u32),
            retained: Arc::new(RetainedBudget::new(
                config.mqtt.max_retained_messages,
                config.mqtt.max_retained_bytes,
            )),
        };
        let max_levels = config.mqtt.max_topic_levels;
        let router = {
            let (store, handles) = (store.clone(), handles.clone());
            Router::create(move |ctx| {
                let mut router = Router::new(store, handles, limits);
                router.restore(ctx, restored, retained, max_levels);
                router
            })
        };
        let parsers = Arc::new(crate::actions::ingest::ParserPool::new(
            config.actions.max_parser_runs,
            config.actions.max_parser_queue,
        ));
        let action_index = Arc::new(parking_lot::RwLock::new(Arc::new(ActionIndex::default())));
        let actions = Supervisor::new(SupervisorConfig {
            store: store.clone(),
            index: action_index.clone(),
            auth: auth.clone(),
            router: router.clone(),
            dir: config.actions.dir.clone(),
            api_base: config.admin_url(),
            pass_env: config.actions.pass_env.clone(),
            parsers: parsers.clone(),
            keep_runs: KEEP_RUNS,
            keep_runs_for: KEEP_RUNS_FOR,
            smtp: smtp.clone(),
        })
        .start();
        crate::store::retention::start(
            store.clone(),
            crate::store::retention::Policy {
                default_ms: config.data.retention.as_millis().min(i64::MAX as u128) as i64,
                every: config.data.prune_interval,
            },
        );
        let devices = Devices::new(auth.clone(), actions.clone().recipient()).start();
        auth.start_flusher(store.clone());
        let config_limits = config.limits.clone();
        let statuses: crate::bridge::Statuses = Arc::new(crate::bridge::statuses(&config));
        let broker = Arc::new(Broker {
            config,
            store: store.clone(),
            router,
            devices,
            auth: auth.clone(),
            actions,
            action_index,
            parsers,
            limits: Arc::new(crate::device::limits::RateLimits::new(&config_limits)),
            started: std::time::Instant::now(),
            shutdown: tokio::sync::watch::Sender::new(false),
        });
        let sessions = Arc::new(crate::session::Handles::new(
            broker.config.mqtt.clone(),
            broker.config.acl.clone(),
            broker.store.clone(),
            broker.router.clone(),
            broker.devices.clone(),
            broker.auth.clone(),
            broker.actions.clone(),
            broker.action_index.clone(),
            broker.limits.clone(),
            broker.shutdown.subscribe(),
        ));
        // Before the listeners: the bridges' subscriptions are in force
        // before any device can publish.
        let bridges =
            crate::bridge::start(broker.clone(), statuses.clone(), bridge_secrets).await?;

        let listeners = crate::listener::start(sessions, handles).await?;
        for (kind, addr) in &listeners.bound {
            tracing::info!(%addr, "listening for {kind}");
        }
        let (http, http_addr) = crate::http::start(broker.clone(), statuses)?;
        tracing::info!(addr = %http_addr, "listening for HTTP");
        let http_handle = http.handle();
        actix::spawn(http);
        crate::sys::start(broker.clone());
        sweep_expired(broker.store.clone());

        wait_for_shutdown(&broker).await;
        // Shutdown as a protocol: no new connections; every session stops
        // reading, answers what it read and closes (live streams end too);
        // the bridges stop; then the store's last writes are flushed.
        tracing::info!("shutting down: no new connections, sessions finishing what they read");
        listeners.stop();
        broker.shutdown.send_replace(true);
        let closed = sessions_closed(SESSIONS_GRACE).await;
        if !closed {
            tracing::warn!(
                open = METRICS.connections_open.get(),
                "sessions still open after {SESSIONS_GRACE:?}: closing them with the process"
            );
        }
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

/// How long a shutdown waits for the sessions to finish what they read.
const SESSIONS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves once no MQTT connection is open (true), or after `grace` (false).
async fn sessions_closed(grace: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    while METRICS.connections_open.get() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    true
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

/// How often messages whose MQTT 5 message expiry has passed are deleted
/// from SQLite (sessions and topics already skip them when they load rows).
const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes expired queued and retained messages every [`EXPIRY_SWEEP`].
fn sweep_expired(store: crate::store::Store) {
    actix::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            store.write_detached("delete expired messages", |c| {
                let n = crate::store::sessions::delete_expired(c, crate::store::now_ms())?;
                if n > 0 {
                    tracing::debug!(n, "expired messages deleted");
                }
                Ok(())
            });
        }
    });
}
