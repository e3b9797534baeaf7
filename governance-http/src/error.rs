//! The one JSON error shape of the API, `{"error": {"code": "...", "message": "..."}}`, the
//! mapping of [`governance_core::ErrorKind`] to HTTP statuses, and extractors whose rejections
//! use the same shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use governance_core::{Error, ErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An API error: an HTTP status, a stable machine-readable `code` and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`invalid_input`, `not_found`, `unauthorized`, ...).
    pub code: &'static str,
    /// Human-readable message; never contains a secret.
    pub message: String,
    /// Seconds the client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_input`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 401 `unauthorized` (missing or wrong API token).
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API token (send `Authorization: Bearer <token>`)",
        )
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The JSON body of this error.
    #[must_use]
    pub fn body(&self) -> String {
        serde_json::to_string(&Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        })
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"error"}}"#.to_owned())
    }
}

/// The HTTP status an engine error kind maps to.
///
/// | kind | status |
/// |---|---|
/// | `invalid_input` | 400 |
/// | `not_found` | 404 |
/// | `conflict`, `invalid_transition`, `revoked`, `cancelled` | 409 |
/// | `budget_exceeded`, `procedure_violation` | 422 |
/// | `llm`, `unauthorized` (the provider refused *our* key), `malformed_output` | 502 |
/// | `backend`, `circuit_open` | 503 |
/// | `timeout` | 504 |
/// | `config`, `internal` and anything newer | 500 |
#[must_use]
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict
        | ErrorKind::InvalidTransition
        | ErrorKind::Revoked
        | ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::BudgetExceeded | ErrorKind::ProcedureViolation => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorKind::Llm | ErrorKind::Unauthorized | ErrorKind::MalformedOutput => {
            StatusCode::BAD_GATEWAY
        }
        ErrorKind::Backend | ErrorKind::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let status = status_for(kind);
        if status.is_server_error() {
            tracing::warn!(error = %e, kind = %kind, "request failed");
        }
        let code = match kind {
            // keep "unauthorized" for our own 401: this one is the upstream provider's refusal
            ErrorKind::Unauthorized => "upstream_unauthorized",
            other => other.as_str(),
        };
        Self {
            status,
            code,
            message: e.to_string(),
            retry_after: e.retry_after().map(|d| d.as_secs().max(1)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match &r {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is larger than the server accepts",
                )
            }
            JsonRejection::BytesRejection(_) => Self::bad_request("could not read request body"),
            _ => Self::bad_request(r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (400 malformed, 415 wrong content type, 413
/// too large).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// A pipeline id taken from the path and validated with [`governance_core::PipelineId::new`]
/// (400 when invalid).
#[derive(Debug, Clone)]
pub struct PathId(pub governance_core::PipelineId);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(parse_id(&raw)?))
    }
}

/// Validates a raw pipeline id (400 `invalid_input` when it is not `[A-Za-z0-9_-]{1,64}`).
///
/// # Errors
/// [`ApiError`] 400.
pub fn parse_id(raw: &str) -> Result<governance_core::PipelineId, ApiError> {
    governance_core::PipelineId::new(raw).map_err(ApiError::from)
}

/// Turns bodiless error responses produced by layers (405, 408, 413, ...) into the JSON error
/// shape, so every error a client sees has the same form.
pub async fn json_error_bodies(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "request body is larger than the server accepts",
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported media type"),
        s if s.is_client_error() => ("bad_request", "bad request"),
        _ => ("internal", "internal server error"),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
