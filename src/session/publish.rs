//! PUBLISH from the client, and PUBREL.
//!
//! Publishes go to their topic actor in the order read; the PUBACK (QoS 1) or
//! PUBREC (QoS 2) for each goes back in the same order once its topic has
//! queued it for every subscriber and committed what must be durable. At most
//! `PUBLISH_WINDOW` are outstanding; past that the socket is not read.
//!
//! Refused before they go anywhere: a topic deeper than `max_topic_levels`
//! (the connection closes), a `$` topic (the broker's: acknowledged and
//! dropped), a topic the ACL denies (acknowledged and dropped), a publish
//! past the device's rate limit or one that would need a topic past
//! `max_topics` (the connection closes, nothing is acknowledged).
//!
//! MQTT 5 adds: topic aliases are resolved first (an unknown or out of
//! range one closes the connection, 0x82 / 0x94); a client past our Receive
//! Maximum is disconnected (0x93); a payload that says it is UTF-8 and is
//! not is refused (0x99); the message expiry interval is capped by
//! `max_message_expiry` and becomes an instant; the acknowledgement of a
//! dropped publish carries its reason (0x87 not authorized), and that of a
//! publish nobody subscribes to 0x10.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::client::AliasError;
use super::incoming::{Answer, Qos2};
use super::{Lookup, Session};
use crate::actions::supervisor::Triggered;
use crate::device::limits::Kind;
use crate::device::watch::{preview, Event, Refusal};
use crate::metrics::METRICS;
use crate::protocol::{reason, Ack, Packet, Publish};
use crate::router::topic;
use crate::router::{Resolve, TOPIC_LEASE};
use crate::store::devices::Permission;
use crate::store::now_ms;

/// Topic addresses one session remembers; beyond this the cache starts over.
const TOPIC_CACHE: usize = 4096;

