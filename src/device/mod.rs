//! Devices at run time: who may log in, and who is connected.
//!
//! [`Auth`] is an in-memory copy of the tokens and devices tables, so that a
//! CONNECT is checked without touching SQLite; the admin API updates it after
//! each committed change. [`Devices`] is the registry of device actors: one
//! [`DeviceActor`] per connected device knows that device's sessions and
//! closes them when their token is revoked or the device deleted.

pub(crate) mod limits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod watch;

use actix::prelude::*;
use parking_lot::RwLock;
pub(crate) use watch::Watch;

use crate::store::devices::{self, hash_secret, Device, Param, Permission, Tag, Token};
use crate::store::{now_ms, Store};

/// How often changed `last_input` times are written to SQLite.
const LAST_INPUT_FLUSH: Duration = Duration::from_secs(5);

/// Closes a session; the reason goes into the log.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub(crate) struct Close(pub &'static str);

/// What a token proves at CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub token_id: String,
    /// The token's key in the cache, so that its validity is one lookup.
    pub token_hash: String,
    pub device_id: String,
    pub device_name: String,
    pub tags: Vec<Tag>,
    pub permission: Permission,
    /// The device's last input time (unix ms), shared with the cache so a
    /// publish updates it without a lock or a database write.
    pub last_input: Arc<AtomicI64>,
    /// An analysis run's token (HTTP only: it may store data for the
    /// triggering device and publish, nothing else).
    pub run: bool,
    pub token_last4: String,
    /// When the token expires (unix ms); the connection closes then.
    pub expires_at: Option<i64>,
    /// The device's Live Inspector viewers.
    pub watch: Arc<Watch>,
}

/// A device as the running broker needs it. Replaced whole on change; the
/// `last_input` cell is carried over, so holders of an older copy still
/// update the current one.
#[derive(Debug)]
pub(crate) struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
    /// The JavaScript payload parser's source, if the device has one.
    pub parser: Option<Arc<str>>,
    pub last_input: Arc<AtomicI64>,
    pub watch: Arc<Watch>,
    /// Its bucket's own retention, ms (`None`: the server's; `Some(0)`:
    /// for ever), so that `GET /data` leaves out what has expired.
    pub retention_ms: Option<i64>,
}

