//! PUBLISH to the client, and its acknowledgements (PUBACK, PUBREC, PUBCOMP).
//!
//! The session takes messages from its subscriber queue as far as the
//! client's window (`max_inflight` unacknowledged QoS 1/2 messages) and the
//! writer queue allow; a resumed session first sends what SQLite held. Rows of
//! a persistent session are deleted when the client acknowledges them.

use actix::prelude::*;

use std::sync::Arc;

use super::client::AliasUse;
use super::inflight::PubRec;
use super::outbound::Queued;
use super::{Phase, Session};
use crate::metrics::METRICS;
use crate::protocol::{encode_publish, publish_size, Ack, Packet, Publish};
use crate::router::queue::Delivery;
use crate::store::{sessions, Store};

/// How many messages to take from the subscriber queue under one lock.
const BATCH: usize = 64;

impl Session {
    /// Writes as many waiting messages as the client's window and the writer allow.
    pub(super) fn drain(&mut self, ctx: &mut Context<Self>) {
        // Nothing is delivered before the session is open, nor after it was
        // taken over; a draining session goes on delivering until it closes.
        if !matches!(self.phase, Phase::Open(_) | Phase::Draining(..)) {
            return;
        }
        let Some(c) = self.phase.live_mut() else {
            return;
        };
        loop {
            if !self.out.has_room() {
                self.wait_for_writer(ctx);
                return;
            }
            let from_resend = !c.resend.is_empty();
            let next = if from_resend {
                c.resend.pop_front()
            } else if c.resume.is_some() {
                // The next page of the resumed queue comes before anything newer.
                break;
            } else if c.subscribing > 0 {
                // A SUBACK is owed: what the subscription brings (its
                // retained messages) comes after it, as clients expect;
                // the answer drains again.
                break;
            } else {
                if c.batch.is_empty() {
                    c.subscriber.pop_into(&mut c.batch, BATCH);
                }
                c.batch.pop_front()
            };
            let Some(d) = next else {
                if !c.waiting_items {
                    c.waiting_items = true;
                    let sub = c.subscriber.clone();
                    ctx.spawn(
                        async move { sub.items.notified().await }
                            .into_actor(self)
                            .map(|_, act, ctx| {
                                if let Some(c) = act.phase.live_mut() {
                                    c.waiting_items = false;
                                }
                                act.drain(ctx);
                            }),
                    );
                }
                return;
            };
            if !from_resend && d.expired() {
                // MQTT 5 §3.3.2.3.3: not yet on its way to this client, and
                // its message expiry is over: gone from its queue.
                METRICS.dropped_expired.inc();
                dequeue(&self.handles.store, d.seq);
                continue;
            }
            if d.qos > 0 && !c.inflight.has_room() {
                // The window is full: keep the order, wait for an ack.
                if from_resend {
                    c.resend.push_front(d);
                } else {
                    c.batch.push_front(d);
                }
                return;
            }
            let limit = c.client.max_packet_size.map_or(usize::MAX, |m| m as usize);
            let level = c.client.level;
            let alias = c.client.aliases_out.choose(&d.topic);
            // The packet identifier's value does not change the size.
            let mut p = publish_of(&d, 0, level, alias);
            if publish_size(&p, level).is_none_or(|n| n > limit) {
                // MQTT 5 §3.1.2.11.4: never send a client a packet larger
                // than its Maximum Packet Size; the message is dropped for it
                // as if acknowledged.
                c.client.aliases_out.undo(&d.topic, alias);
                METRICS.dropped_too_large.inc();
                dequeue(&self.handles.store, d.seq);
                continue;
            }
            if d.qos > 0 {
                let (pkid, sent) = c.inflight.send(d);
                p.pkid = pkid;
                // Sent once: a resend after a reconnect carries DUP.
                sent.dup = true;
            }
            encode_publish(&p, level, &mut self.buf);
            let bytes = self.buf.split().freeze();
            if self.out.delivery(bytes) == Queued::Closed {
                return self.close(ctx, "socket closed");
            }
            METRICS.messages_sent.inc();
        }
        self.load_page(ctx);
    }

    fn acknowledged(&mut self, seq: i64) {
        dequeue(&self.handles.store, seq);
    }

    pub(super) fn on_puback(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        let Some(c) = self.phase.conn_mut() else {
            return;
        };
        if let Some(d) = c.inflight.puback(pkid) {
            self.acknowledged(d.seq);
        }
        self.drain(ctx);
    }

    pub(super) fn on_pubrec(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        let Some(c) = self.phase.conn_mut() else {
            return;
        };
        match c.inflight.pubrec(pkid) {
            PubRec::First(d) => {
                self.acknowledged(d.seq);
                self.send(Packet::PubRel(Ack::ok(pkid)), ctx);
            }
            PubRec::Again => self.send(Packet::PubRel(Ack::ok(pkid)), ctx),
            PubRec::Unknown => {}
        }
        self.drain(ctx);
    }

    pub(super) fn on_pubcomp(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        if let Some(c) = self.phase.conn_mut() {
            c.inflight.pubcomp(pkid);
        }
        self.drain(ctx);
    }
}

/// Deletes a persistent session's queued row (`seq` 0: not stored).
fn dequeue(store: &Store, seq: i64) {
    if seq > 0 {
        store.write_detached("dequeue", move |c| sessions::dequeue(c, seq));
    }
}

/// The PUBLISH packet for a delivery to a client of protocol `level`, naming
/// its topic as `alias` says. A 3.1.1 client gets none of the MQTT 5 fields
/// (and the hot path allocates nothing for them).
fn publish_of(d: &Delivery, pkid: u16, level: u8, alias: AliasUse) -> Publish {
    let mut p = Publish {
        topic: d.topic.clone(),
        payload: d.payload.clone(),
        qos: d.qos,
        retain: d.retain,
        dup: d.dup,
        pkid,
        ..Publish::default()
    };
    if level < 5 {
        return p;
    }
    p.properties = d.properties.clone();
    if let Some(ids) = &d.sub_ids {
        p.subscription_ids = ids.to_vec();
    }
    // What is left of the message expiry, rounded up: a message sent is
    // never announced as already expired.
    p.message_expiry_left = d.expires_at.map(|at| {
        let left = (at - crate::store::now_ms()).max(1);
        u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX)
    });
    match alias {
        AliasUse::Name => {}
        AliasUse::Set(a) => p.topic_alias = Some(a),
        AliasUse::Alias(a) => {
            p.topic_alias = Some(a);
            p.topic = Arc::from("");
        }
    }
    p
}
