//! SUBSCRIBE and UNSUBSCRIBE: each filter is refused (0x80) when it is
//! deeper than `max_topic_levels`, when the ACL denies every topic it could
//! match, or when the client holds `max_subscriptions_per_client` already;
//! the router puts the rest in force, then SUBACK / UNSUBACK.
//! Publishes from this client wait meanwhile, so that its own publish after
//! a SUBSCRIBE is matched against the new subscription.

use actix::prelude::*;

use super::Session;
use crate::device::watch::{Event, Filter, Refusal};
use crate::metrics::METRICS;
use crate::protocol::{Packet, SubAck, UnsubAck};
use crate::router::{Subscribe, Unsubscribe};
use crate::store::devices::Permission;

/// SUBACK return code for a refused filter.
const FAILURE: u8 = 0x80;

impl Session {
    pub(super) fn on_subscribe(
        &mut self,
        pkid: u16,
        filters: Vec<(String, u8)>,
        ctx: &mut Context<Self>,
    ) {
        let Some(c) = self.phase.live_mut() else {
            return;
        };
        let write_only = c
            .identity
            .as_ref()
            .is_some_and(|i| i.permission == Permission::Write);
        let max_levels = self.handles.mqtt.max_topic_levels;
        let mut codes = Vec::with_capacity(filters.len());
        let mut granted = Vec::with_capacity(filters.len());
        let mut reasons: Vec<Option<&'static str>> = Vec::with_capacity(filters.len());
        for (filter, qos) in &filters {
            let refused = if filter.split('/').count() > max_levels {
                METRICS.subscriptions_refused_levels.inc();
                Some("deeper than mqtt.max_topic_levels")
            } else if write_only || !c.acl.can_subscribe(filter) {
                METRICS.subscriptions_refused_acl.inc();
                Some(if write_only {
                    "write-only token"
                } else {
                    "ACL"
                })
            } else {
                None
            };
            if let Some(why) = refused {
                tracing::info!(client_id = %c.client_id, filter_bytes = filter.len(), why, "subscription refused");
                codes.push(FAILURE);
            } else {
                codes.push((*qos).min(2));
                granted.push((filter.clone(), (*qos).min(2)));
            }
            reasons.push(refused);
        }
        let requested = filters;
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch) {
            w.emit(|| Event::Subscribe {
                client_id: &c.client_id,
                filters: requested
                    .iter()
                    .zip(&codes)
                    .zip(&reasons)
                    .map(|(((f, q), code), why)| Filter {
                        filter: preview_filter(f),
                        qos: *q,
                        granted: *code != FAILURE,
                        code: *code,
                        reason: *why,
                    })
                    .collect(),
            });
        }
        if granted.is_empty() {
            return self.send(
                Packet::SubAck(SubAck {
                    pkid,
                    codes,
                    ..SubAck::default()
                }),
                ctx,
            );
        }
        c.subscribing += 1;
        let request = Subscribe {
            client_id: c.client_id.clone(),
            filters: granted,
        };
        ctx.spawn(self.handles.router.send(request).into_actor(self).map(move |answer, act, ctx| {
            let Some(c) = act.phase.live_mut() else { return };
            c.subscribing -= 1;
            match answer {
                Ok(Ok(in_force)) => {
                    // The router refuses what is past the client's subscription limit.
                    let mut in_force = in_force.into_iter();
                    let mut codes = codes;
                    let mut over = 0usize;
                    for code in codes.iter_mut().filter(|c| **c != FAILURE) {
                        if in_force.next() == Some(false) {
                            *code = FAILURE;
                            over += 1;
                        }
                    }
                    if over > 0 {
                        act.subscriptions_over_limit(over);
                    }
                    act.send(Packet::SubAck(SubAck { pkid, codes, ..SubAck::default() }), ctx)
                }
                Ok(Err(e)) => {
                    tracing::error!(client_id = act.client_id(), error = %e, "subscription not stored");
                    let codes = vec![FAILURE; codes.len()];
                    act.send(Packet::SubAck(SubAck { pkid, codes, ..SubAck::default() }), ctx);
                }
                Err(_) => return act.close(ctx, "router unavailable"),
            }
            act.pump(ctx);
        }));
        self.update_gate();
    }

    /// `n` filters were refused: the client holds `max_subscriptions_per_client`.
    fn subscriptions_over_limit(&self, n: usize) {
        let Some(c) = self.phase.conn() else { return };
        tracing::info!(client_id = %c.client_id, refused = n, "mqtt.max_subscriptions_per_client reached");
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch) {
            w.emit(|| {
                Event::Refused(Refusal {
                    kind: "subscribe",
                    reason: Some("mqtt.max_subscriptions_per_client reached".into()),
                    client_id: Some(&c.client_id),
                    filters: Some(n),
                    ..Refusal::default()
                })
            });
        }
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        pkid: u16,
        filters: Vec<String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(c) = self.phase.live_mut() else {
            return;
        };
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch) {
            w.emit(|| Event::Unsubscribe {
                client_id: &c.client_id,
                filters: &filters,
            });
        }
        c.subscribing += 1;
        let request = Unsubscribe {
            client_id: c.client_id.clone(),
            filters,
        };
        ctx.spawn(self.handles.router.send(request).into_actor(self).map(move |answer, act, ctx| {
            let Some(c) = act.phase.live_mut() else { return };
            c.subscribing -= 1;
            if let Ok(Err(e)) = &answer {
                tracing::error!(client_id = act.client_id(), error = %e, "unsubscription not stored");
            }
            if answer.is_err() {
                return act.close(ctx, "router unavailable");
            }
            act.send(Packet::UnsubAck(UnsubAck { pkid, ..UnsubAck::default() }), ctx);
            act.pump(ctx);
        }));
        self.update_gate();
    }
}

/// A filter as the Live Inspector shows it: at most 256 characters.
fn preview_filter(f: &str) -> String {
    match f.char_indices().nth(256) {
        Some((cut, _)) => format!("{}… ({} bytes)", &f[..cut], f.len()),
        None => f.to_string(),
    }
}
