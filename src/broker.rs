//! What every part of a running broker shares: the configuration, the store,
//! and the addresses of the long-lived actors.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::actions::supervisor::{ActionIndex, SharedIndex, Supervisor};
use crate::config::Config;
use crate::device::limits::RateLimits;
use crate::device::{Auth, Devices};
use crate::router::Router;
use crate::store::Store;

pub(crate) struct Broker {
    pub config: Config,
    pub store: Store,
    pub router: Addr<Router>,
    pub devices: Addr<Devices>,
    pub auth: Arc<Auth>,
    pub actions: Addr<Supervisor>,
    /// Which topics trigger actions; read by sessions on every publish.
    pub action_index: SharedIndex,
    /// Where payload parsers run, bounded (MQTT and `POST /data` alike).
    pub parsers: Arc<crate::actions::ingest::ParserPool>,
    /// Per-device publish and connect limits, shared by MQTT and HTTP.
    pub limits: Arc<RateLimits>,
    /// For `$SYS/broker/uptime`.
    pub started: Instant,
    /// Set once on SIGINT/SIGTERM: long-lived streams (the Live Inspector)
    /// end when it changes.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

impl Broker {
    /// The current action index (cheap: an `Arc` clone under a read lock).
    pub(crate) fn action_index(&self) -> Arc<ActionIndex> {
        self.action_index.read().clone()
    }
}
