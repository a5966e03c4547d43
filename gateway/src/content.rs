//! Headers of user content (stored objects, images, plots) served to browsers: never rendered
//! as a page of this origin. Every answer is `nosniff` with `Content-Security-Policy: sandbox`
//! (no script runs, no same-origin access, even for an SVG opened on its own); types outside a
//! small allowlist are served as `application/octet-stream` with `Content-Disposition:
//! attachment`.

use http::HeaderMap;
use http::header::{CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};

/// Types shown inline: images, plots and data.
pub const INLINE_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/svg+xml",
    "application/json",
];

/// The headers of user content of `content_type`.
pub fn headers(content_type: &str) -> HeaderMap {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let mut headers = HeaderMap::new();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    match INLINE_TYPES.iter().find(|t| **t == essence) {
        Some(inline) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(inline));
        }
        None => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_content_never_renders_as_a_page() {
        for risky in [
            "text/html",
            "text/html; charset=utf-8",
            "application/javascript",
            "",
            "x",
        ] {
            let h = headers(risky);
            assert_eq!(h[CONTENT_TYPE], "application/octet-stream", "{risky}");
            assert_eq!(h[CONTENT_DISPOSITION], "attachment", "{risky}");
            assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[CONTENT_SECURITY_POLICY], "sandbox");
        }
        let png = headers("image/PNG");
        assert_eq!(png[CONTENT_TYPE], "image/png");
        assert!(png.get(CONTENT_DISPOSITION).is_none());
        assert_eq!(png[CONTENT_SECURITY_POLICY], "sandbox");
        assert_eq!(
            headers("application/json; charset=utf-8")[CONTENT_TYPE],
            "application/json"
        );
    }
}
