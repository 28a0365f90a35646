//! The OBS client's error type, and the classification a retry policy reads.
//!
//! Every failure of an OBS call lands in [`ObsError`], which knows its [`ErrorClass`]: repeat it
//! after a pause (5xx, `503 SlowDown`, a dropped connection, a timeout; every OBS call imsreg
//! makes is a read, so repeating is always safe), stop everything (the signature or the access
//! key was refused), or accept the answer as final (404, `AccessDenied`, ...). OBS error codes
//! come from the XML error body or, for a bodiless HEAD answer, from the `x-obs-error-code`
//! header. Messages are for humans and never contain secrets.

use std::time::Duration;

use crate::ims::auth::{ENV_AK, ENV_AUTH_TOKEN, ENV_SK};

/// An error answer from OBS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsApiError {
    pub status: u16,
    /// `NoSuchKey`, `NoSuchBucket`, `AccessDenied`, `SlowDown`, ...: from `x-obs-error-code`
    /// or the body's `<Code>`; `None` when the answer carried neither.
    pub code: Option<String>,
    pub message: Option<String>,
    /// `x-obs-request-id`, for support tickets.
    pub request_id: Option<String>,
    /// `Retry-After`, already capped, when the server sent one.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for ObsApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong with one OBS call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObsError {
    /// OBS answered with an error status.
    #[error("OBS refused {operation}: {error}")]
    Api {
        operation: String,
        error: ObsApiError,
    },
    /// The request never reached OBS (DNS, connection refused, TLS handshake).
    #[error("could not reach OBS at {endpoint}: {detail}")]
    NotSent { endpoint: String, detail: String },
    /// The request was sent but no complete answer came back (timeout, connection reset).
    #[error("no complete answer from OBS for {operation}: {detail}")]
    Interrupted { operation: String, detail: String },
    /// A ranged GET was answered with something else than the asked-for 206 slice (OBS answers
    /// a range it cannot parse with the whole object); nothing more was read.
    #[error("OBS did not answer {operation} with the requested byte range: {detail}")]
    RangeRefused { operation: String, detail: String },
    /// A success answer that is not what the API documents.
    #[error("unexpected answer from OBS for {operation}: {detail}")]
    Decode { operation: String, detail: String },
    /// Only an IAM token is configured: OBS needs a signature.
    #[error(
        "the OBS preflight needs AK/SK credentials: OBS does not accept the IAM token \
         ({ENV_AUTH_TOKEN}) that IMS takes; set {ENV_AK} and {ENV_SK} (or ak/sk in the \
         credentials file) to check the objects first"
    )]
    NeedsAkSk,
    /// Local configuration problem (bad endpoint, bad bucket name); nothing was sent.
    #[error("{0}")]
    Config(String),
}

/// What a failure means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Repeat after a pause; `throttled` marks `503 SlowDown` (slow the whole preflight down),
    /// `retry_after` is the server's hint.
    Retryable {
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// The signature, the access key or the clock was refused: stop at once, every further
    /// request would fail the same way (and repeated signature failures can lock an AK).
    AuthFailed,
    /// Will not succeed by repeating.
    Final,
}

/// 403 codes that mean "our credentials or clock", not "this object".
pub const AUTH_FAILURE_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "RequestTimeTooSkewed",
    "InvalidSecurity",
    "InvalidToken",
];

