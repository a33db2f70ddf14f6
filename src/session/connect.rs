//! CONNECT: client id, token, ACL, then the router hands over the session
//! (taking over an older connection with the same client id), CONNACK goes
//! out, and a resumed persistent session's queue is read back from SQLite.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::subscriber::{Delivery, Resume};
use super::{gate, Conn, Session};
use crate::device::limits::Kind;
use crate::device::{Attach, AuthError};
use crate::metrics::METRICS;
use crate::protocol::{Connect, Packet};
use crate::router::acl::ClientAcl;
use crate::store::sessions;

/// CONNACK return codes (MQTT 3.1.1 section 3.2.2.3).
const IDENTIFIER_REJECTED: u8 = 2;
const SERVER_UNAVAILABLE: u8 = 3;
const NOT_AUTHORIZED: u8 = 5;

impl Session {
    fn refuse(&mut self, code: u8, reason: &'static str, ctx: &mut Context<Self>) {
        METRICS.connections_refused.inc();
        tracing::info!(peer = %self.peer, code, reason, "CONNECT refused");
        self.send(
            Packet::ConnAck {
                session_present: false,
                code,
            },
            ctx,
        );
        self.close(ctx, reason);
    }

    pub(super) fn on_connect(&mut self, c: Connect, ctx: &mut Context<Self>) {
        let client_id = if c.client_id.is_empty() {
            if !c.clean_session {
                return self.refuse(
                    IDENTIFIER_REJECTED,
                    "empty client id without clean session",
                    ctx,
                );
            }
            format!("brook-{}", hex::encode(rand::random::<[u8; 8]>()))
        } else {
            c.client_id
        };
        if client_id.starts_with(crate::router::BRIDGE_CLIENT_PREFIX) {
            return self.refuse(
                IDENTIFIER_REJECTED,
                "client ids starting with \"bridge:\" are the bridges'",
                ctx,
            );
        }
        let identity = match &c.password {
            Some(secret) => match self.broker.auth.authenticate(secret) {
                Ok(identity) if identity.run => {
                    return self.refuse(
                        NOT_AUTHORIZED,
                        "an analysis token is for the HTTP API",
                        ctx,
                    )
                }
                Ok(identity) => Some(identity),
                Err(AuthError::Unknown) => {
                    return self.refuse(NOT_AUTHORIZED, "unknown token", ctx)
                }
                Err(AuthError::Expired { device_id }) => {
                    if let Some(d) = self.broker.auth.device(&device_id) {
                        d.watch.emit(
                            "refused",
                            serde_json::json!({"kind": "auth", "reason": "expired token", "client_id": &client_id, "peer": self.peer.to_string()}),
                        );
                    }
                    return self.refuse(NOT_AUTHORIZED, "expired token", ctx);
                }
            },
            None if self.broker.config.mqtt.allow_anonymous => None,
            None => return self.refuse(NOT_AUTHORIZED, "no token", ctx),
        };
        if let Some(id) = &identity {
            if let Err(wait) = self.broker.limits.check(&id.device_id, Kind::Connect) {
                id.watch.emit(
                    "refused",
                    serde_json::json!({"kind": "limit", "reason": "connect_per_minute", "client_id": &client_id, "retry_after_s": wait.as_secs()}),
                );
                return self.refuse(SERVER_UNAVAILABLE, "connect limit reached", ctx);
            }
        }
        let acl = ClientAcl::for_client(
            &self.broker.config.acl,
            identity
                .as_ref()
                .map(|i| (i.device_name.as_str(), &i.tags[..])),
            &client_id,
        );
        let mut will = c.will;
        if will.as_ref().is_some_and(|w| !acl.can_publish(&w.topic)) {
            tracing::info!(client_id, "will topic denied by the ACL: no will");
            will = None;
        }
        self.keep_alive = (c.keep_alive > 0).then(|| Duration::from_secs(c.keep_alive as u64));
        self.connecting = true;
        self.gate.hold(gate::CONNECTING);

        let client_id: Arc<str> = client_id.into();
        let request = crate::router::Connect {
            client_id: client_id.clone(),
            clean_session: c.clean_session,
            device_id: identity.as_ref().map(|i| i.device_id.clone()),
            conn_id: self.conn_id,
            session: ctx.address().recipient(),
        };
        ctx.spawn(self.broker.router.send(request).into_actor(self).map(
            move |answer, act, ctx| {
                let Ok(connected) = answer else {
                    return act.close(ctx, "router unavailable");
                };
                let subscriber = connected.subscriber;
                let (generation, resume) = subscriber.attach();
                let persistent = subscriber.persistent;
                act.conn = Some(Box::new(Conn {
                    client_id: client_id.clone(),
                    identity,
                    subscriber,
                    generation,
                    will,
                    acl,
                    topics: HashMap::new(),
                    pipeline: VecDeque::new(),
                    resolving: false,
                    subscribing: 0,
                    acks: VecDeque::new(),
                    incoming_qos2: resume.incoming_qos2.clone(),
                    loading: false,
                    resend: VecDeque::new(),
                    batch: VecDeque::new(),
                    inflight: HashMap::new(),
                    pubrel_out: HashSet::new(),
                    next_pkid: 1,
                    waiting_items: false,
                }));
                METRICS.clients_connected.inc();
                act.send(
                    Packet::ConnAck {
                        session_present: connected.session_present,
                        code: 0,
                    },
                    ctx,
                );
                act.after_connack(persistent && connected.session_present, resume, ctx);
            },
        ));
    }

