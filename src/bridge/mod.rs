//! Bridges: each `[[bridge]]` connects brook, as an MQTT client, to another
//! broker (a cloud broker, TagoIO, a NATS JetStream or EMQX cluster),
//! forwards the local topics its `out` entries name and publishes locally
//! what the remote sends on its `in` entries.
//!
//! The path of a message going out: a publisher's message reaches the
//! bridge's subscriber queue through the router like any subscription
//! (`router::AddBridge`), is written to `bridge_queue` before the publisher
//! is acknowledged (`session::subscriber`), and is read back from there and
//! sent ([`outbox`]); its row goes when the remote acknowledges it. Coming
//! in, a message is handed to its topic as if a client named `bridge:NAME`
//! had published it, and acknowledged to the remote once brook took it.
//!
//! The client is brook's own, not rumqttc (a dev-dependency here), because
//! durability has to be exact across restarts: rumqttc assigns packet ids
//! itself and keeps its unacknowledged messages in memory, replaying them on
//! reconnect, so after a `kill -9` a QoS 2 message would go out again under a
//! new id (a duplicate at the remote) and the queue would exist twice, in
//! SQLite and in the client. Here SQLite is the only queue, a row's packet id
//! is derived from its row id, a row is deleted on PUBACK/PUBCOMP only, and an
//! incoming message is acknowledged only once brook took it (rumqttc's
//! `manual_acks` would allow that part too).
//!
//! The files: `wire` (the client side of MQTT 3.1.1 and 5), `link`
//! (socket, TLS, CONNECT), `outbox` (what to send and what an
//! acknowledgement settles), `topics` (prefixes), `echo` (3.1.1 loop
//! prevention), `backoff`, `status` (what `/bridges` and `/metrics` show),
//! and `task`, the loop that ties them together, one per bridge.

mod backoff;
mod echo;
mod link;
mod outbox;
mod status;
mod task;
mod topics;
mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tracing::Instrument;

pub(crate) use link::Secrets;
pub(crate) use status::{write_metrics, Status};

use crate::broker::Broker;
use crate::config::Config;
use crate::device::DeviceInfo;
use crate::router::acl::ClientAcl;
use crate::router::queue::Subscriber;
use crate::router::{AddBridge, Subscribe};
use crate::store::bridge as queue;
use crate::store::devices::{self, Device, Tag};
use crate::store::now_ms;
use backoff::Backoff;
use echo::EchoFilter;
use outbox::Outbox;
use task::Bridge;
use topics::Routes;

/// Messages a bridge's subscriber queue holds in memory. The bridge's task
/// empties it whatever the link does (QoS 1/2 messages are in SQLite by
/// then), so it only smooths bursts.
const MEMORY_QUEUE: usize = 1024;

/// How long stopping waits for the bridges to say goodbye to their remotes.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// A status per configured bridge, in config order, before they start (the
/// HTTP side holds them from the beginning).
/// Every bridge's state, shared by its task, `GET /bridges` and `/metrics`.
pub(crate) type Statuses = Arc<Vec<Arc<Status>>>;

pub(crate) fn statuses(config: &Config) -> Vec<Arc<Status>> {
    config
        .bridges
        .iter()
        .map(|b| Arc::new(Status::new(b)))
        .collect()
}

/// Reads what each bridge needs beyond the config file (passwords from the
/// environment, TLS certificates); the error names the file and line.
pub(crate) fn prepare(config: &Config) -> anyhow::Result<Vec<Secrets>> {
    let file = config
        .source
        .clone()
        .unwrap_or_else(|| Path::new("config.toml").to_path_buf());
    config
        .bridges
        .iter()
        .map(|b| Secrets::load(b, &file).map_err(|e| anyhow::anyhow!(e)))
        .collect()
}

/// The running bridges.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Tells every bridge to disconnect, and waits (a while) until they have.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
            tracing::warn!("bridges did not stop in time");
        }
    }
}

