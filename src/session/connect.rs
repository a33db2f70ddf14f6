//! CONNECT: client id, token, ACL, then the router hands over the session
//! (taking over an older connection with the same client id of the same
//! device; another device's session is refused with code 2), CONNACK goes
//! out, and a resumed persistent session's queue is read back from SQLite,
//! a page at a time. A connection closes when its token expires.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::client::Client;
use super::incoming::Incoming;
use super::inflight::Inflight;
use super::{Conn, Lookup, Phase, Resumed, Session, PUBLISH_SLACK};
use crate::device::limits::Kind;
use crate::device::watch::{Event, Refusal};
use crate::device::{Attach, AuthError};
use crate::metrics::METRICS;
use crate::protocol::{reason, Ack, ConnAck, ConnAckProperties, Connect, Packet};
use crate::router::acl::ClientAcl;
use crate::router::queue::{Delivery, Resume};
use crate::router::ConnectAnswer;
use crate::store::{now_ms, sessions};

/// Messages of a resumed session read from SQLite at a time: the next page
/// is read when this one has been sent, so memory holds one page, not the
/// whole queue (up to `max_queued_messages` of up to `max_packet_size`).
const RESUME_PAGE_ROWS: usize = 64;
const RESUME_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy)]
enum Refuse {
    /// The client id cannot be used.
    Identifier,
    /// The token is unknown or has expired.
    BadToken,
    /// No token where one is needed, or one that may not log in over MQTT.
    NotAuthorized,
    /// The device's `connect_per_minute` is used up.
    RateLimited,
    /// The device holds `max_sessions_per_device` persistent sessions.
    Quota,
    /// MQTT 5 enhanced authentication, which brook does not do.
    AuthMethod,
}

impl Refuse {
    /// The CONNACK code: 3.1.1's return code (§3.2.2.3) or MQTT 5's
    /// reason code (§3.2.2.2).
    fn code(self, level: u8) -> u8 {
        let (v3, v5) = match self {
            Refuse::Identifier => (2, reason::CLIENT_IDENTIFIER_NOT_VALID),
            Refuse::BadToken => (5, reason::BAD_USER_NAME_OR_PASSWORD),
            Refuse::NotAuthorized => (5, reason::NOT_AUTHORIZED),
            Refuse::RateLimited => (3, reason::CONNECTION_RATE_EXCEEDED),
            Refuse::Quota => (2, reason::QUOTA_EXCEEDED),
            Refuse::AuthMethod => (5, reason::BAD_AUTHENTICATION_METHOD),
        };
        if level >= 5 {
            v5
        } else {
            v3
        }
    }
}

/// The longest single timer for a token's expiry; a later expiry is
/// checked again after this (timers that far out are not exact anyway).
const EXPIRY_RECHECK: Duration = Duration::from_secs(24 * 3600);

/// Closes the connection when `at` (unix ms) has come.
fn close_at_expiry(at: i64, ctx: &mut Context<Session>) {
    let left = Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64);
    ctx.run_later(left.min(EXPIRY_RECHECK), move |act, ctx| {
        if now_ms() < at {
            return close_at_expiry(at, ctx);
        }
        tracing::info!(client_id = act.client_id(), "token expired: closing");
        act.close(ctx, "token expired");
    });
}

impl Session {
    fn refuse(&mut self, why: Refuse, reason: &'static str, ctx: &mut Context<Self>) {
        METRICS.connections_refused.inc();
        let code = why.code(self.level);
        tracing::info!(peer = %self.peer, code, reason, "CONNECT refused");
        let properties = ConnAckProperties {
            reason_string: (self.level >= 5).then(|| reason.to_string()),
            ..ConnAckProperties::default()
        };
        self.send(
            Packet::ConnAck(ConnAck {
                code,
                properties,
                ..ConnAck::default()
            }),
            ctx,
        );
        self.close(ctx, reason);
    }

