//! `GET /bridges` (admin API): each `[[bridge]]`'s state: connected, the
//! queue, the counters and the last error, as `brook bridge list` shows it.

use actix_web::{web, HttpRequest};

use super::admin::admin;
use super::{ok, ApiResult, Bridges, Shared};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/bridges", web::get().to(list_bridges));
}

async fn list_bridges(req: HttpRequest, broker: Shared, bridges: Bridges) -> ApiResult {
    admin(&req, &broker)?;
    Ok(ok(bridges.iter().map(|b| b.json()).collect::<Vec<_>>()))
}
