//! The HTTP side (`[http] listen`): liveness, metrics, the admin API and the
//! web page, on actix-web inside the broker's actix system.
//!
//! Every JSON answer has TagoIO's shape: `{"status":true,"result":…}` or
//! `{"status":false,"message":"…"}` with a 4xx/5xx status.

mod actions;
mod admin;
mod device_api;
mod live;
mod page;
pub mod services;

use std::fmt::Write as _;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use crate::broker::Broker;
use crate::metrics::METRICS;

pub type Shared = web::Data<Arc<Broker>>;

/// A successful answer.
pub fn ok(result: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": true, "result": result}))
}

/// A refusal with its reason.
pub fn fail(status: StatusCode, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({"status": false, "message": message.to_string()}))
}

/// A refusal that handlers return with `?`; answered as [`fail`].
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl std::fmt::Display) -> ApiError {
        ApiError(status, message.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0
    }
    fn error_response(&self) -> HttpResponse {
        fail(self.0, &self.1)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "HTTP API");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)
    }
}

pub type ApiResult = Result<HttpResponse, ApiError>;

/// Starts the HTTP server; the returned server must be awaited (spawned).
pub fn start(
    broker: Arc<Broker>,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let addr = broker.config.http.listen;
    let data = web::Data::new(broker);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(1 << 20)
                    .error_handler(|e, _| {
                        let message = format!("invalid JSON body: {e}");
                        actix_web::error::InternalError::from_response(
                            e,
                            fail(StatusCode::BAD_REQUEST, message),
                        )
                        .into()
                    }),
            )
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .configure(admin::routes)
            .configure(services::routes)
            .configure(live::routes)
            .configure(actions::routes)
            .configure(device_api::routes)
            .configure(page::routes)
            .default_service(web::to(not_found))
    })
    .workers(1)
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

async fn metrics(broker: Shared) -> HttpResponse {
    let m = &*METRICS;
    let (topics, subscriptions, sessions) = broker
        .router
        .send(crate::router::Stats)
        .await
        .unwrap_or_default();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP brook_{name} {help}\n# TYPE brook_{name} {kind}\nbrook_{name} {value}"
        );
    };
    metric(
        "clients_connected",
        "gauge",
        "MQTT connections with a session",
        m.clients_connected.get().to_string(),
    );
    metric(
        "sessions",
        "gauge",
        "client sessions known, connected or persistent",
        sessions.to_string(),
    );
    metric(
        "topics_active",
        "gauge",
        "topic actors alive",
        topics.to_string(),
    );
    metric(
        "subscriptions",
        "gauge",
        "subscriptions in the index",
        subscriptions.to_string(),
    );
    metric(
        "messages_received_total",
        "counter",
        "PUBLISH packets received",
        m.messages_received.get().to_string(),
    );
    metric(
        "messages_sent_total",
        "counter",
        "PUBLISH packets sent",
        m.messages_sent.get().to_string(),
    );
    metric(
        "bytes_received_total",
        "counter",
        "bytes read from MQTT sockets",
        m.bytes_received.get().to_string(),
    );
    metric(
        "bytes_sent_total",
        "counter",
        "bytes written to MQTT sockets",
        m.bytes_sent.get().to_string(),
    );
    metric(
        "slow_consumers_total",
        "counter",
        "subscribers disconnected as slow consumers",
        m.slow_consumers.get().to_string(),
    );
    metric(
        "connections_refused_total",
        "counter",
        "CONNECTs refused",
        m.connections_refused.get().to_string(),
    );
    metric(
        "store_commits_total",
        "counter",
        "SQLite transactions committed",
        m.store_commits.get().to_string(),
    );
    metric(
        "store_jobs_total",
        "counter",
        "writes committed (many per transaction)",
        m.store_jobs.get().to_string(),
    );
    metric(
        "store_commit_seconds_total",
        "counter",
        "time spent committing",
        format!("{:.6}", m.store_commit_micros.get() as f64 / 1e6),
    );
    metric(
        "store_commit_seconds_max",
        "gauge",
        "the longest commit since start",
        format!("{:.6}", m.store_commit_max_micros.get() as f64 / 1e6),
    );
    metric(
        "data_items_stored_total",
        "counter",
        "data items written to device buckets",
        m.data_stored.get().to_string(),
    );
    metric(
        "queued_messages",
        "gauge",
        "messages waiting in connected subscribers' queues",
        m.queued_messages.get().to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP brook_messages_dropped_total messages dropped, by reason\n# TYPE brook_messages_dropped_total counter\n\
         brook_messages_dropped_total{{reason=\"queue_full_qos0\"}} {}\n\
         brook_messages_dropped_total{{reason=\"offline_queue_overflow\"}} {}\n\
         brook_messages_dropped_total{{reason=\"acl\"}} {}",
        m.dropped_qos0_full.get(),
        m.dropped_queue_overflow.get(),
        m.dropped_acl.get()
    );
    let _ = writeln!(
        out,
        "# HELP brook_action_runs_total action runs, by outcome\n# TYPE brook_action_runs_total counter"
    );
    for (outcome, n) in [
        ("ok", m.runs_ok.get()),
        ("error", m.runs_error.get()),
        ("timeout", m.runs_timeout.get()),
        ("skipped", m.runs_skipped.get()),
    ] {
        let _ = writeln!(out, "brook_action_runs_total{{outcome=\"{outcome}\"}} {n}");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
