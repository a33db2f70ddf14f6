//! What every part of a running broker shares: the configuration, the store,
//! and the addresses of the long-lived actors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::config::Config;
use crate::device::activity::Activity;
use crate::device::limits::RateLimits;
use crate::device::{Auth, Devices};
use crate::router::Router;
use crate::store::Store;

pub struct Broker {
    pub config: Config,
    pub store: Store,
    pub router: Addr<Router>,
    pub devices: Addr<Devices>,
    pub auth: Arc<Auth>,
    /// Per-device publish and connect limits, shared by MQTT and HTTP.
    pub limits: Arc<RateLimits>,
    /// Each device's `last_input`, kept in memory and written at most once a second.
    pub activity: Arc<Activity>,
    /// For `$SYS/broker/uptime`.
    pub started: Instant,
    /// Numbers connections, so that a late message from an old connection
    /// is told apart from the current one with the same client id.
    conn_ids: AtomicU64,
}

impl Broker {
    pub fn new(
        config: Config,
        store: Store,
        router: Addr<Router>,
        devices: Addr<Devices>,
        auth: Arc<Auth>,
    ) -> Broker {
        Broker {
            limits: Arc::new(RateLimits::new(&config.limits)),
            activity: Arc::new(Activity::new(store.clone())),
            config,
            store,
            router,
            devices,
            auth,
            started: Instant::now(),
            conn_ids: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }
}
