//! Devices at run time: who may log in, and who is connected.
//!
//! [`Auth`] is an in-memory copy of the tokens and devices tables, so that a
//! CONNECT is checked without touching SQLite; the admin API updates it after
//! each committed change. [`Devices`] is the registry of device actors: one
//! [`DeviceActor`] per connected device knows that device's sessions and
//! closes them when their token is revoked or the device deleted.

pub mod activity;
pub mod limits;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use parking_lot::RwLock;

use crate::store::devices::{self, hash_secret, Permission, Tag, Token};
use crate::store::{now_ms, Store};

/// Closes a session; the reason goes into the log.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Close(pub &'static str);

/// What a token proves at CONNECT.
#[derive(Debug, Clone)]
pub struct Identity {
    pub token_id: String,
    pub device_id: String,
    pub device_name: String,
    pub tags: Vec<Tag>,
    pub permission: Permission,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Unknown,
    Expired,
}

#[derive(Clone)]
struct TokenEntry {
    token_id: String,
    device_id: String,
    permission: Permission,
    expires_at: Option<i64>,
}

#[derive(Clone)]
struct DeviceEntry {
    name: String,
    tags: Vec<Tag>,
}

/// Tokens by hash and devices by id, kept in step with SQLite.
#[derive(Default)]
pub struct Auth {
    tokens: RwLock<HashMap<String, TokenEntry>>,
    devices: RwLock<HashMap<String, DeviceEntry>>,
}

impl Auth {
    pub fn load(store: &Store) -> anyhow::Result<Arc<Auth>> {
        let (devs, toks) =
            store.read_blocking(|c| Ok((devices::all_devices(c)?, devices::all_tokens(c)?)))?;
        let auth = Auth::default();
        for d in devs {
            auth.put_device(&d.id, &d.name, &d.tags);
        }
        for t in &toks {
            auth.put_token(t);
        }
        Ok(Arc::new(auth))
    }

    pub fn authenticate(&self, secret: &[u8]) -> Result<Identity, AuthError> {
        let hash = hash_secret(secret);
        let token = self
            .tokens
            .read()
            .get(&hash)
            .cloned()
            .ok_or(AuthError::Unknown)?;
        if token.expires_at.is_some_and(|e| e <= now_ms()) {
            return Err(AuthError::Expired);
        }
        let device = self
            .devices
            .read()
            .get(&token.device_id)
            .cloned()
            .ok_or(AuthError::Unknown)?;
        Ok(Identity {
            token_id: token.token_id,
            device_id: token.device_id,
            device_name: device.name,
            tags: device.tags,
            permission: token.permission,
        })
    }

    /// Whether a token id is still valid (not revoked, not expired).
    pub fn token_valid(&self, token_id: &str) -> bool {
        let now = now_ms();
        self.tokens
            .read()
            .values()
            .any(|t| t.token_id == token_id && t.expires_at.is_none_or(|e| e > now))
    }

    pub fn put_token(&self, t: &Token) {
        self.tokens.write().insert(
            t.hash.clone(),
            TokenEntry {
                token_id: t.id.clone(),
                device_id: t.device_id.clone(),
                permission: t.permission,
                expires_at: t.expires_at,
            },
        );
    }

    pub fn remove_token(&self, token_id: &str) {
        self.tokens.write().retain(|_, t| t.token_id != token_id);
    }

    pub fn put_device(&self, id: &str, name: &str, tags: &[Tag]) {
        self.devices.write().insert(
            id.to_string(),
            DeviceEntry {
                name: name.to_string(),
                tags: tags.to_vec(),
            },
        );
    }

    pub fn remove_device(&self, id: &str) {
        self.devices.write().remove(id);
        self.tokens.write().retain(|_, t| t.device_id != id);
    }
}

/// A session of a device has connected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub device_id: String,
    pub token_id: String,
    pub conn_id: u64,
    pub session: Recipient<Close>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub device_id: String,
    pub conn_id: u64,
}

/// A token was revoked: close the sessions that logged in with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Revoked {
    pub device_id: String,
    pub token_id: String,
}

/// A device was deleted: close all its sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deleted {
    pub device_id: String,
}

/// Whether a device has a live session, and how many, for the admin API.
#[derive(Message)]
#[rtype(result = "HashMap<String, usize>")]
pub struct ConnectedCounts;

/// A device actor has no session left; `attaches` is how many it saw.
#[derive(Message)]
#[rtype(result = "()")]
struct Idle {
    device_id: String,
    attaches: u64,
}

/// The registry of device actors, by device id.
pub struct Devices {
    /// Each live device actor, with how many attaches were sent to it (so
    /// that an idle report that crossed a new attach is ignored).
    actors: HashMap<String, (Addr<DeviceActor>, u64)>,
    auth: Arc<Auth>,
    store: Store,
}

impl Devices {
    pub fn new(auth: Arc<Auth>, store: Store) -> Devices {
        Devices {
            actors: HashMap::new(),
            auth,
            store,
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
        let store = self.store.clone();
        let entry = self.actors.entry(msg.device_id.clone()).or_insert_with(|| {
            let actor = DeviceActor {
                device_id: msg.device_id.clone(),
                sessions: HashMap::new(),
                attaches: 0,
                registry,
                auth,
                store,
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
pub struct DeviceActor {
    device_id: String,
    /// Each session's token id and how to close it.
    sessions: HashMap<u64, (String, Recipient<Close>)>,
    attaches: u64,
    registry: Addr<Devices>,
    auth: Arc<Auth>,
    store: Store,
}

impl Actor for DeviceActor {
    type Context = Context<Self>;
}

impl Handler<Attach> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _ctx: &mut Self::Context) {
        self.attaches += 1;
        // A token revoked between CONNECT and this attach is caught here.
        if !self.auth.token_valid(&msg.token_id) {
            msg.session.do_send(Close("token revoked"));
        }
        self.sessions
            .insert(msg.conn_id, (msg.token_id, msg.session));
        let (id, at) = (self.device_id.clone(), now_ms());
        self.store
            .write_detached("last input", move |c| devices::set_last_input(c, &id, at));
    }
}

impl Handler<Detach> for DeviceActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, _ctx: &mut Self::Context) {
        self.sessions.remove(&msg.conn_id);
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