impl DeviceInfo {
    pub(crate) fn touch(&self) {
        self.last_input.store(now_ms(), Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    Unknown,
    /// The token was valid once; its device's inspector is told.
    Expired {
        device_id: String,
    },
}

#[derive(Clone)]
struct TokenEntry {
    token_id: String,
    device_id: String,
    permission: Permission,
    expires_at: Option<i64>,
    /// An analysis run's token: in memory only, write-only, gone with the run.
    run: bool,
    /// The token's last characters, to show it by in the Live Inspector.
    last4: String,
}

/// Tokens by hash and devices by id, kept in step with SQLite.
#[derive(Default)]
pub(crate) struct Auth {
    tokens: RwLock<HashMap<String, TokenEntry>>,
    devices: RwLock<HashMap<String, Arc<DeviceInfo>>>,
    /// The last `last_input` written to SQLite per device, so the flusher
    /// writes only what changed.
    flushed: parking_lot::Mutex<HashMap<String, i64>>,
}

impl Auth {
    pub(crate) fn load(store: &Store) -> anyhow::Result<Arc<Auth>> {
        let (devs, toks) =
            store.read_blocking(|c| Ok((devices::all_devices(c)?, devices::all_tokens(c)?)))?;
        let auth = Auth::default();
        for d in &devs {
            auth.put_device(d);
            auth.flushed
                .lock()
                .insert(d.id.clone(), d.last_input.unwrap_or(0));
        }
        for t in &toks {
            auth.put_token(t);
        }
        Ok(Arc::new(auth))
    }

    pub(crate) fn authenticate(&self, secret: &[u8]) -> Result<Identity, AuthError> {
        let hash = hash_secret(secret);
        let token = self
            .tokens
            .read()
            .get(&hash)
            .cloned()
            .ok_or(AuthError::Unknown)?;
        if token.expires_at.is_some_and(|e| e <= now_ms()) {
            return Err(AuthError::Expired {
                device_id: token.device_id,
            });
        }
        let device = self.device(&token.device_id).ok_or(AuthError::Unknown)?;
        Ok(Identity {
            token_id: token.token_id,
            token_hash: hash,
            device_id: token.device_id,
            device_name: device.name.clone(),
            tags: device.tags.clone(),
            permission: token.permission,
            last_input: device.last_input.clone(),
            run: token.run,
            token_last4: token.last4,
            expires_at: token.expires_at,
            watch: device.watch.clone(),
        })
    }

    /// The current copy of a device.
    pub(crate) fn device(&self, id: &str) -> Option<Arc<DeviceInfo>> {
        self.devices.read().get(id).cloned()
    }

    /// The current copy of the device with this name (a walk over every
    /// device: for the rare lookups by name, such as an action's fallback
    /// device).
    pub(crate) fn device_by_name(&self, name: &str) -> Option<Arc<DeviceInfo>> {
        self.devices
            .read()
            .values()
            .find(|d| d.name == name)
            .cloned()
    }

    /// Whether a token (by its hash) is still valid: not revoked, not expired.
    pub(crate) fn token_valid(&self, token_hash: &str) -> bool {
        let now = now_ms();
        self.tokens
            .read()
            .get(token_hash)
            .is_some_and(|t| t.expires_at.is_none_or(|e| e > now))
    }

    pub(crate) fn put_token(&self, t: &Token) {
        self.tokens.write().insert(
            t.hash.clone(),
            TokenEntry {
                token_id: t.id.clone(),
                device_id: t.device_id.clone(),
                permission: t.permission,
                expires_at: t.expires_at,
                run: false,
                last4: t.last4.clone(),
            },
        );
    }

    pub(crate) fn remove_token(&self, token_id: &str) {
        self.tokens.write().retain(|_, t| t.token_id != token_id);
    }

    pub(crate) fn put_device(&self, d: &Device) {
        let mut devices = self.devices.write();
        let (last_input, watch) = devices
            .get(&d.id)
            .map(|old| (old.last_input.clone(), old.watch.clone()))
            .unwrap_or_else(|| {
                (
                    Arc::new(AtomicI64::new(d.last_input.unwrap_or(0))),
                    Arc::default(),
                )
            });
        devices.insert(
            d.id.clone(),
            Arc::new(DeviceInfo {
                id: d.id.clone(),
                name: d.name.clone(),
                tags: d.tags.clone(),
                params: d.params.clone(),
                parser: d.parser.as_deref().map(Arc::from),
                last_input,
                watch,
                retention_ms: d.retention_ms,
            }),
        );
    }

    /// The last input time known in memory (fresher than SQLite's).
    pub(crate) fn last_input(&self, id: &str) -> Option<i64> {
        self.device(id)
            .map(|d| d.last_input.load(Ordering::Relaxed))
            .filter(|&t| t > 0)
    }

    /// Writes the `last_input` times that changed since the last call, in one
    /// transaction: a device's last input is kept current without a database
    /// write per message.
    pub(crate) fn flush_last_input(&self, store: &Store) {
        let mut flushed = self.flushed.lock();
        let changed: Vec<(String, i64)> = self
            .devices
            .read()
            .values()
            .filter_map(|d| {
                let t = d.last_input.load(Ordering::Relaxed);
                (t > 0 && flushed.get(&d.id) != Some(&t)).then(|| (d.id.clone(), t))
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        for (id, t) in &changed {
            flushed.insert(id.clone(), *t);
        }
        store.write_detached("last_input", move |c| {
            for (id, t) in &changed {
                devices::set_last_input(c, id, *t)?;
            }
            Ok(())
        });
    }

    /// Starts the periodic `last_input` flush.
    pub(crate) fn start_flusher(self: &Arc<Self>, store: Store) {
        let auth = self.clone();
        actix::spawn(async move {
            let mut tick = tokio::time::interval(LAST_INPUT_FLUSH);
            loop {
                tick.tick().await;
                auth.flush_last_input(&store);
            }
        });
    }

    /// A token for one analysis run: it may store data for `device_id` (if
    /// any) and publish, until `ttl` has passed or [`Auth::remove_token`].
    /// Returns the token id and the secret.
    pub(crate) fn issue_run_token(
        &self,
        device_id: Option<&str>,
        ttl: Duration,
    ) -> (String, String) {
        let secret = devices::new_secret();
        let token_id = format!("run-{}", devices::new_id());
        self.tokens.write().insert(
            hash_secret(secret.as_bytes()),
            TokenEntry {
                token_id: token_id.clone(),
                device_id: device_id.unwrap_or("").to_string(),
                permission: Permission::Write,
                expires_at: Some(now_ms() + ttl.as_millis() as i64),
                run: true,
                last4: secret[secret.len() - 4..].to_string(),
            },
        );
        (token_id, secret)
    }

    /// A live analysis run token's id and device (None for a run without
    /// one), for the publish service.
    pub(crate) fn run_token(&self, secret: &[u8]) -> Option<(String, Option<String>)> {
        let now = now_ms();
        self.tokens
            .read()
            .get(&hash_secret(secret))
            .filter(|t| t.run && t.expires_at.is_none_or(|e| e > now))
            .map(|t| {
                let device = (!t.device_id.is_empty()).then(|| t.device_id.clone());
                (t.token_id.clone(), device)
            })
    }

    pub(crate) fn remove_device(&self, id: &str) {
        self.devices.write().remove(id);
        self.tokens.write().retain(|_, t| t.device_id != id);
    }
}

/// A session of a device connected, or one ended (sent to whoever listens:
/// the action supervisor, for `device_event` triggers).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Presence {
    pub device_id: String,
    pub connected: bool,
}

/// A session of a device has connected.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Attach {
    pub device_id: String,
    pub token_id: String,
    pub token_hash: String,
    pub conn_id: u64,
    pub session: Recipient<Close>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detach {
    pub device_id: String,
    pub conn_id: u64,
}

/// A token was revoked: close the sessions that logged in with it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Revoked {
    pub device_id: String,
    pub token_id: String,
}

/// A device was deleted: close all its sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Deleted {
    pub device_id: String,
}

/// Whether a device has a live session, and how many, for the admin API.
#[derive(Message)]
#[rtype(result = "HashMap<String, usize>")]
pub(crate) struct ConnectedCounts;

/// A device actor has no session left; `attaches` is how many it saw.
#[derive(Message)]
#[rtype(result = "()")]
struct Idle {
    device_id: String,
    attaches: u64,
}

/// The registry of device actors, by device id.
pub(crate) struct Devices {
    /// Each live device actor, with how many attaches were sent to it (so
    /// that an idle report that crossed a new attach is ignored).
    actors: HashMap<String, (Addr<DeviceActor>, u64)>,
    auth: Arc<Auth>,
    /// Where connect and disconnect events go (the action supervisor).
    events: Recipient<Presence>,
}

impl Devices {
    pub(crate) fn new(auth: Arc<Auth>, events: Recipient<Presence>) -> Devices {
        Devices {
            actors: HashMap::new(),
            auth,
            events,
        }
    }
}

impl Actor for Devices {
    type Context = Context<Self>;
}

impl Handler<Attach> for Devices {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) {
        let registry = ctx.address();
        let auth = self.auth.clone();
        let events = self.events.clone();
        let entry = self.actors.entry(msg.device_id.clone()).or_insert_with(|| {
            let actor = DeviceActor {
                device_id: msg.device_id.clone(),
                sessions: HashMap::new(),
                attaches: 0,
                registry,
                auth,
                events,
            };
            (actor.start(), 0)
        });
        entry.1 += 1;
        entry.0.do_send(msg);
    }
}

