//! The web page, embedded at build time: our own `web/` files and the pinned uPlot that
//! `build.rs` installs with `npm ci` (never committed). Plus the security headers every
//! response carries.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::DashboardError;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const TRENDS_JS: &str = include_str!("../web/trends.js");
const APP_CSS: &str = include_str!("../web/app.css");
const UPLOT_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js"));
const UPLOT_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/uPlot.min.css"));

/// Content-Security-Policy: scripts, styles and connections from this origin only, no
/// inline script, no framing, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn text(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the single page (login, ward overview, patient view).
pub async fn index() -> Response {
    text("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => text("text/javascript; charset=utf-8", APP_JS),
        "trends.js" => text("text/javascript; charset=utf-8", TRENDS_JS),
        "app.css" => text("text/css; charset=utf-8", APP_CSS),
        "uPlot.iife.min.js" => text("text/javascript; charset=utf-8", UPLOT_JS),
        "uPlot.min.css" => text("text/css; charset=utf-8", UPLOT_CSS),
        _ => DashboardError::NotFound(format!("no asset {file:?}")).into_response(),
    }
}

/// Adds the security headers to every response (HSTS only when cookies are `Secure`, i.e.
/// the dashboard is served over HTTPS).
pub fn security_headers(response: &mut Response, hsts: bool) {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(
        headers,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    if hsts {
        set(
            headers,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
}
