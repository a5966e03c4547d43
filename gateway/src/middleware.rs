//! The layers around every route: a span and metrics per request, the bearer token on writes,
//! the body limit, and JSON bodies for every error answered without one.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use outpost_kit::auth::Token;
use tracing::Instrument;

use crate::error::{ApiError, ErrorMessage};

/// Routes whose answer is a health report, 503 included.
const HEALTH_ROUTES: [&str; 5] = ["/readyz", "/healthz", "/health", "/healthcheck", "/healthcheck/"];
use crate::transcode::{RouteLabel, UNMATCHED};

/// Wraps the request in its trace span and records its metrics by route template.
pub async fn observe(request: Request, next: Next) -> Response {
    let span = outpost_kit::trace::http_span("gateway", &request);
    let method = request.method().clone();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|l| l.0.clone())
        .or(matched)
        .unwrap_or_else(|| UNMATCHED.to_string());
    outpost_kit::trace::record_http_response(
        &span,
        &method,
        (route != UNMATCHED).then_some(route.as_str()),
        response.status(),
    );
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    outpost_kit::metrics::observe_http(&route, method.as_str(), status, seconds);
    // One line per failed request; health answers (a 503 from /readyz is an answer, not a
    // failure of the gateway) stay at debug.
    let message = response
        .extensions()
        .get::<ErrorMessage>()
        .map(|m| m.0.as_str())
        .unwrap_or("");
    span.in_scope(|| {
        if status >= 500 && !HEALTH_ROUTES.contains(&route.as_str()) {
            tracing::warn!(route, status, seconds, error = message, "request failed");
        } else {
            tracing::debug!(route, status, seconds, error = message, "request");
        }
    });
    response
}

/// Reads stay open; any other method needs `Authorization: Bearer <token>` when a token is set.
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let given = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match token.admits(given) {
        Ok(()) => next.run(request).await,
        Err(why) => ApiError::unauthenticated(why).into_response(),
    }
}

/// Refuses bodies announced larger than `limit` (413), and answers every error that has no JSON
/// body (such as axum's own 405 or an extractor's rejection) with the JSON error shape.
pub async fn limit_and_json_errors(State(limit): State<u64>, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return ApiError::payload_too_large(limit).into_response();
    }
    let response = next.run(request).await;
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return response;
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let status = parts.status;
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(limit)
    } else {
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_ascii_lowercase()
        } else {
            text
        };
        ApiError::new(status, code_for_status(status), message)
    };
    let mut converted = error.into_response();
    for name in [ALLOW, http::header::WWW_AUTHENTICATE, http::header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            converted.headers_mut().insert(name, value.clone());
        }
    }
    converted.extensions_mut().extend(parts.extensions);
    converted
}

/// The code name of an HTTP error status that did not come from a gRPC status.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 415 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "ABORTED",
        413 => "PAYLOAD_TOO_LARGE",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// Routes whose body is a form upload (`multipart/form-data`), not JSON.
const FORM_ROUTES: [&str; 1] = ["/image_upload"];

/// Refuses cross-site browser writes, as Go's `http.CrossOriginProtection` does: a write whose
/// `Sec-Fetch-Site` is neither `same-origin` nor `none`, or (from browsers that send no
/// `Sec-Fetch-Site`) whose `Origin` is not this host, is 403. Requests without either header
/// come from non-browser clients (curl, scripts) and pass.
pub async fn cross_origin(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    if cross_site(request.headers()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "cross-site write refused: this route only takes writes from the gateway's own pages and non-browser clients",
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether a write's headers say a page of another site made the browser send it.
fn cross_site(headers: &http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("sec-fetch-site") {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => match (header("origin"), header("host")) {
            (None, _) => false,
            (Some(origin), host) => {
                let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
                host.is_none_or(|host| !origin_host.eq_ignore_ascii_case(host))
            }
        },
    }
}

/// A body of a JSON route must say it is JSON: a form or text body (what a cross-site page can
/// send without asking), or a body without a type, is 415. Empty bodies need no type.
pub async fn json_bodies(request: Request, next: Next) -> Response {
    use axum::body::HttpBody as _;
    let empty = request.body().size_hint().exact() == Some(0);
    if empty || FORM_ROUTES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !json {
        let given = if content_type.is_empty() {
            "no Content-Type".to_string()
        } else {
            format!("Content-Type {content_type:?}")
        };
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_ARGUMENT",
            format!("the body must be JSON, sent with Content-Type: application/json ({given} given)"),
        )
        .into_response();
    }
    next.run(request).await
}