impl Handler<Detach> for Devices {
    type Result = ();

    fn handle(&mut self, msg: Detach, _ctx: &mut Self::Context) {
        if let Some((addr, _)) = self.actors.get(&msg.device_id) {
            addr.do_send(msg);
        }
    }
}

impl Handler<Revoked> for Devices {
    type Result = ();

    fn handle(&mut self, msg: Revoked, _ctx: &mut Self::Context) {
        if let Some((addr, _)) = self.actors.get(&msg.device_id) {
            addr.do_send(msg);
        }
    }
}

impl Handler<Deleted> for Devices {
    type Result = ();

    fn handle(&mut self, msg: Deleted, _ctx: &mut Self::Context) {
        if let Some((addr, _)) = self.actors.remove(&msg.device_id) {
            addr.do_send(msg);
        }
    }
}

impl Handler<Idle> for Devices {
    type Result = ();

    fn handle(&mut self, msg: Idle, _ctx: &mut Self::Context) {
        if let Some((addr, attaches)) = self.actors.get(&msg.device_id) {
            if *attaches == msg.attaches {
                addr.do_send(Deleted {
                    device_id: msg.device_id.clone(),
                });
                self.actors.remove(&msg.device_id);
            }
        }
    }
}

impl Handler<ConnectedCounts> for Devices {
    type Result = ResponseFuture<HashMap<String, usize>>;

