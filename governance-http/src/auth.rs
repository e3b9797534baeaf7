//! Bearer-token authentication and the WebSocket `Origin` check.
//!
//! With [`crate::HttpSettings::api_token`] set, every `/api/*` request, `/ws` and `/metrics`
//! (unless [`crate::HttpSettings::metrics_public`]) need `Authorization: Bearer <token>`. Browsers cannot set headers on `WebSocket` or
//! `EventSource`, so `/ws` and `/api/events` also accept `?token=<token>`; the token then
//! appears in the URL, which this server never logs (the trace layer records the path only).
//! Tokens are compared in constant time (SHA-256 of both sides, then `subtle`).

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Whether `given` equals `expected`, in time independent of where they differ.
#[must_use]
pub fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Middleware: refuses requests without the right token (401) when a token is configured.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.settings().api_token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    let streaming = path == "/ws" || path == "/api/events";
    let given = bearer(req.headers()).map(str::to_owned).or_else(|| {
        if streaming {
            query_token(req.uri().query())
        } else {
            None
        }
    });
    match given {
        Some(t) if token_matches(&t, expected.expose_secret()) => next.run(req).await,
        _ => {
            let mut resp = ApiError::unauthorized().into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}

/// Whether a WebSocket handshake's `Origin` is acceptable: absent (not a browser), the
/// server's own `Host`, or one of `allowed` (compared as `scheme://host[:port]`, case-insensitive).
#[must_use]
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// Refuses to listen on a non-loopback address without an API token unless `allow_insecure`
/// (`GOVERNANCE_ALLOW_INSECURE=true`) says so.
///
/// # Errors
/// A message naming the variables to set.
pub fn check_bind(addr: SocketAddr, has_token: bool, allow_insecure: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || has_token || allow_insecure {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on non-loopback address {addr} without GOVERNANCE_API_TOKEN \
             (set GOVERNANCE_API_TOKEN, bind 127.0.0.1, or set GOVERNANCE_ALLOW_INSECURE=true)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("", "abc"));
    }

    #[test]
    fn decodes_query_tokens() {
        assert_eq!(
            query_token(Some("a=1&token=x%2By+z")).as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_token(Some("token=%zz")).as_deref(), Some("%zz"));
        assert_eq!(query_token(Some("token=%4")).as_deref(), Some("%4"));
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn refuses_open_bind_without_token() {
        let open: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert!(check_bind(open, false, false).is_err());
        assert!(check_bind(open, true, false).is_ok());
        assert!(check_bind(open, false, true).is_ok());
        assert!(check_bind(local, false, false).is_ok());
    }

    #[test]
    fn checks_origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "http://127.0.0.1:3000".parse().unwrap());
        assert!(origin_allowed(&h, &[]));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &[]));
        assert!(origin_allowed(&h, &["http://evil.example/".into()]));
    }
}
