//! The API token: when `OUTPOST_API_TOKEN` is set, every write needs `Authorization: Bearer
//! <token>`, over HTTP (the gateway) and over gRPC (every service), and calls between services
//! carry it. Reads stay open: over gRPC, `Get*`, `List*`, `Watch*` and `Download*` methods,
//! health and reflection.

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The configured token, kept as its SHA-256 (compared in constant time), and as text to send.
#[derive(Clone, Default)]
pub struct Token(Option<Arc<(String, [u8; 32])>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Token(set)" } else { "Token(none)" })
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Token {
    /// From the configured token (`None` or blank: no token required).
    pub fn new(token: Option<&str>) -> Self {
        Self(
            token
                .filter(|t| !t.trim().is_empty())
                .map(|t| Arc::new((t.to_string(), digest(t)))),
        )
    }

    /// Whether a token is required.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The `authorization` value calls to other services carry: `Bearer <token>`.
    pub fn header(&self) -> Option<String> {
        self.0.as_ref().map(|t| format!("Bearer {}", t.0))
    }

    /// Whether an `authorization` value passes: always without a token; else `Bearer <token>`
    /// (the scheme in any case). The comparison takes the same time whatever was given.
    pub fn admits(&self, authorization: Option<&str>) -> Result<(), &'static str> {
        let Some(expected) = &self.0 else {
            return Ok(());
        };
        let given = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match given {
            None => Err("this call needs Authorization: Bearer <token>"),
            Some(given) if !constant_time_eq(&digest(given), &expected.1) => Err("invalid bearer token"),
            Some(_) => Ok(()),
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a gRPC method (`/package.Service/Method`) only reads: `Get*`, `List*`, `Watch*`,
/// `Download*`, and every method of health and reflection.
pub fn reads_only(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    service.starts_with("grpc.health.")
        || service.starts_with("grpc.reflection.")
        || ["Get", "List", "Watch", "Download"].iter().any(|verb| {
            method
                .strip_prefix(verb)
                .is_some_and(|rest| rest.starts_with(char::is_uppercase))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_by_digest() {
        let token = Token::new(Some("s3cret"));
        assert!(token.admits(Some("Bearer s3cret")).is_ok());
        assert!(token.admits(Some("bearer  s3cret ")).is_ok());
        assert!(token.admits(Some("Bearer s3cres")).is_err());
        assert!(token.admits(Some("Basic s3cret")).is_err());
        assert!(token.admits(None).is_err());
        assert_eq!(token.header().as_deref(), Some("Bearer s3cret"));
        assert!(Token::new(Some("  ")).admits(None).is_ok());
        assert!(Token::new(None).admits(None).is_ok() && !Token::new(None).is_set());
    }

    #[test]
    fn reads_are_named_by_their_verb() {
        for read in [
            "/outpost.media.v1.MediaService/GetImage",
            "/outpost.media.v1.MediaService/ListImages",
            "/outpost.ingest.v1.IngestService/WatchRun",
            "/outpost.media.v1.MediaService/DownloadObject",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(reads_only(read), "{read}");
        }
        for write in [
            "/outpost.telemetry.v1.TelemetryService/CreateDevice",
            "/outpost.telemetry.v1.TelemetryService/DeleteDevice",
            "/outpost.media.v1.MediaService/ReviewImage",
            "/outpost.media.v1.MediaService/Getaway",
            "/outpost.telemetry.v1.TelemetryService/ExportSnapshot",
        ] {
            assert!(!reads_only(write), "{write}");
        }
    }
}