    fn handle(&mut self, _: ConnectedCounts, _ctx: &mut Self::Context) -> Self::Result {
        let asks: Vec<_> = self
            .actors
            .iter()
            .map(|(id, (addr, _))| (id.clone(), addr.send(SessionCount)))
            .collect();
        Box::pin(async move {
            let mut out = HashMap::new();
            for (id, ask) in asks {
                if let Ok(n) = ask.await {
                    if n > 0 {
                        out.insert(id, n);
                    }
                }
            }
            out
        })
    }
}

#[derive(Message)]
#[rtype(result = "usize")]
struct SessionCount;

/// One connected device: its sessions, by connection id.
pub(crate) struct DeviceActor {
    device_id: String,
    /// Each session's token id and how to close it.
    sessions: HashMap<u64, (String, Recipient<Close>)>,
    attaches: u64,
    registry: Addr<Devices>,
    auth: Arc<Auth>,
    events: Recipient<Presence>,
}

impl Actor for DeviceActor {
    type Context = Context<Self>;
}

impl Handler<Attach> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _ctx: &mut Self::Context) {
        self.attaches += 1;
        // A token revoked between CONNECT and this attach is caught here.
        if !self.auth.token_valid(&msg.token_hash) {
            msg.session.do_send(Close("token revoked"));
        }
        self.sessions
            .insert(msg.conn_id, (msg.token_id, msg.session));
        if let Some(d) = self.auth.device(&self.device_id) {
            d.touch();
        }
        self.events.do_send(Presence {
            device_id: self.device_id.clone(),
            connected: true,
        });
    }
}

impl Handler<Detach> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, _ctx: &mut Self::Context) {
        if self.sessions.remove(&msg.conn_id).is_some() {
            self.events.do_send(Presence {
                device_id: self.device_id.clone(),
                connected: false,
            });
        }
        if self.sessions.is_empty() {
            self.registry.do_send(Idle {
                device_id: self.device_id.clone(),
                attaches: self.attaches,
            });
        }
    }
}

impl Handler<Revoked> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: Revoked, _ctx: &mut Self::Context) {
        for (token, session) in self.sessions.values() {
            if *token == msg.token_id {
                session.do_send(Close("token revoked"));
            }
        }
    }
}

impl Handler<Deleted> for DeviceActor {
    type Result = ();

    fn handle(&mut self, _: Deleted, ctx: &mut Self::Context) {
        for (_, session) in self.sessions.values() {
            session.do_send(Close("device deleted"));
        }
        ctx.stop();
    }
}

impl Handler<SessionCount> for DeviceActor {
    type Result = usize;

    fn handle(&mut self, _: SessionCount, _ctx: &mut Self::Context) -> usize {
        self.sessions.len()
    }
}