impl ObsError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ObsError::Api { error, .. } => classify_api_error(error),
            ObsError::NotSent { .. } | ObsError::Interrupted { .. } => ErrorClass::Retryable {
                retry_after: None,
                throttled: false,
            },
            ObsError::RangeRefused { .. }
            | ObsError::Decode { .. }
            | ObsError::NeedsAkSk
            | ObsError::Config(_) => ErrorClass::Final,
        }
    }

    /// The API error, when OBS answered with one.
    pub fn api(&self) -> Option<&ObsApiError> {
        match self {
            ObsError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// The OBS error code, when the answer carried one.
    pub fn code(&self) -> Option<&str> {
        self.api().and_then(|e| e.code.as_deref())
    }

    /// 404 `NoSuchBucket`.
    pub fn is_no_such_bucket(&self) -> bool {
        self.http_status() == Some(404) && self.code() == Some("NoSuchBucket")
    }

    /// 404 `NoSuchKey`.
    pub fn is_no_such_key(&self) -> bool {
        self.http_status() == Some(404) && self.code() == Some("NoSuchKey")
    }

    /// Any 404 (with or without a code).
    pub fn is_not_found(&self) -> bool {
        self.http_status() == Some(404)
    }

    /// A 403 about permissions (not about our signature or clock).
    pub fn is_access_denied(&self) -> bool {
        self.http_status() == Some(403) && self.class() == ErrorClass::Final
    }
}

/// Classifies an error answer (pure; unit-tested).
pub fn classify_api_error(error: &ObsApiError) -> ErrorClass {
    let code = error.code.as_deref().unwrap_or("");
    if error.status == 429 || code == "SlowDown" {
        return ErrorClass::Retryable {
            retry_after: error.retry_after,
            throttled: true,
        };
    }
    match error.status {
        403 if AUTH_FAILURE_CODES.contains(&code) => ErrorClass::AuthFailed,
        500..=599 => ErrorClass::Retryable {
            retry_after: error.retry_after,
            throttled: false,
        },
        _ => ErrorClass::Final,
    }
}

/// Reads `<Code>`, `<Message>` and `<RequestId>` from an OBS XML error body. A body that has
/// none of them gives `None`s (the caller falls back to the headers).
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body);
    (
        xml_element(&text, "Code"),
        xml_element(&text, "Message"),
        xml_element(&text, "RequestId"),
    )
}

/// The text of the first `<name>...</name>`, entities decoded, trimmed, non-empty. OBS error
/// bodies are flat, small, and attribute-free, so a full XML parser is not needed.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    let value = text[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> ObsError {
        ObsError::Api {
            operation: "HeadObject b:k".into(),
            error: ObsApiError {
                status,
                code: code.map(str::to_string),
                message: None,
                request_id: None,
                retry_after: None,
            },
        }
    }

    #[test]
    fn classification() {
        assert!(matches!(
            api(503, Some("SlowDown")).class(),
            ErrorClass::Retryable {
                throttled: true,
                ..
            }
        ));
        for status in [500, 502, 503, 504] {
            assert!(matches!(
                api(status, None).class(),
                ErrorClass::Retryable {
                    throttled: false,
                    ..
                }
            ));
        }
        for code in AUTH_FAILURE_CODES {
            assert_eq!(api(403, Some(code)).class(), ErrorClass::AuthFailed);
        }
        assert_eq!(api(403, Some("AccessDenied")).class(), ErrorClass::Final);
        assert_eq!(api(404, Some("NoSuchKey")).class(), ErrorClass::Final);
        assert_eq!(
            api(301, Some("PermanentRedirect")).class(),
            ErrorClass::Final
        );
        let dropped = ObsError::Interrupted {
            operation: "GetObject".into(),
            detail: "reset".into(),
        };
        assert!(matches!(dropped.class(), ErrorClass::Retryable { .. }));
        assert_eq!(ObsError::NeedsAkSk.class(), ErrorClass::Final);
    }

    #[test]
    fn not_found_kinds_are_told_apart() {
        assert!(api(404, Some("NoSuchBucket")).is_no_such_bucket());
        assert!(!api(404, Some("NoSuchBucket")).is_no_such_key());
        assert!(api(404, Some("NoSuchKey")).is_no_such_key());
        assert!(api(404, None).is_not_found() && !api(404, None).is_no_such_key());
        assert!(api(403, Some("AccessDenied")).is_access_denied());
        assert!(!api(403, Some("SignatureDoesNotMatch")).is_access_denied());
    }

    #[test]
    fn xml_error_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist &amp; never did.</Message>
<Resource>k</Resource><RequestId>0001</RequestId><HostId>h</HostId></Error>"#;
        assert_eq!(
            parse_error_body(body),
            (
                Some("NoSuchKey".into()),
                Some("The specified key does not exist & never did.".into()),
                Some("0001".into())
            )
        );
        assert_eq!(parse_error_body(b"<html>oops</html>"), (None, None, None));
        assert_eq!(parse_error_body(b"<Code>  </Code>").0, None);
    }

    #[test]
    fn messages_name_the_call_and_the_answer() {
        let mut err = api(404, Some("NoSuchKey"));
        if let ObsError::Api { error, .. } = &mut err {
            error.request_id = Some("r1".into());
        }
        assert_eq!(
            err.to_string(),
            "OBS refused HeadObject b:k: HTTP 404 NoSuchKey (request id r1)"
        );
        let needs = ObsError::NeedsAkSk.to_string();
        assert!(
            needs.contains(ENV_AK) && needs.contains("IAM token"),
            "{needs}"
        );
    }
}
