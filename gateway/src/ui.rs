//! The web UI (design section 6): plain HTML, CSS and ES modules from `gateway/ui/`, embedded in
//! the binary, no build step. Each page has its own path (`/`, `/camera`, `/review`, `/sensors`,
//! `/rover`, `/docs`); scripts, styles and icons are under `/ui/{file}`.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles, images and requests
//! only from this origin, no inline script or style, no framing. Answers are revalidated by
//! ETag (the content's hash), so a new binary's UI is seen at once.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The policy of every UI answer: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The pages: path and HTML file.
const PAGES: [(&str, &str); 6] = [
    ("/", "index.html"),
    ("/camera", "camera.html"),
    ("/review", "review.html"),
    ("/sensors", "sensors.html"),
    ("/rover", "rover.html"),
    ("/docs", "docs.html"),
];

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!("../ui/", $name)).as_slice())),*]
    };
}

/// Every file of `gateway/ui/`, by name.
const FILES: [(&str, &[u8]); 21] = files!(
    "index.html",
    "camera.html",
    "review.html",
    "sensors.html",
    "rover.html",
    "docs.html",
    "app.css",
    "icon.svg",
    "api.js",
    "dom.js",
    "chart.js",
    "sse.js",
    "overview.js",
    "camera.js",
    "review.js",
    "review-queue.js",
    "sensors.js",
    "rover.js",
    "docs.js",
    "LICENSE-NOTES.txt",
    "format.js",
);

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

fn file(name: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// One embedded file with the UI's headers (304 when the browser holds it already).
fn answer(name: &str, request: &HeaderMap) -> Response {
    let Some(bytes) = file(name) else {
        return ApiError::not_found(format!("no UI file {name:?}")).into_response();
    };
    let tag = etag(bytes);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(ETAG, value);
    }
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| given.split(',').any(|t| t.trim() == tag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    (headers, bytes).into_response()
}

/// The UI's routes: the pages and `/ui/{file}`.
pub fn routes() -> Router {
    let mut router = Router::new().route(
        "/ui/{file}",
        get(|Path(name): Path<String>, headers: HeaderMap| async move {
            if name.ends_with(".html") {
                return ApiError::not_found(format!("no UI file {name:?}")).into_response();
            }
            answer(&name, &headers)
        }),
    );
    for (path, name) in PAGES {
        router = router.route(
            path,
            get(move |headers: HeaderMap| async move { answer(name, &headers) }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_asset_is_embedded() {
        for (_, name) in PAGES {
            assert!(file(name).is_some(), "{name}");
        }
        for (name, bytes) in FILES {
            assert!(!bytes.is_empty(), "{name} is empty");
        }
    }

    #[test]
    fn pages_name_only_embedded_scripts_and_no_inline_script() {
        for (_, page) in PAGES {
            let html = std::str::from_utf8(file(page).unwrap()).unwrap();
            for tag in html.split("<script").skip(1) {
                let open = tag.split('>').next().unwrap();
                let src = open
                    .split("src=\"/ui/")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or_else(|| panic!("{page}: a script without a /ui/ src"));
                assert!(file(src).is_some(), "{page}: {src} is not embedded");
                assert!(tag[open.len() + 1..].starts_with("</script>"), "{page}: inline script");
            }
            assert!(!html.contains(" style=\""), "{page}: inline style");
            let handler = html.split(" on").skip(1).any(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "{page}: an inline event handler");
        }
    }

    #[test]
    fn the_policy_forbids_inline_script_and_foreign_sources() {
        assert!(CSP.contains("script-src 'self';"));
        assert!(!CSP.contains("unsafe"));
        assert!(CSP.contains("img-src 'self';"));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn answers_revalidate_by_etag() {
        let first = answer("app.css", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers().get(ETAG).unwrap().clone();
        assert!(first.headers().get(CONTENT_SECURITY_POLICY).is_some());
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, tag);
        assert_eq!(answer("app.css", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(answer("nope.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