    fn after_connack(&mut self, resumed: bool, resume: Resume, ctx: &mut Context<Self>) {
        let Some(c) = self.conn.as_mut() else { return };
        tracing::info!(
            client_id = %c.client_id,
            device = c.identity.as_ref().map(|i| i.device_name.as_str()),
            peer = %self.peer,
            resumed,
            "connected"
        );
        if let Some(id) = c.identity.as_ref().filter(|i| i.watch.active()) {
            id.watch.emit(
                "connect",
                serde_json::json!({
                    "client_id": &*c.client_id,
                    "token": format!("…{}", id.token_last4),
                    "peer": self.peer.to_string(),
                    "clean_session": !c.subscriber.persistent,
                    "keep_alive": self.keep_alive.map(|k| k.as_secs()).unwrap_or(0),
                    "will_topic": c.will.as_ref().map(|w| w.topic.clone()),
                    "resumed": resumed,
                }),
            );
        }
        if let Some(id) = &c.identity {
            self.broker.devices.do_send(Attach {
                device_id: id.device_id.clone(),
                token_id: id.token_id.clone(),
                token_hash: id.token_hash.clone(),
                conn_id: self.conn_id,
                session: ctx.address().recipient(),
            });
        }
        if let Some(ka) = self.keep_alive {
            // Closed after 1.5 × keep-alive of silence, checked often enough
            // that the close comes within a quarter of the keep-alive after.
            let every = (ka / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            ctx.run_interval(every, move |act, ctx| {
                if act.last_seen.elapsed() > ka + ka / 2 {
                    tracing::info!(client_id = act.client_id(), "keep-alive expired");
                    act.close(ctx, "keep-alive expired");
                }
            });
        }
        // A slow-consumer verdict on this connection closes it.
        let (subscriber, generation) = (c.subscriber.clone(), c.generation);
        ctx.spawn(
            async move {
                loop {
                    subscriber.kick.notified().await;
                    if subscriber.is_slow(generation) {
                        break;
                    }
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| act.close(ctx, "slow consumer")),
        );

        if !resumed {
            self.connected(ctx);
            return;
        }
        let Some(c) = self.conn.as_mut() else { return };
        c.loading = true;
        let client = c.client_id.clone();
        // Through the writer, so that every message queued for this session
        // before it came back is committed and read here.
        let rows = self
            .broker
            .store
            .write(move |conn| sessions::queue_of(conn, &client));
        ctx.spawn(rows.into_actor(self).map(move |rows, act, ctx| {
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(client_id = act.client_id(), error = %e, "cannot read the session's queue");
                    return act.close(ctx, "store error");
                }
            };
            let Some(c) = act.conn.as_mut() else { return };
            let in_memory = c.subscriber.queued_seqs();
            for r in rows.into_iter().filter(|r| !in_memory.contains(&r.id)) {
                c.resend.push_back(Delivery {
                    dup: resume.was_inflight.contains(&r.id),
                    topic: r.topic.into(),
                    payload: r.payload,
                    qos: r.qos,
                    retain: r.retain,
                    seq: r.id,
                });
            }
            c.loading = false;
            for pkid in &resume.pubrel {
                c.pubrel_out.insert(*pkid);
            }
            for pkid in resume.pubrel {
                act.send(Packet::PubRel(pkid), ctx);
            }
            act.connected(ctx);
        }));
    }

    /// CONNECT is done: read packets again and start delivering.
    fn connected(&mut self, ctx: &mut Context<Self>) {
        self.connecting = false;
        self.last_seen = Instant::now();
        self.gate.release(gate::CONNECTING);
        self.drain(ctx);
    }
}
