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

    /// The text for a report's `error_message`, whose `error_code` already carries the code:
    /// the server's message with the HTTP status and request id after it, or the whole error
    /// when the server sent none.
    pub fn message_without_code(&self) -> String {
        match self {
            ImsError::Api(api) => {
                let mut text = format!("{} (HTTP {}", api.message, api.status);
                if let Some(id) = &api.request_id {
                    text.push_str(&format!(", request id {id}"));
                }
                text.push(')');
                text
            }
            other => other.to_string(),
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

/// The longest pause a `Retry-After` header may impose; longer hints are cut to this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// How much of an unparsable error body is kept as the message.
const RAW_MESSAGE_LIMIT: usize = 200;

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (relative to `now`), capped at
/// [`RETRY_AFTER_CAP`]. A date in the past gives zero; anything unreadable gives `None`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

/// Builds an [`ApiError`] from an error answer, reading the body the way the SDK's
/// `DefaultExceptionHandler` does: the key pairs `error_code`/`error_msg`, `errorCode`/`errorMsg`,
/// `code`/`message` at the top level, else recursively in nested objects (which is how
/// `{"error": {"code", "message"}}` is read). An unreadable body gives the HTTP status as the
/// code and a short excerpt of the text as the message. `request_id` (the `X-Request-Id`
/// header) falls back to a `request_id` field of the body.
pub fn parse_error_body(
    status: u16,
    reason: &str,
    body: &[u8],
    request_id: Option<String>,
    retry_after: Option<Duration>,
) -> ApiError {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let found = json.as_ref().and_then(|v| find_code_and_message(v, 0));
    let body_request_id = json
        .as_ref()
        .and_then(|v| v.get("request_id"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let raw = excerpt(&String::from_utf8_lossy(body), RAW_MESSAGE_LIMIT);
    let fallback_message = || {
        if raw.is_empty() {
            reason.to_string()
        } else {
            raw.clone()
        }
    };
    let (code, message) = match found {
        Some((code, Some(message))) => (code, message),
        Some((code, None)) => (code, fallback_message()),
        None => (status.to_string(), fallback_message()),
    };
    ApiError {
        status,
        code,
        message,
        request_id: request_id.or(body_request_id),
        retry_after,
    }
}

/// The SDK's key pairs, in the order it tries them.
const CODE_MESSAGE_KEYS: &[(&str, &str)] = &[
    ("error_code", "error_msg"),
    ("errorCode", "errorMsg"),
    ("code", "message"),
];

fn find_code_and_message(
    value: &serde_json::Value,
    depth: usize,
) -> Option<(String, Option<String>)> {
    let object = value.as_object()?;
    // A complete pair at this level, as the SDK requires.
    for (code_key, message_key) in CODE_MESSAGE_KEYS {
        if let Some(code) = object.get(*code_key).and_then(scalar_text)
            && let Some(message) = object.get(*message_key)
        {
            return Some((code, scalar_text(message)));
        }
    }
    if depth < 4
        && let Some(found) = object
            .values()
            .filter(|v| v.is_object())
            .find_map(|v| find_code_and_message(v, depth + 1))
    {
        return Some(found);
    }
    // A lone code is still better than the bare HTTP status (the SDK would drop it).
    CODE_MESSAGE_KEYS
        .iter()
        .find_map(|(code_key, _)| object.get(*code_key).and_then(scalar_text))
        .map(|code| (code, None))
}

/// A non-empty string or number as text.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// The first `limit` characters of `text` on one line, with `...` when cut.
pub fn excerpt(text: &str, limit: usize) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
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
    fn report_messages_leave_the_code_to_its_own_field() {
        let mut refused = api(400, "IMG.0057");
        refused.message = "The image file is invalid".into();
        refused.request_id = Some("req-1".into());
        let error = ImsError::Api(refused);
        assert_eq!(
            error.message_without_code(),
            "The image file is invalid (HTTP 400, request id req-1)"
        );
        assert_eq!(error.code(), Some("IMG.0057"));
        let unreachable = ImsError::NotSent {
            endpoint: "https://ims.example".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(unreachable.message_without_code(), unreachable.to_string());
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

    #[test]
    fn error_bodies_of_every_shape() {
        let ims = parse_error_body(
            400,
            "Bad Request",
            br#"{"error":{"code":"IMG.0024","message":"The imagetype is invalid."}}"#,
            Some("rid".into()),
            None,
        );
        assert_eq!(
            (ims.code.as_str(), ims.message.as_str()),
            ("IMG.0024", "The imagetype is invalid.")
        );
        assert_eq!(ims.request_id.as_deref(), Some("rid"));

        let apig = parse_error_body(
            429,
            "Too Many Requests",
            br#"{"error_code":"APIG.0308","error_msg":"over ratelimit","request_id":"r2"}"#,
            None,
            None,
        );
        assert_eq!(
            (apig.code.as_str(), apig.request_id.as_deref()),
            ("APIG.0308", Some("r2"))
        );

        let camel = parse_error_body(
            400,
            "",
            br#"{"errorCode":"X.1","errorMsg":"m"}"#,
            None,
            None,
        );
        assert_eq!((camel.code.as_str(), camel.message.as_str()), ("X.1", "m"));

        // error_code/error_msg wins over code/message at the same level.
        let both = parse_error_body(
            400,
            "",
            br#"{"code":"C","message":"c","error_code":"E","error_msg":"e"}"#,
            None,
            None,
        );
        assert_eq!(both.code, "E");

        // A complete nested pair beats a lone top-level code; a lone code beats the status.
        let nested = parse_error_body(
            400,
            "",
            br#"{"code":"TOP","error":{"code":"IMG.0001","message":"bad"}}"#,
            None,
            None,
        );
        assert_eq!(
            (nested.code.as_str(), nested.message.as_str()),
            ("IMG.0001", "bad")
        );
        let lone = parse_error_body(400, "", br#"{"code":"ONLY"}"#, None, None);
        assert_eq!(
            (lone.code.as_str(), lone.message.as_str()),
            ("ONLY", r#"{"code":"ONLY"}"#)
        );

        let numeric = parse_error_body(
            404,
            "",
            br#"{"itemNotFound":{"code":404,"message":"gone"}}"#,
            None,
            None,
        );
        assert_eq!(
            (numeric.code.as_str(), numeric.message.as_str()),
            ("404", "gone")
        );

        let html = "<html>".to_string() + &"x".repeat(1000);
        let raw = parse_error_body(502, "Bad Gateway", html.as_bytes(), None, None);
        assert_eq!(raw.code, "502");
        assert!(raw.message.starts_with("<html>") && raw.message.ends_with("..."));
        assert!(raw.message.len() < 220);

        let empty = parse_error_body(503, "Service Unavailable", b"", None, None);
        assert_eq!(
            (empty.code.as_str(), empty.message.as_str()),
            ("503", "Service Unavailable")
        );
    }

    #[test]
    fn retry_after_both_forms_capped() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("3600", now), Some(RETRY_AFTER_CAP));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(5)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