    pub(super) fn on_connect(&mut self, c: Connect, ctx: &mut Context<Self>) {
        self.level = c.level;
        self.codec.set_version(c.level);
        let v5 = c.level >= 5;
        if v5 && c.properties.authentication_method.is_some() {
            return self.refuse(
                Refuse::AuthMethod,
                "enhanced authentication is not supported",
                ctx,
            );
        }
        let assigned = c.client_id.is_empty();
        let client_id = if assigned {
            // MQTT 5 assigns an id whatever Clean Start says (§3.1.3.1);
            // 3.1.1 only to a clean session (§3.1.3.1, MQTT-3.1.3-7).
            if !c.clean_session && !v5 {
                return self.refuse(
                    Refuse::Identifier,
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
                Refuse::Identifier,
                "client ids starting with \"bridge:\" are the bridges'",
                ctx,
            );
        }
        let identity = match &c.password {
            Some(secret) => match self.handles.auth.authenticate(secret) {
                Ok(identity) if identity.run => {
                    return self.refuse(
                        Refuse::NotAuthorized,
                        "an analysis token is for the HTTP API",
                        ctx,
                    )
                }
                Ok(identity) => Some(identity),
                Err(AuthError::Unknown) => {
                    return self.refuse(Refuse::BadToken, "unknown token", ctx)
                }
                Err(AuthError::Expired { device_id }) => {
                    if let Some(d) = self.handles.auth.device(&device_id) {
                        d.watch.emit(|| {
                            Event::Refused(Refusal {
                                kind: "auth",
                                reason: Some("expired token".into()),
                                client_id: Some(&client_id),
                                peer: Some(self.peer.to_string()),
                                ..Refusal::default()
                            })
                        });
                    }
                    return self.refuse(Refuse::BadToken, "expired token", ctx);
                }
            },
            None if self.handles.mqtt.allow_anonymous => None,
            None => return self.refuse(Refuse::NotAuthorized, "no token", ctx),
        };
        if let Some(id) = &identity {
            if let Err(wait) = self.handles.limits.check(&id.device_id, Kind::Connect) {
                id.watch.emit(|| {
                    Event::Refused(Refusal {
                        kind: "limit",
                        reason: Some("connect_per_minute".into()),
                        client_id: Some(&client_id),
                        retry_after_s: Some(wait.as_secs()),
                        ..Refusal::default()
                    })
                });
                return self.refuse(Refuse::RateLimited, "connect limit reached", ctx);
            }
        }
        let acl = Arc::new(ClientAcl::for_client(
            &self.handles.acl,
            identity
                .as_ref()
                .map(|i| (i.device_name.as_str(), &i.tags[..])),
            &client_id,
        ));
        let mut will = c.will;
        if let Some(w) = &will {
            let why = if w.topic.starts_with('$') {
                Some("$ topics are the broker's")
            } else if w.topic.split('/').count() > self.handles.mqtt.max_topic_levels {
                Some("deeper than mqtt.max_topic_levels")
            } else if !acl.can_publish(&w.topic) {
                Some("denied by the ACL")
            } else {
                None
            };
            if let Some(why) = why {
                tracing::info!(client_id, why, "will topic refused: no will");
                if let Some(id) = &identity {
                    id.watch.emit(|| {
                        Event::Refused(Refusal {
                            kind: "will",
                            reason: Some(why.into()),
                            client_id: Some(&client_id),
                            topic: Some(&w.topic),
                            ..Refusal::default()
                        })
                    });
                }
                will = None;
            }
        }
        // An MQTT 5 client's keep alive is capped by `max_keep_alive` (and
        // told so); a 3.1.1 client cannot be told, so it keeps its own.
        let max_keep_alive = self.handles.mqtt.max_keep_alive;
        let server_keep_alive = (v5
            && max_keep_alive < u16::MAX
            && (c.keep_alive == 0 || c.keep_alive > max_keep_alive))
            .then_some(max_keep_alive);
        let keep_alive = server_keep_alive.unwrap_or(c.keep_alive);
        self.keep_alive = (keep_alive > 0).then(|| Duration::from_secs(u64::from(keep_alive)));
        // How long the session outlives the connection: 3.1.1's clean
        // session is 0, a persistent one for ever; MQTT 5 says (absent = 0,
        // 0xFFFFFFFF = for ever).
        let expiry = if v5 {
            match c.properties.session_expiry.unwrap_or(0) {
                u32::MAX => None,
                e => Some(e),
            }
        } else if c.clean_session {
            Some(0)
        } else {
            None
        };
        let max_expiry = self
            .handles
            .mqtt
            .max_session_expiry
            .map(|d| d.as_secs() as u32);
        let granted_expiry = match (expiry, max_expiry) {
            (Some(e), Some(max)) => Some(e.min(max)),
            (None, Some(max)) => Some(max),
            (e, None) => e,
        };
        let client = if v5 {
            Client::v5(&c.properties, self.handles.mqtt.topic_alias_maximum)
        } else {
            Client::v3(c.level)
        };
        let client_receive_max = c.properties.receive_maximum.unwrap_or(u16::MAX);
        let connack = ConnAckProperties {
            session_expiry: (v5 && granted_expiry != expiry)
                .then(|| granted_expiry.unwrap_or(u32::MAX)),
            receive_maximum: v5.then_some(self.handles.mqtt.receive_maximum),
            retain_available: v5.then_some(true),
            maximum_packet_size: v5.then(|| self.handles.mqtt.max_packet_size as u32),
            assigned_client_id: (v5 && assigned).then(|| client_id.clone()),
            topic_alias_maximum: (v5 && self.handles.mqtt.topic_alias_maximum > 0)
                .then_some(self.handles.mqtt.topic_alias_maximum),
            wildcard_subscription_available: v5.then_some(true),
            subscription_identifiers_available: v5.then_some(true),
            shared_subscription_available: v5.then_some(true),
            server_keep_alive,
            ..ConnAckProperties::default()
        };
        let client_id: Arc<str> = client_id.into();
        self.phase = Phase::Connecting {
            client_id: client_id.clone(),
        };
        self.update_gate();
        let request = crate::router::Connect {
            client_id: client_id.clone(),
            clean_session: c.clean_session,
            expiry,
            device_id: identity.as_ref().map(|i| i.device_id.clone()),
            acl: acl.clone(),
            conn_id: self.conn_id,
            session: ctx.address().recipient(),
        };
        ctx.spawn(self.handles.router.send(request).into_actor(self).map(
            move |answer, act, ctx| {
                let (subscriber, session_present) = match answer {
                    Ok(ConnectAnswer::Connected {
                        subscriber,
                        session_present,
                    }) => (subscriber, session_present),
                    Ok(ConnectAnswer::NotOwner { owner }) => {
                        act.not_owner(&client_id, identity.as_ref(), owner);
                        return act.refuse(
                            Refuse::Identifier,
                            "client id belongs to another device's session",
                            ctx,
                        );
                    }
                    Ok(ConnectAnswer::TooManySessions { max }) => {
                        if let Some(id) = &identity {
                            id.watch.emit(|| {
                                Event::Refused(Refusal {
                                    kind: "session",
                                    reason: Some(format!("the device has {max} persistent sessions (mqtt.max_sessions_per_device)").into()),
                                    client_id: Some(&client_id),
                                    ..Refusal::default()
                                })
                            });
                        }
                        return act.refuse(
                            Refuse::Quota,
                            "too many persistent sessions for this device",
                            ctx,
                        );
                    }
                    Err(_) => return act.close(ctx, "router unavailable"),
                };
                let (generation, resume) = subscriber.attach();
                let resumed = subscriber.persistent && session_present;
                let window = act.handles.mqtt.max_inflight.min(usize::from(client_receive_max));
                let mut inflight = Inflight::new(window);
                for pkid in &resume.pubrel {
                    inflight.resume_released(*pkid);
                }
                let conn = Box::new(Conn {
                    client_id: client_id.clone(),
                    identity,
                    subscriber,
                    generation,
                    will: will.map(Box::new),
                    expiry: granted_expiry,
                    client,
                    acl,
                    reserved_logged: false,
                    topics: HashMap::new(),
                    pipeline: VecDeque::new(),
                    lookup: Lookup::Idle,
                    subscribing: 0,
                    incoming: Incoming::new(
                        usize::from(act.handles.mqtt.receive_maximum) + PUBLISH_SLACK,
                        resume.incoming_qos2.clone(),
                    ),
                    resume: None,
                    resend: VecDeque::new(),
                    batch: VecDeque::new(),
                    inflight,
                    waiting_items: false,
                });
                // A resumed session's stored queue is read before anything
                // else happens; a new one is open at once.
                act.phase = if resumed {
                    Phase::Loading(conn)
                } else {
                    Phase::Open(conn)
                };
                METRICS.clients_connected.inc();
                act.send(
                    Packet::ConnAck(ConnAck {
                        session_present,
                        code: 0,
                        properties: connack,
                    }),
                    ctx,
                );
                act.after_connack(resumed, resume, ctx);
            },
        ));
    }

    /// Tells both devices' inspectors that `identity` tried to use a client
    /// id whose session belongs to `owner`.
    fn not_owner(
        &self,
        client_id: &str,
        identity: Option<&crate::device::Identity>,
        owner: Option<String>,
    ) {
        let by = identity.map(|i| i.device_name.as_str());
        tracing::warn!(client_id, device = by, owner = owner.as_deref(), peer = %self.peer, "client id of another device's session: refused");
        if let Some(id) = identity {
            id.watch.emit(|| {
                Event::Refused(Refusal {
                    kind: "session",
                    reason: Some("the client id belongs to another device's session".into()),
                    client_id: Some(client_id),
                    peer: Some(self.peer.to_string()),
                    ..Refusal::default()
                })
            });
        }
        if let Some(owner) = owner.and_then(|o| self.handles.auth.device(&o)) {
            owner.watch.emit(|| {
                Event::Refused(Refusal {
                    kind: "session",
                    reason: Some("another device tried to use this device's client id".into()),
                    client_id: Some(client_id),
                    by_device: by,
                    peer: Some(self.peer.to_string()),
                    ..Refusal::default()
                })
            });
        }
    }

    fn after_connack(&mut self, resumed: bool, resume: Resume, ctx: &mut Context<Self>) {
        let Some(c) = self.phase.conn() else { return };
        tracing::info!(
            client_id = %c.client_id,
            device = c.identity.as_ref().map(|i| i.device_name.as_str()),
            peer = %self.peer,
            transport = self.peer.transport.name(),
            resumed,
            "connected"
        );
        match c.client.level {
            3 => METRICS.connects_v31.inc(),
            5 => METRICS.connects_v5.inc(),
            _ => METRICS.connects_v311.inc(),
        }
        if let Some(id) = &c.identity {
            id.watch.emit(|| Event::Connect {
                client_id: &c.client_id,
                token: format!("…{}", id.token_last4),
                peer: self.peer.to_string(),
                transport: self.peer.transport.name(),
                proxy: self.peer.proxy().map(|p| p.to_string()),
                clean_session: !c.subscriber.persistent,
                keep_alive: self.keep_alive.map(|k| k.as_secs()).unwrap_or(0),
                will_topic: c.will.as_ref().map(|w| w.topic.as_str()),
                resumed,
                protocol: protocol_name(c.client.level),
            });
        }
        if let Some(id) = &c.identity {
            self.handles.devices.do_send(Attach {
                device_id: id.device_id.clone(),
                token_id: id.token_id.clone(),
                token_hash: id.token_hash.clone(),
                conn_id: self.conn_id,
                session: ctx.address().recipient(),
            });
        }
        if let Some(at) = c.identity.as_ref().and_then(|i| i.expires_at) {
            close_at_expiry(at, ctx);
        }
        if let Some(ka) = self.keep_alive {
            // Closed after 1.5 × keep-alive of silence, checked often enough
            // that the close comes within half the keep-alive after (a
            // packet counts from the check after it, a quarter later at most).
            let every = (ka / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            ctx.run_interval(every, move |act, ctx| {
                if std::mem::take(&mut act.seen) {
                    act.last_seen = Instant::now();
                }
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
        let Some(c) = self.phase.conn_mut() else {
            return;
        };
        c.resume = Some(Box::new(Resumed {
            was_inflight: resume.was_inflight,
            after: 0,
            // Everything queued up to now is in SQLite (or on its way there
            // through the writer, which keeps order); newer messages arrive
            // in the subscriber's memory queue.
            last: crate::router::queue::SEQ.load(std::sync::atomic::Ordering::Relaxed),
            unloaded: 0,
            reading: false,
        }));
        for pkid in resume.pubrel {
            self.send(Packet::PubRel(Ack::ok(pkid)), ctx);
        }
        self.load_page(ctx);
    }

    /// Reads the next page of a resumed session's queue from SQLite into
    /// `resend`; the first page ends the loading phase.
    pub(super) fn load_page(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = self.phase.live_mut() else {
            return;
        };
        let Some(r) = c.resume.as_mut() else { return };
        if r.reading {
            return;
        }
        r.reading = true;
        let client = c.client_id.clone();
        let (after, last) = (r.after, r.last);
        // Through the writer, so that every message queued for this session
        // before it came back is committed and read here.
        let rows = self.handles.store.write(move |conn| {
            let page = sessions::queue_page(
                conn,
                &client,
                after,
                last,
                RESUME_PAGE_ROWS,
                RESUME_PAGE_BYTES,
                now_ms(),
            )?;
            // Counted once, for the `max_queued_messages` bound should the
            // client leave again before all of it is sent.
            let total = if after == 0 {
                Some(sessions::queue_len(conn, &client, 0, last)?)
            } else {
                None
            };
            Ok((page, total))
        });
        ctx.spawn(rows.into_actor(self).map(move |rows, act, ctx| {
            let (rows, total) = match rows {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(client_id = act.client_id(), error = %e, "cannot read the session's queue");
                    return act.close(ctx, "store error");
                }
            };
            let Some(c) = act.phase.live_mut() else { return };
            let Some(r) = c.resume.as_mut() else { return };
            r.reading = false;
            // The end is a page that finds nothing more.
            let done = rows.is_empty();
            r.unloaded = total.unwrap_or(r.unloaded).saturating_sub(rows.len());
            if let Some(last_row) = rows.last() {
                r.after = last_row.id;
            }
            let in_memory = c.subscriber.queued_seqs();
            for row in rows.into_iter().filter(|row| !in_memory.contains(&row.id)) {
                c.resend.push_back(Delivery {
                    dup: r.was_inflight.contains(&row.id),
                    topic: row.topic.into(),
                    payload: row.payload,
                    qos: row.qos,
                    retain: row.retain,
                    seq: row.id,
                    properties: row.properties,
                    expires_at: row.expires_at,
                    sub_ids: row.sub_ids,
                });
            }
            if done {
                c.resume = None;
            }
            if matches!(act.phase, Phase::Loading(_)) {
                act.connected(ctx);
            } else {
                act.drain(ctx);
            }
        }));
    }

    /// CONNECT is done: read packets again and start delivering.
    fn connected(&mut self, ctx: &mut Context<Self>) {
        let phase = std::mem::replace(&mut self.phase, Phase::AwaitingConnect);
        self.phase = match phase {
            Phase::Loading(c) => Phase::Open(c),
            other => other,
        };
        self.last_seen = Instant::now();
        self.seen = false;
        self.update_gate();
        self.drain(ctx);
    }
}

/// How the Live Inspector and the metrics name a protocol level.
pub(crate) fn protocol_name(level: u8) -> &'static str {
    match level {
        3 => "3.1",
        5 => "5",
        _ => "3.1.1",
    }
}
