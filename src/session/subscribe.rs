//! SUBSCRIBE and UNSUBSCRIBE: the ACL decides each filter (0x80 when
//! refused), the router puts the rest in force, then SUBACK / UNSUBACK.
//! Publishes from this client wait meanwhile, so that its own publish after
//! a SUBSCRIBE is matched against the new subscription.

use actix::prelude::*;

use super::Session;
use crate::protocol::Packet;
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
        let Some(c) = self.conn.as_mut() else { return };
        let write_only = c
            .identity
            .as_ref()
            .is_some_and(|i| i.permission == Permission::Write);
        let mut codes = Vec::with_capacity(filters.len());
        let mut granted = Vec::with_capacity(filters.len());
        let requested = filters.clone();
        for (filter, qos) in filters {
            if write_only || !c.acl.can_subscribe(&filter) {
                tracing::info!(client_id = %c.client_id, filter, "subscription denied");
                codes.push(FAILURE);
            } else {
                codes.push(qos.min(2));
                granted.push((filter, qos.min(2)));
            }
        }
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch).filter(|w| w.active()) {
            w.emit(
                "subscribe",
                serde_json::json!({
                    "client_id": &*c.client_id,
                    "filters": requested.iter().zip(&codes).map(|((f, q), code)| serde_json::json!({
                        "filter": f, "qos": q, "granted": *code != FAILURE, "code": code,
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        if granted.is_empty() {
            return self.send(Packet::SubAck { pkid, codes }, ctx);
        }
        c.subscribing += 1;
        let request = Subscribe {
            client_id: c.client_id.clone(),
            filters: granted,
        };
        ctx.spawn(self.broker.router.send(request).into_actor(self).map(move |answer, act, ctx| {
            let Some(c) = act.conn.as_mut() else { return };
            c.subscribing -= 1;
            match answer {
                Ok(Ok(())) => act.send(Packet::SubAck { pkid, codes }, ctx),
                Ok(Err(e)) => {
                    tracing::error!(client_id = act.client_id(), error = %e, "subscription not stored");
                    let codes = vec![FAILURE; codes.len()];
                    act.send(Packet::SubAck { pkid, codes }, ctx);
                }
                Err(_) => return act.close(ctx, "router unavailable"),
            }
            act.pump(ctx);
        }));
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        pkid: u16,
        filters: Vec<String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(c) = self.conn.as_mut() else { return };
        if let Some(w) = c.identity.as_ref().map(|i| &i.watch).filter(|w| w.active()) {
            w.emit(
                "unsubscribe",
                serde_json::json!({"client_id": &*c.client_id, "filters": filters}),
            );
        }
        c.subscribing += 1;
        let request = Unsubscribe {
            client_id: c.client_id.clone(),
            filters,
        };
        ctx.spawn(self.broker.router.send(request).into_actor(self).map(move |answer, act, ctx| {
            let Some(c) = act.conn.as_mut() else { return };
            c.subscribing -= 1;
            if let Ok(Err(e)) = &answer {
                tracing::error!(client_id = act.client_id(), error = %e, "unsubscription not stored");
            }
            if answer.is_err() {
                return act.close(ctx, "router unavailable");
            }
            act.send(Packet::UnsubAck(pkid), ctx);
            act.pump(ctx);
        }));
    }
}
