//! `GET /devices/{name}/live`: the Live Inspector as server-sent events.
//! Each event is one `data:` line of JSON with a `type` (connect, disconnect,
//! subscribe, unsubscribe, publish, refused, parser, action) and a `time`.
//! The admin token may come as `?token=` too, since a browser's EventSource
//! cannot set headers.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;

use super::admin::{admin_token, find_device};
use super::{ApiError, ApiResult, Shared};

/// A comment line this often keeps proxies from closing an idle stream and
/// lets the server notice a viewer that left.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices/{name}/live", web::get().to(live));
}

#[derive(Deserialize)]
struct LiveQuery {
    token: Option<String>,
}

async fn live(
    req: HttpRequest,
    broker: Shared,
    name: web::Path<String>,
    q: web::Query<LiveQuery>,
) -> ApiResult {
    let bearer = super::services::request_token(&req);
    admin_token(q.token.as_deref().or(bearer).unwrap_or(""), &broker)?;
    let device = find_device(&broker, name.into_inner()).await?;
    let info = broker
        .auth
        .device(&device.id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such device"))?;
    let watch = info.watch.clone();
    let rx = watch.subscribe();
    let hello = Bytes::from(format!(
        "data: {}\n\n",
        serde_json::json!({"type": "watching", "device": device.name, "id": device.id})
    ));
    let ticks = tokio::time::interval(KEEP_ALIVE);
    // The stream ends when the server shuts down, so that a shutdown does
    // not wait for viewers to leave.
    let stop = broker.shutdown.subscribe();
    let stream = futures::stream::unfold(
        (rx, ticks, Some(hello), watch, stop),
        |(mut rx, mut ticks, first, watch, mut stop)| async move {
            if let Some(first) = first {
                let state = (rx, ticks, None, watch, stop);
                return Some((Ok::<_, actix_web::Error>(first), state));
            }
            if *stop.borrow_and_update() {
                return None;
            }
            tokio::select! {
                frame = rx.recv() => frame.map(|f| (Ok(f), (rx, ticks, None, watch, stop))),
                _ = stop.changed() => None,
                _ = ticks.tick() => {
                    watch.prune();
                    Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (rx, ticks, None, watch, stop)))
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
