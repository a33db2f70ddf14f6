//! `GET /`: the web page, the installation's console (the broker at a
//! glance; devices with their charts, latest data, Live Inspector, tokens
//! and settings; actions and their runs), served from files embedded in the
//! binary. No build step: the files under `src/http/page/` are what the
//! browser gets; `chart.js` draws the charts as inline SVG.
//!
//! The page holds no secret of its own: it asks for the admin token and
//! calls the admin API with it, like any other client.

use actix_web::{web, HttpResponse};

/// The page's files: URL path, content type, contents.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "/static/chart.js",
        "text/javascript; charset=utf-8",
        include_str!("page/chart.js"),
    ),
    (
        "/static/app.js",
        "text/javascript; charset=utf-8",
        include_str!("page/app.js"),
    ),
    (
        "/static/style.css",
        "text/css; charset=utf-8",
        include_str!("page/style.css"),
    ),
];

/// Only the page's own files and requests to this server: a payload shown on
/// the page can never load a script or call elsewhere, even if it slipped
/// past the page's text-only rendering.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for &(path, content_type, body) in FILES {
        cfg.route(
            path,
            web::get().to(move || async move { file(content_type, body) }),
        );
    }
}

fn file(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // Always revalidate: after an upgrade the browser gets the new page.
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}
