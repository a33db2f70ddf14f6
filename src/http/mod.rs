//! The HTTP side (`[http] listen`): liveness, metrics, the admin API and the
//! web page, on actix-web inside the broker's actix system.
//!
//! Every JSON answer has TagoIO's shape: `{"status":true,"result":…}` or
//! `{"status":false,"message":"…"}` with a 4xx/5xx status.
//!
//! A client has `[http] request_timeout` to send a request's head and then
//! its body (a slower body gets 408); admin requests are refused (401)
//! before their body is read; on shutdown, Live Inspector streams end and
//! connections get a few seconds to finish.

mod actions;
mod admin;
mod bridges;
mod device_api;
mod live;
mod page;
pub(crate) mod services;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use crate::broker::Broker;
use crate::metrics::METRICS;

pub(crate) type Shared = web::Data<Arc<Broker>>;

/// A successful answer.
pub(crate) fn ok(result: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": true, "result": result}))
}

/// A refusal with its reason.
pub(crate) fn fail(status: StatusCode, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({"status": false, "message": message.to_string()}))
}

/// A refusal that handlers return with `?`; answered as [`fail`], with a
/// `Retry-After` header when it says how long to wait (a 429). The one HTTP
/// error type of the admin, device and service APIs.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// 400 with `message`.
    pub(crate) fn bad(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut response = fail(self.status, &self.message);
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: retrying after the floor would be refused again.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(value) =
                actix_web::http::header::HeaderValue::from_str(&secs.max(1).to_string())
            {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "HTTP API");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)
    }
}

pub(crate) type ApiResult = Result<HttpResponse, ApiError>;

/// How long a shutdown waits for HTTP connections to finish.
const SHUTDOWN_GRACE_SECS: u64 = 2;

/// The error a request body stream gives when it was not received in time.
fn body_timed_out() -> actix_web::error::PayloadError {
    actix_web::error::PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body did not arrive within http.request_timeout",
    ))
}

/// Whether a payload error is [`body_timed_out`]'s.
pub(crate) fn is_body_timeout(e: &actix_web::error::PayloadError) -> bool {
    matches!(e, actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// A request body that must have arrived whole by a deadline.
struct Deadline {
    inner: actix_web::dev::Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl futures::Stream for Deadline {
    type Item = Result<bytes::Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if std::future::Future::poll(self.sleep.as_mut(), cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(body_timed_out())));
        }
        Poll::Pending
    }
}

/// Starts the HTTP server; the returned server must be awaited (spawned).
pub(crate) fn start(
    broker: Arc<Broker>,
    bridges: crate::bridge::Statuses,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let addr = broker.config.http.listen;
    let timeout = broker.config.http.request_timeout;
    let data = web::Data::new(broker);
    let bridges = web::Data::new(bridges);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(bridges.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(1 << 20)
                    .error_handler(|e, _| {
                        let timed_out = matches!(&e, actix_web::error::JsonPayloadError::Payload(p) if is_body_timeout(p));
                        let answer = if timed_out {
                            fail(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive within http.request_timeout")
                        } else {
                            fail(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
                        };
                        actix_web::error::InternalError::from_response(e, answer).into()
                    }),
            )
            .wrap_fn(move |mut req, srv| {
                use actix_web::dev::Service;
                // The body must arrive within the timeout from the head's end.
                let (_, payload) = req.parts_mut();
                let inner = std::mem::replace(payload, actix_web::dev::Payload::None);
                req.set_payload(actix_web::dev::Payload::Stream {
                    payload: Box::pin(Deadline {
                        inner,
                        sleep: Box::pin(tokio::time::sleep(timeout)),
                        expired: false,
                    }),
                });
                srv.call(req)
            })
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .configure(admin::routes)
            .configure(bridges::routes)
            .configure(services::routes)
            .configure(live::routes)
            .configure(actions::routes)
            .configure(device_api::routes)
            .configure(page::routes)
            .default_service(web::to(not_found))
    })
    .workers(1)
    .client_request_timeout(timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .disable_signals()
    .bind(addr)
    .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    Ok((server.run(), bound))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    fail(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.path()),
    )
}

async fn health() -> HttpResponse {
    ok("ok")
}

/// The bridges' states, beside the broker.
pub(crate) type Bridges = web::Data<crate::bridge::Statuses>;

async fn metrics(broker: Shared, bridges: Bridges) -> HttpResponse {
    let (topics, subscriptions, sessions) = broker
        .router
        .send(crate::router::Stats)
        .await
        .unwrap_or_default();
    let mut out = METRICS.render(&crate::metrics::RouterStats {
        topics,
        subscriptions,
        sessions,
    });
    crate::bridge::write_metrics(&bridges, &mut out);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
