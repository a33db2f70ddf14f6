//! SUBSCRIBE and UNSUBSCRIBE: each filter is refused when it is deeper than
//! `max_topic_levels`, when the ACL denies every topic it could match, when
//! it is a malformed shared subscription, or when the client holds
//! `max_subscriptions_per_client` already (3.1.1: 0x80; MQTT 5: 0x97, 0x87,
//! 0x8F, 0x97); the router puts the rest in force, then SUBACK / UNSUBACK
//! (MQTT 5: 0x11 for a filter the client did not have). Publishes from this
//! client wait meanwhile, so that its own publish after a SUBSCRIBE is
//! matched against the new subscription.

use actix::prelude::*;

use super::Session;
use crate::device::watch::{Event, Filter, Refusal};
use crate::metrics::METRICS;
use crate::protocol::validate::check_topic_filter;
use crate::protocol::{reason, Packet, SubAck, UnsubAck};
use crate::router::grant::Sub;
use crate::router::{shared_filter, Subscribe, Unsubscribe, SHARE_PREFIX};
use crate::store::devices::Permission;

/// SUBACK return code for a refused filter (3.1.1), and MQTT 5's unspecified error.
const FAILURE: u8 = 0x80;

impl Session {
    /// The SUBACK code for a refused filter: 0x80 for 3.1.1, `v5` for MQTT 5.
    fn refused(&self, v5: u8) -> u8 {
        if self.level >= 5 {
            v5
        } else {
            FAILURE
        }
    }

    pub(super) fn on_subscribe(&mut self, s: crate::protocol::Subscribe, ctx: &mut Context<Self>) {
        let (pkid, id) = (s.pkid, s.id);
        let max_levels = self.handles.mqtt.max_topic_levels;
        let (quota, denied, invalid) = (
            self.refused(reason::QUOTA_EXCEEDED),
            self.refused(reason::NOT_AUTHORIZED),
            self.refused(reason::TOPIC_FILTER_INVALID),
        );
        if s.filters
            .iter()
            .any(|(f, o)| o.no_local && f.starts_with(SHARE_PREFIX))
        {
            // MQTT 5 §3.8.3.1: No Local on a shared subscription is a
            // Protocol Error.
            return self.close(ctx, "protocol error");
        }
        let Some(c) = self.phase.live_mut() else {
            return;
        };
        let write_only = c
            .identity
            .as_ref()
            .is_some_and(|i| i.permission == Permission::Write);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted = Vec::with_capacity(s.filters.len());
        let mut reasons: Vec<Option<&'static str>> = Vec::with_capacity(s.filters.len());
        for (filter, options) in &s.filters {
            let shared = filter.starts_with(SHARE_PREFIX);
            let matching = shared_filter(filter);
            let refused = if shared && matching.is_none() {
                Some((
                    invalid,
                    "not a valid shared subscription ($share/GROUP/FILTER)",
                ))
            } else if check_topic_filter(filter).is_err() {
                // The MQTT 5 codec hands well-framed filters on and leaves
                // their syntax to this check (3.1.1's refuses the packet).
                Some((invalid, "not a valid topic filter"))
            } else if matching.unwrap_or(filter).split('/').count() > max_levels {
                METRICS.subscriptions_refused_levels.inc();
                Some((quota, "deeper than mqtt.max_topic_levels"))
            } else if write_only || !c.acl.can_subscribe(matching.unwrap_or(filter)) {
                METRICS.subscriptions_refused_acl.inc();
                Some((
                    denied,
                    if write_only {
                        "write-only token"
                    } else {
                        "ACL"
                    },
                ))
            } else {
                None
            };
            match refused {
                Some((code, why)) => {
                    tracing::info!(client_id = %c.client_id, filter_bytes = filter.len(), why, "subscription refused");
                    codes.push(code);
                    reasons.push(Some(why));
                }
                None => {
                    let mut options = *options;
                    options.qos = options.qos.min(2);
                    codes.push(options.qos);
                    granted.push((filter.clone(), Sub { options, id }));
                    reasons.push(None);
                }
            }
        }
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch) {
            w.emit(|| Event::Subscribe {
                client_id: &c.client_id,
                filters: s
                    .filters
                    .iter()
                    .zip(&codes)
                    .zip(&reasons)
                    .map(|(((f, o), code), why)| Filter {
                        filter: preview_filter(f),
                        qos: o.qos,
                        granted: *code < 0x80,
                        code: *code,
                        reason: *why,
                    })
                    .collect(),
            });
        }
        if granted.is_empty() {
            return self.send_suback(pkid, codes, ctx);
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
                    for code in codes.iter_mut().filter(|c| **c < 0x80) {
                        if in_force.next() == Some(false) {
                            *code = quota;
                            over += 1;
                        }
                    }
                    if over > 0 {
                        act.subscriptions_over_limit(over);
                    }
                    act.send_suback(pkid, codes, ctx)
                }
                Ok(Err(e)) => {
                    tracing::error!(client_id = act.client_id(), error = %e, "subscription not stored");
                    let codes = vec![FAILURE; codes.len()];
                    act.send_suback(pkid, codes, ctx);
                }
                Err(_) => return act.close(ctx, "router unavailable"),
            }
            act.pump(ctx);
            act.drain(ctx);
        }));
        self.update_gate();
    }

    fn send_suback(&mut self, pkid: u16, codes: Vec<u8>, ctx: &mut Context<Self>) {
        let reason_string = codes
            .iter()
            .any(|&c| c >= 0x80)
            .then(|| {
                self.phase
                    .conn()
                    .and_then(|c| c.client.reason("one or more filters refused"))
            })
            .flatten();
        let suback = SubAck {
            pkid,
            codes,
            reason_string,
            ..SubAck::default()
        };
        self.send(Packet::SubAck(suback), ctx);
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
            let had = match answer {
                Ok(Ok(had)) => had,
                Ok(Err(e)) => {
                    tracing::error!(client_id = act.client_id(), error = %e, "unsubscription not stored");
                    Vec::new()
                }
                Err(_) => return act.close(ctx, "router unavailable"),
            };
            // MQTT 5 answers each filter: 0 or 0x11 "no subscription existed".
            let codes = if act.level >= 5 {
                had.iter()
                    .map(|&h| if h { reason::SUCCESS } else { reason::NO_SUBSCRIPTION_EXISTED })
                    .collect()
            } else {
                Vec::new()
            };
            act.send(Packet::UnsubAck(UnsubAck { pkid, codes, ..UnsubAck::default() }), ctx);
            act.pump(ctx);
            act.drain(ctx);
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
