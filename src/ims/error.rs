//! The IMS client's error type, and the classification the pipeline's retry policy reads.
//!
//! Every failure of a call lands in [`ImsError`], which knows its [`ErrorClass`]: whether the
//! call may simply be repeated, whether it may have taken effect (so a non-idempotent register
//! must be checked before any re-send), whether the cloud asks us to wait for running tasks, or
//! whether it is final. Messages are for humans and never contain secrets.

use std::time::Duration;

/// An error answer from IMS or its API gateway, parsed from either body shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `IMG.xxxx`, `APIG.xxxx`, ...; the HTTP status as text when the body had none.
    pub code: String,
    pub message: String,
    /// `X-Request-Id` response header, for support tickets.
    pub request_id: Option<String>,
    /// `Retry-After`, already capped, when the server sent one.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong with one IMS call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImsError {
    /// The server answered with an error status.
    #[error("{0}")]
    Api(ApiError),
    /// The request never reached the server (DNS, connect refused, TLS handshake, a failure
    /// before the request was written). Always safe to repeat.
    #[error("could not reach IMS at {endpoint}: {detail}")]
    NotSent { endpoint: String, detail: String },
    /// The request may have reached the server but no complete answer was read (timeout after
    /// sending, connection reset mid-response). A register call must be checked before re-sending.
    #[error("no answer from IMS for {operation} (the request may have been processed): {detail}")]
    Ambiguous { operation: String, detail: String },
    /// The server answered 2xx with a body that is not what the API documents.
    #[error("unexpected answer from IMS for {operation}: {detail}")]
    Decode { operation: String, detail: String },
    /// Local configuration problem (bad endpoint, missing credentials); nothing was sent.
    #[error("{0}")]
    Config(String),
}

/// What a failure means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Repeat after a pause. `throttled` marks gateway throttling (429 / APIG.0308), on which the
    /// whole submitter slows down; `retry_after` is the server's hint, when given.
    Retryable {
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// May have taken effect: check the resource before any re-send.
    Ambiguous,
    /// IMS flow control (IMG.0060 too many tasks, IMG.0194 import limit): wait for running
    /// tasks to finish, then try again. Not a failure of the image.
    FlowControl,
    /// 401: credentials or signature rejected. Stop the whole run at once (the gateway locks an
    /// AK after repeated signature failures).
    AuthFailed,
    /// Will not succeed by repeating.
    Final,
}

/// Gateway throttling codes; both spellings occur.
pub const THROTTLING_CODES: &[&str] = &["APIG.0308", "APIGW.0308"];

/// IMS "later" codes: task flow control and the simultaneous-import limit.
pub const FLOW_CONTROL_CODES: &[&str] = &["IMG.0060", "IMG.0194"];

/// IMS "unknown system error": worth a bounded number of retries.
pub const UNKNOWN_SYSTEM_ERROR: &str = "IMG.0061";

impl ImsError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ImsError::Api(api) => classify_api_error(api),
            ImsError::NotSent { .. } => ErrorClass::Retryable {
                retry_after: None,
                throttled: false,
            },
            ImsError::Ambiguous { .. } => ErrorClass::Ambiguous,
            ImsError::Decode { .. } | ImsError::Config(_) => ErrorClass::Final,
        }
    }

    /// The IMS/gateway error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ImsError::Api(api) => Some(api.code.as_str()),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            ImsError::Api(api) => Some(api.status),
            _ => None,
        }
    }
}

/// Classifies an error answer (pure; unit-tested).
pub fn classify_api_error(api: &ApiError) -> ErrorClass {
    let code = api.code.as_str();
    if api.status == 429 || THROTTLING_CODES.contains(&code) {
        return ErrorClass::Retryable {
            retry_after: api.retry_after,
            throttled: true,
        };
    }
    if FLOW_CONTROL_CODES.contains(&code) {
        return ErrorClass::FlowControl;
    }
    if code == UNKNOWN_SYSTEM_ERROR {
        return ErrorClass::Retryable {
            retry_after: api.retry_after,
            throttled: false,
        };
    }
    match api.status {
        401 => ErrorClass::AuthFailed,
        500 | 502 | 503 | 504 => ErrorClass::Retryable {
            retry_after: api.retry_after,
            throttled: false,
        },
        _ => ErrorClass::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify_api_error(&api(429, "APIG.0308")),
            ErrorClass::Retryable {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            classify_api_error(&api(400, "APIGW.0308")),
            ErrorClass::Retryable {
                throttled: true,
                ..
            }
        ));
        assert_eq!(
            classify_api_error(&api(400, "IMG.0060")),
            ErrorClass::FlowControl
        );
        assert_eq!(
            classify_api_error(&api(400, "IMG.0194")),
            ErrorClass::FlowControl
        );
        assert_eq!(
            classify_api_error(&api(401, "APIG.0301")),
            ErrorClass::AuthFailed
        );
        assert_eq!(classify_api_error(&api(403, "IMG.0026")), ErrorClass::Final);
        assert_eq!(classify_api_error(&api(400, "IMG.0017")), ErrorClass::Final);
        assert_eq!(classify_api_error(&api(404, "404")), ErrorClass::Final);
        for status in [500, 502, 503, 504] {
            assert!(matches!(
                classify_api_error(&api(status, "x")),
                ErrorClass::Retryable {
                    throttled: false,
                    ..
                }
            ));
        }
    }
}
