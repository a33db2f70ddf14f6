//! PUBLISH to the client, and its acknowledgements (PUBACK, PUBREC, PUBCOMP).
//!
//! The session takes messages from its subscriber queue as far as the
//! client's window (`max_inflight` unacknowledged QoS 1/2 messages) and the
//! writer queue allow; a resumed session first sends what SQLite held. Rows of
//! a persistent session are deleted when the client acknowledges them.

use actix::prelude::*;
use tokio::sync::mpsc;

use super::Session;
use crate::metrics::METRICS;
use crate::protocol::{encode_publish, Packet, Publish};
use crate::store::sessions;

/// How many messages to take from the subscriber queue under one lock.
const BATCH: usize = 64;

impl Session {
    /// Writes as many waiting messages as the client's window and the writer allow.
    pub(super) fn drain(&mut self, ctx: &mut Context<Self>) {
        let max_inflight = self.broker.config.mqtt.max_inflight;
        let Some(c) = self.conn.as_mut() else { return };
        if c.loading || self.connecting {
            return;
        }
        loop {
            if !self.overflow.is_empty() || self.writer.capacity() == 0 {
                self.wait_for_writer(ctx);
                return;
            }
            let from_resend = !c.resend.is_empty();
            let next = if from_resend {
                c.resend.pop_front()
            } else if c.resume.is_some() {
                // The next page of the resumed queue comes before anything newer.
                break;
            } else {
                if c.batch.is_empty() {
                    c.subscriber.pop_into(&mut c.batch, BATCH);
                }
                c.batch.pop_front()
            };
            let Some(mut d) = next else {
                if !c.waiting_items {
                    c.waiting_items = true;
                    let sub = c.subscriber.clone();
                    ctx.spawn(
                        async move { sub.items.notified().await }
                            .into_actor(self)
                            .map(|_, act, ctx| {
                                if let Some(c) = act.conn.as_mut() {
                                    c.waiting_items = false;
                                }
                                act.drain(ctx);
                            }),
                    );
                }
                return;
            };
            let mut pkid = 0;
            if d.qos > 0 {
                if c.inflight.len() + c.pubrel_out.len() >= max_inflight {
                    // The window is full: keep the order, wait for an ack.
                    if from_resend {
                        c.resend.push_front(d);
                    } else {
                        c.batch.push_front(d);
                    }
                    return;
                }
                loop {
                    pkid = c.next_pkid;
                    c.next_pkid = c.next_pkid.checked_add(1).unwrap_or(1);
                    if !c.inflight.contains_key(&pkid) && !c.pubrel_out.contains(&pkid) {
                        break;
                    }
                }
            }
            encode_publish(
                &Publish {
                    topic: d.topic.clone(),
                    payload: d.payload.clone(),
                    qos: d.qos,
                    retain: d.retain,
                    dup: d.dup,
                    pkid,
                },
                &mut self.buf,
            );
            let bytes = self.buf.split().freeze();
            if let Err(mpsc::error::TrySendError::Closed(_)) = self.writer.try_send(bytes) {
                return self.close(ctx, "socket closed");
            }
            METRICS.messages_sent.inc();
            if d.qos > 0 {
                // Sent once: a resend after a reconnect carries DUP.
                d.dup = true;
                c.inflight.insert(pkid, d);
            }
        }
        self.load_page(ctx);
    }

    fn acknowledged(&mut self, seq: i64) {
        if seq > 0 {
            self.broker
                .store
                .write_detached("dequeue", move |c| sessions::dequeue(c, seq));
        }
    }

    pub(super) fn on_puback(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        let Some(c) = self.conn.as_mut() else { return };
        if let Some(d) = c.inflight.remove(&pkid) {
            self.acknowledged(d.seq);
        }
        self.drain(ctx);
    }

    pub(super) fn on_pubrec(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        let Some(c) = self.conn.as_mut() else { return };
        let known = match c.inflight.remove(&pkid) {
            Some(d) => {
                c.pubrel_out.insert(pkid);
                self.acknowledged(d.seq);
                true
            }
            None => c.pubrel_out.contains(&pkid),
        };
        if known {
            self.send(Packet::PubRel(pkid), ctx);
        }
        self.drain(ctx);
    }

    pub(super) fn on_pubcomp(&mut self, pkid: u16, ctx: &mut Context<Self>) {
        if let Some(c) = self.conn.as_mut() {
            c.pubrel_out.remove(&pkid);
        }
        self.drain(ctx);
    }
}