impl Session {
    pub(super) fn on_publish(&mut self, mut p: Publish, ctx: &mut Context<Self>) {
        METRICS.messages_received.inc();
        if self.level >= 5 {
            METRICS.messages_received_v5.inc();
        }
        let receive_maximum = usize::from(self.handles.mqtt.receive_maximum);
        let max_expiry = self.handles.mqtt.max_message_expiry;
        let Some(c) = self.phase.live_mut() else {
            return;
        };
        if c.client.v5_or_later() {
            if !p.subscription_ids.is_empty() {
                tracing::info!(client_id = %c.client_id, "PUBLISH with a subscription identifier from a client: protocol error");
                return self.close(ctx, "protocol error");
            }
            // Without an alias the topic stands as it is (no lookup).
            if p.topic_alias.is_some() {
                match c
                    .client
                    .aliases_in
                    .resolve(p.topic.clone(), p.topic_alias.take())
                {
                    Ok(topic) => p.topic = topic,
                    Err(AliasError::Invalid) => return self.close(ctx, "topic alias invalid"),
                    Err(AliasError::Unknown) => {
                        tracing::info!(client_id = %c.client_id, "PUBLISH by an alias never set: protocol error");
                        return self.close(ctx, "protocol error");
                    }
                }
            }
            let unacked = c.incoming.unacknowledged();
            let resent_qos2 = p.qos == 2 && c.incoming.has_qos2(p.pkid);
            if p.qos > 0 && !resent_qos2 && unacked >= receive_maximum {
                tracing::info!(client_id = %c.client_id, unacked, receive_maximum, "more unacknowledged publishes than the Receive Maximum: closing");
                return self.close(ctx, "receive maximum exceeded");
            }
        }
        let read_only = c
            .identity
            .as_ref()
            .is_some_and(|i| i.permission == Permission::Read);
        let watch = c
            .identity
            .as_ref()
            .map(|i| i.watch.clone())
            .filter(|w| w.active());
        if let Some(w) = &watch {
            w.emit(|| Event::Publish {
                client_id: &c.client_id,
                direction: None,
                topic: &p.topic,
                remote_topic: None,
                qos: p.qos,
                retain: p.retain,
                bytes: p.payload.len(),
                payload: preview(&p.payload),
                properties: p
                    .properties
                    .as_deref()
                    .and_then(crate::store::props::to_json),
            });
        }
        if p.topic.split('/').count() > self.handles.mqtt.max_topic_levels {
            METRICS.topic_levels_refused.inc();
            if let Some(w) = &watch {
                w.emit(|| {
                    Event::Refused(Refusal {
                        kind: "publish",
                        reason: Some("topic deeper than mqtt.max_topic_levels".into()),
                        client_id: Some(&c.client_id),
                        levels: Some(p.topic.split('/').count()),
                        ..Refusal::default()
                    })
                });
            }
            tracing::info!(client_id = %c.client_id, levels = p.topic.split('/').count(), "publish topic too deep: closing");
            return self.close(ctx, "topic too deep");
        }
        if let Some(props) = p.properties.as_ref() {
            if props.payload_format == Some(1) && std::str::from_utf8(&p.payload).is_err() {
                tracing::info!(client_id = %c.client_id, topic = %p.topic, "payload format says UTF-8 and the payload is not: refused");
                if let Some(w) = &watch {
                    w.emit(|| {
                        refused(
                            "publish",
                            "payload format indicator 1 on a payload that is not UTF-8",
                            &c.client_id,
                            &p.topic,
                        )
                    });
                }
                return self.ack_dropped(
                    p.qos,
                    p.pkid,
                    reason::PAYLOAD_FORMAT_INVALID,
                    "payload format invalid",
                    ctx,
                );
            }
        }
        if p.topic.starts_with('$') {
            METRICS.dropped_reserved.inc();
            if !c.reserved_logged {
                c.reserved_logged = true;
                tracing::warn!(client_id = %c.client_id, topic = %p.topic, "publish to a $ topic dropped (logged once per connection)");
            }
            if let Some(w) = &watch {
                w.emit(|| {
                    refused(
                        "publish",
                        "$ topics are the broker's",
                        &c.client_id,
                        &p.topic,
                    )
                });
            }
            return self.ack_dropped(
                p.qos,
                p.pkid,
                reason::NOT_AUTHORIZED,
                "$ topics are the broker's",
                ctx,
            );
        }
        if read_only || !c.acl.can_publish(&p.topic) {
            METRICS.dropped_acl.inc();
            tracing::info!(client_id = %c.client_id, topic = %p.topic, "publish denied");
            if let Some(w) = &watch {
                let reason = if read_only { "read-only token" } else { "ACL" };
                w.emit(|| refused("publish", reason, &c.client_id, &p.topic));
            }
            let why = if read_only {
                "read-only token"
            } else {
                "denied by the ACL"
            };
            return self.ack_dropped(p.qos, p.pkid, reason::NOT_AUTHORIZED, why, ctx);
        }
        if let Some(id) = &c.identity {
            if self
                .handles
                .limits
                .check(&id.device_id, Kind::Publish)
                .is_err()
            {
                if let Some(w) = &watch {
                    w.emit(|| refused("limit", "publish_per_minute", &c.client_id, &p.topic));
                }
                // MQTT 5 can refuse one QoS 1/2 publish (0x97): the client
                // knows it was not taken. Otherwise disconnected rather than
                // dropped: nothing is acknowledged that is not delivered,
                // and the client resends later.
                if c.client.v5_or_later() && p.qos > 0 {
                    tracing::info!(client_id = %c.client_id, "publish limit reached: refused with 0x97");
                    return self.ack_dropped(
                        p.qos,
                        p.pkid,
                        reason::QUOTA_EXCEEDED,
                        "publish limit reached (limits.publish_per_minute)",
                        ctx,
                    );
                }
                tracing::info!(client_id = %c.client_id, "publish limit reached: disconnecting");
                return self.close(ctx, "publish limit reached");
            }
        }
        if p.qos == 2 {
            match c.incoming.qos2(p.pkid) {
                Qos2::New => {}
                // A resent QoS 2 publish we already have: acknowledge, don't deliver.
                Qos2::Answered => return self.send(Packet::PubRec(Ack::ok(p.pkid)), ctx),
                // Its first copy's PUBREC is on its way.
                Qos2::Pending => return,
            }
        }
        // The expiry becomes an instant; what is left of it is sent on.
        let mut expires_at = None;
        if let Some(props) = p.properties.as_mut() {
            if let Some(e) = props.message_expiry {
                let e = max_expiry.map_or(u64::from(e), |max| u64::from(e).min(max.as_secs()));
                expires_at = Some(now_ms() + (e as i64) * 1000);
                let stripped = std::sync::Arc::make_mut(props);
                stripped.message_expiry = None;
            }
        }
        if p.properties.as_ref().is_some_and(|props| props.is_empty()) {
            p.properties = None;
        }
        c.pipeline.push_back((p, expires_at));
        self.pump(ctx);
    }