/// Starts every bridge: its pseudo-device, its subscriber queue and local
/// subscriptions (in force when this returns, so that nothing published
/// after start is missed), and its task.
pub(crate) async fn start(
    broker: Arc<Broker>,
    statuses: Statuses,
    secrets: Vec<Secrets>,
) -> anyhow::Result<Running> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let configured: Vec<String> = broker
        .config
        .bridges
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let left = broker.store.read(queue::queued_by_bridge).await?;
    for (name, n) in left {
        if !configured.contains(&name) {
            tracing::warn!(bridge = %name, queued = n, "bridge_queue holds messages of a bridge that is no longer configured; they stay until it is again");
        }
    }
    for ((config, status), secrets) in broker
        .config
        .bridges
        .iter()
        .zip(statuses.iter())
        .zip(secrets)
    {
        let config = Arc::new(config.clone());
        let name: Arc<str> = config.name.as_str().into();
        let client_id: Arc<str> = config.local_client_id().into();
        let device = pseudo_device(&broker, &client_id).await;
        let subscriber = Subscriber::for_bridge(
            client_id.clone(),
            name.clone(),
            MEMORY_QUEUE,
            broker.store.clone(),
        );
        let generation = subscriber.attach().0;
        broker
            .router
            .send(AddBridge {
                client_id: client_id.clone(),
                subscriber: subscriber.clone(),
                acl: Arc::new(ClientAcl::for_bridge(&broker.config.acl, &config.name)),
            })
            .await?;
        let routes = Routes::new(config.out.clone(), config.inbound.clone());
        let acl = ClientAcl::for_bridge(&broker.config.acl, &config.name);
        let mut filters = Vec::new();
        for (filter, qos) in routes.local_subscriptions() {
            if acl.can_subscribe(&filter) {
                filters.push((filter, crate::router::grant::Sub::qos(qos)));
            } else {
                let msg = format!(
                    "the ACL denies bridge:{} the local subscription {filter}",
                    config.name
                );
                tracing::warn!(bridge = %config.name, "{msg}");
                status.error(&msg);
            }
        }
        let in_force = broker
            .router
            .send(Subscribe {
                client_id: client_id.clone(),
                filters: filters.clone(),
            })
            .await??;
        for ((filter, _), ok) in filters.iter().zip(in_force) {
            if !ok {
                let msg = format!(
                    "the local subscription {filter} is past [mqtt] max_subscriptions_per_client; it is not forwarded"
                );
                tracing::warn!(bridge = %config.name, "{msg}");
                status.error(&msg);
            }
        }
        let n = name.clone();
        let (count, max_id) = broker
            .store
            .write(move |c| Ok((queue::count(c, &n)?, queue::max_id(c, &n)?)))
            .await?;
        status.queued.add(count as i64);
        let echo = (config.protocol == crate::config::Protocol::V311 && routes.may_echo())
            .then(EchoFilter::default);
        let bridge = Bridge {
            max_packet_size: config
                .max_packet_size
                .unwrap_or(broker.config.mqtt.max_packet_size),
            backoff: Backoff::new(config.reconnect_min, config.reconnect_max),
            config: config.clone(),
            secrets,
            status: status.clone(),
            broker: broker.clone(),
            client_id,
            name,
            routes,
            acl,
            subscriber,
            generation,
            device,
            outbox: Outbox::new(max_id),
            echo,
            next_remote: 0,
            qos0: Default::default(),
            qos0_bytes: 0,
            store_op: None,
            store_pause_until: None,
            trim_idle_at: None,
            last_trim: None,
            up_since: None,
            arrivals: 0,
            deletes: Vec::new(),
            releases: FuturesUnordered::new(),
            in_qos2: Default::default(),
            in_qos2_pending: Default::default(),
            recount: false,
        };
        tracing::info!(
            bridge = %config.name,
            url = %config.remotes[0],
            protocol = %config.protocol,
            queued = count,
            "bridge starting"
        );
        let span = tracing::info_span!("bridge", bridge = %config.name);
        tasks.push(actix::spawn(bridge.run(stopped.clone()).instrument(span)));
    }
    Ok(Running { stop, tasks })
}

/// The device `bridge:NAME`, created when missing: the Live Inspector of
/// the bridge, and the device whose actions its incoming messages trigger
/// (and in whose bucket they store). It has no token: nothing logs in as it.
async fn pseudo_device(broker: &Broker, name: &Arc<str>) -> Option<Arc<DeviceInfo>> {
    let n = name.to_string();
    let found = broker
        .store
        .write(move |c| {
            if let Some(d) = devices::device_by_name(c, &n)? {
                return Ok(d);
            }
            let d = Device {
                id: devices::new_id(),
                name: n,
                tags: vec![Tag {
                    key: "brook".into(),
                    value: "bridge".into(),
                }],
                params: Vec::new(),
                parser: None,
                created_at: now_ms(),
                last_input: None,
                last_output: None,
                retention_ms: None,
                max_rows: None,
            };
            devices::insert_device(c, &d)?;
            Ok(d)
        })
        .await;
    match found {
        Ok(d) => {
            broker.auth.put_device(&d);
            broker.auth.device(&d.id)
        }
        Err(e) => {
            tracing::error!(device = %name, error = %e, "cannot create the bridge's device; no Live Inspector for it");
            None
        }
    }
}