    /// An acknowledgement with an MQTT 5 reason code (and reason string if
    /// the client wants them); 3.1.1 has neither.
    fn ack(&self, pkid: u16, code: u8, why: &str) -> Ack {
        let Some(c) = self.phase.conn() else {
            return Ack::ok(pkid);
        };
        if !c.client.v5_or_later() {
            return Ack::ok(pkid);
        }
        Ack {
            reason_string: if code == 0 {
                None
            } else {
                c.client.reason(why)
            },
            ..Ack::with_reason(pkid, code)
        }
    }

    /// Acknowledges a publish that is dropped, so that the client does not
    /// resend it forever (as Mosquitto does); an MQTT 5 client is told why.
    fn ack_dropped(&mut self, qos: u8, pkid: u16, code: u8, why: &str, ctx: &mut Context<Self>) {
        let ack = self.ack(pkid, code, why);
        match qos {
            1 => self.send(Packet::PubAck(ack), ctx),
            2 => {
                if let Some(c) = self.phase.conn_mut() {
                    // A QoS 2 publish refused with a failure code is done:
                    // no PUBREL follows (§4.3.3).
                    if ack.reason < 0x80 {
                        c.incoming.answered_qos2(pkid);
                    }
                }
                self.send(Packet::PubRec(ack), ctx);
            }
            _ => {}
        }
    }

    /// Hands waiting publishes to their topics, as far as the window, the
    /// topic addresses and pending subscriptions allow.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        loop {
            let Some(c) = self.phase.live_mut() else {
                return;
            };
            if c.subscribing > 0 || matches!(c.lookup, Lookup::Resolving) {
                return;
            }
            let Some(front) = c.pipeline.front() else {
                break;
            };
            if c.incoming.is_full() {
                break;
            }
            let addr = match c.topics.get(&front.0.topic) {
                Some((addr, at)) if at.elapsed() < TOPIC_LEASE && addr.connected() => addr.clone(),
                _ => {
                    c.lookup = Lookup::Resolving;
                    let name = front.0.topic.clone();
                    let lookup = self
                        .handles
                        .router
                        .send(Resolve(name.clone(), crate::router::home::current()));
                    ctx.spawn(lookup.into_actor(self).map(move |addr, act, ctx| {
                        let addr = match addr {
                            Ok(Some(addr)) => addr,
                            Ok(None) => return act.too_many_topics(&name, ctx),
                            Err(_) => return act.close(ctx, "router unavailable"),
                        };
                        let Some(c) = act.phase.live_mut() else {
                            return;
                        };
                        c.lookup = Lookup::Idle;
                        if c.topics.len() >= TOPIC_CACHE {
                            c.topics.clear();
                        }
                        c.topics.insert(name, (addr, Instant::now()));
                        act.pump(ctx);
                    }));
                    return;
                }
            };
            let Some((p, expires_at)) = c.pipeline.pop_front() else {
                break;
            };
            // A publish that triggers actions is acknowledged only once they
            // have stored what they store.
            let mut stored = None;
            if let Some(id) = &c.identity {
                id.last_input.store(now_ms(), Ordering::Relaxed);
                if self.handles.action_index.read().wants(&p.topic) {
                    if let Some(device) = self.handles.auth.device(&id.device_id) {
                        let (done, answer) = oneshot::channel();
                        self.handles.actions.do_send(Triggered {
                            device,
                            topic: p.topic.clone(),
                            payload: p.payload.clone(),
                            properties: p.properties.clone(),
                            done: Some(done),
                        });
                        stored = Some(answer);
                    }
                }
            }
            let (done, answer) = oneshot::channel();
            let topic_name = p.topic.clone();
            let triggered = stored.is_some();
            addr.do_send(topic::Publish {
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties: p.properties,
                expires_at,
                done: Some(done),
                origin: Some(c.client_id.clone()),
            });
            let ticket = c.incoming.push(p.qos, p.pkid);
            ctx.spawn(
                async move {
                    let published = answer.await.unwrap_or(topic::Published::Failed);
                    let stored = match stored {
                        Some(s) => s.await.unwrap_or(false),
                        None => true,
                    };
                    (published, stored)
                }
                .into_actor(self)
                .map(move |(published, stored), act, ctx| {
                    if published == topic::Published::RetainRefused {
                        act.retain_refused(&topic_name);
                    }
                    if let Some(c) = act.phase.live_mut() {
                        let answer = match published {
                            topic::Published::Failed => Err(()),
                            _ if !stored => Err(()),
                            // Nobody subscribes, and no action took it either.
                            topic::Published::NoSubscribers if !triggered => {
                                Ok(reason::NO_MATCHING_SUBSCRIBERS)
                            }
                            _ => Ok(reason::SUCCESS),
                        };
                        c.incoming.complete(ticket, answer);
                    }
                    act.flush_acks(ctx);
                }),
            );
        }
        self.update_gate();
        self.close_if_drained(ctx);
    }

    /// A publish needed a new topic and `max_topics` exist: the connection
    /// closes (nothing unacknowledged is lost; the client resends later).
    fn too_many_topics(&mut self, topic: &str, ctx: &mut Context<Self>) {
        if let Some(c) = self.phase.conn() {
            tracing::warn!(client_id = %c.client_id, topic, "mqtt.max_topics reached: closing");
            if let Some(w) = c.identity.as_ref().map(|i| &i.watch) {
                w.emit(|| refused("publish", "mqtt.max_topics reached", &c.client_id, topic));
            }
        }
        self.close(ctx, "too many topics");
    }

    /// A retained publish was delivered but not retained (a retained limit).
    fn retain_refused(&self, topic: &str) {
        let Some(c) = self.phase.conn() else { return };
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch) {
            w.emit(|| {
                refused("retain", "mqtt.max_retained_messages or max_retained_bytes reached: delivered, not retained", &c.client_id, topic)
            });
        }
    }

    /// Sends the acknowledgements that are due, in the order the publishes came.
    fn flush_acks(&mut self, ctx: &mut Context<Self>) {
        loop {
            let Some(c) = self.phase.live_mut() else {
                return;
            };
            let Some(answer) = c.incoming.next_ready() else {
                break;
            };
            match answer {
                // Not stored: no acknowledgement, so the client sends it again.
                Answer::Failed => return self.close(ctx, "a message could not be stored"),
                Answer::Ack {
                    qos: 1,
                    pkid,
                    reason,
                } => {
                    let ack = self.ack(pkid, reason, "no matching subscribers");
                    self.send(Packet::PubAck(ack), ctx)
                }
                Answer::Ack {
                    qos: 2,
                    pkid,
                    reason,
                } => {
                    let ack = self.ack(pkid, reason, "no matching subscribers");
                    self.send(Packet::PubRec(ack), ctx)
                }
                Answer::Ack { .. } => {}
            }
        }
        self.pump(ctx);
    }

    pub(super) fn on_pubrel(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        if let Some(c) = self.phase.conn_mut() {
            c.incoming.release(pkid);
        }
        self.send(Packet::PubComp(Ack::ok(pkid)), ctx);
    }
}

/// The Live Inspector's event for a refused publish of `client_id` on `topic`.
fn refused<'a>(kind: &'a str, reason: &'a str, client_id: &'a str, topic: &'a str) -> Event<'a> {
    Event::Refused(Refusal {
        kind,
        reason: Some(reason.into()),
        client_id: Some(client_id),
        topic: Some(topic),
        ..Refusal::default()
    })
}
