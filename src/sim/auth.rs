//! Authentication as the API gateway does it: an `X-Auth-Token` equal to the configured token,
//! or an AK/SK signature recomputed from the request as received.
//!
//! The verifier rebuilds the canonical request from the wire (method, raw path, decoded query
//! pairs, the headers the client declared in `SignedHeaders`, the body) and signs it with the
//! project's own signer, so a client whose signature the simulator accepts is one the real
//! gateway accepts too.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use percent_encoding::percent_decode_str;

use super::config::Credentials;
use crate::ims::signer::{self, DATE_FORMAT, DATE_HEADER, SigningInput};

/// The parts of a received request the verifier needs. `Debug` shows header names only: the
/// values include `Authorization`, `X-Auth-Token` and `X-Security-Token`.
pub struct Received<'a> {
    pub method: &'a str,
    /// Path as on the wire (possibly percent-encoded).
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Received")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("header_names", &header_names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why a request was not authenticated (the text goes into the 401 body; no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "Incorrect IAM authentication information: Authorization header or X-Auth-Token missing"
    )]
    Missing,
    #[error("Incorrect IAM authentication information: token is invalid or expired")]
    BadToken,
    #[error("Incorrect IAM authentication information: Authorization header is malformed")]
    Malformed,
    #[error("Incorrect IAM authentication information: access key {0} does not exist")]
    UnknownAk(String),
    #[error("Incorrect IAM authentication information: X-Sdk-Date missing, unsigned or malformed")]
    BadDate,
    #[error(
        "Incorrect IAM authentication information: signature expired (X-Sdk-Date {date} is more than {skew_minutes} minutes from server time)"
    )]
    Expired { date: String, skew_minutes: u64 },
    #[error("Incorrect IAM authentication information: signed header {0} is missing")]
    MissingSignedHeader(String),
    #[error("Incorrect IAM authentication information: verify aksk signature fail")]
    BadSignature,
    #[error("Incorrect IAM authentication information: project {0} does not match the credentials")]
    WrongProject(String),
}

/// Splits a raw query string into decoded pairs, as the signer expects them.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    raw.unwrap_or("")
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(part), String::new()),
        })
        .collect()
}

/// Checks the request's credentials at time `now`.
pub fn verify(
    request: &Received<'_>,
    credentials: &Credentials,
    max_skew: Duration,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    if let Some(project) = signer::header_value(request.headers, "X-Project-Id")
        && project.trim() != credentials.project_id
    {
        return Err(AuthError::WrongProject(project.trim().to_string()));
    }
    if let Some(token) = signer::header_value(request.headers, "X-Auth-Token") {
        return if signer::signatures_match(&credentials.token, token.trim()) {
            Ok(())
        } else {
            Err(AuthError::BadToken)
        };
    }
    let authorization =
        signer::header_value(request.headers, "Authorization").ok_or(AuthError::Missing)?;
    let declared = signer::parse_authorization(authorization).ok_or(AuthError::Malformed)?;
    if declared.access_key != credentials.ak {
        return Err(AuthError::UnknownAk(declared.access_key.to_string()));
    }

    let date_name = DATE_HEADER.to_ascii_lowercase();
    if !declared.signed_headers.contains(&date_name.as_str()) {
        return Err(AuthError::BadDate);
    }
    let date = signer::header_value(request.headers, DATE_HEADER).ok_or(AuthError::BadDate)?;
    let signed_at = NaiveDateTime::parse_from_str(date.trim(), DATE_FORMAT)
        .map_err(|_| AuthError::BadDate)?
        .and_utc();
    let skew = (now - signed_at).abs().to_std().unwrap_or(Duration::MAX);
    if skew > max_skew {
        return Err(AuthError::Expired {
            date: date.trim().to_string(),
            skew_minutes: max_skew.as_secs() / 60,
        });
    }
    for name in &declared.signed_headers {
        if signer::header_value(request.headers, name).is_none() {
            return Err(AuthError::MissingSignedHeader(name.to_string()));
        }
    }

    let query = query_pairs(request.query);
    let expected = signer::sign(
        &SigningInput {
            method: request.method,
            path: request.path,
            query: &query,
            headers: request.headers,
            body: request.body,
        },
        credentials.sk.as_bytes(),
        Some(&declared.signed_headers),
    );
    if signer::signatures_match(&expected.signature, declared.signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::default()
    }

    /// Signs like a client would, returning the headers to send.
    fn signed(
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
        sk: &str,
        ak: &str,
        now: DateTime<Utc>,
    ) -> Vec<(String, String)> {
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Project-Id".to_string(), creds().project_id),
        ];
        signer::prepare_headers(&mut headers, "127.0.0.1:8080", now);
        let sig = signer::sign(
            &SigningInput {
                method,
                path,
                query,
                headers: &headers,
                body,
            },
            sk.as_bytes(),
            None,
        );
        headers.push(("Authorization".to_string(), sig.authorization(ak)));
        headers
    }

    fn check(
        headers: &[(String, String)],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(), AuthError> {
        verify(
            &Received {
                method: "GET",
                path: "/v2/cloudimages",
                query,
                headers,
                body,
            },
            &creds(),
            Duration::from_secs(900),
            Utc::now(),
        )
    }

    #[test]
    fn good_signature_with_query_is_accepted() {
        let q = vec![
            ("__imagetype".to_string(), "private".to_string()),
            ("id".to_string(), "a b".to_string()),
        ];
        let c = creds();
        let headers = signed("GET", "/v2/cloudimages", &q, b"", &c.sk, &c.ak, Utc::now());
        let wire = signer::canonical_query(&q);
        assert_eq!(check(&headers, Some(&wire), b""), Ok(()));
        // A tampered query no longer matches.
        assert_eq!(
            check(&headers, Some("__imagetype=gold&id=a%20b"), b""),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn wrong_key_ak_or_stale_date_are_rejected() {
        let c = creds();
        let bad_sk = signed(
            "GET",
            "/v2/cloudimages",
            &[],
            b"",
            "other",
            &c.ak,
            Utc::now(),
        );
        assert_eq!(check(&bad_sk, None, b""), Err(AuthError::BadSignature));
        let bad_ak = signed(
            "GET",
            "/v2/cloudimages",
            &[],
            b"",
            &c.sk,
            "NOPE",
            Utc::now(),
        );
        assert_eq!(
            check(&bad_ak, None, b""),
            Err(AuthError::UnknownAk("NOPE".into()))
        );
        let old = Utc::now() - chrono::Duration::minutes(16);
        let stale = signed("GET", "/v2/cloudimages", &[], b"", &c.sk, &c.ak, old);
        assert!(matches!(
            check(&stale, None, b""),
            Err(AuthError::Expired { .. })
        ));
        let recent = Utc::now() - chrono::Duration::minutes(14);
        let fine = signed("GET", "/v2/cloudimages", &[], b"", &c.sk, &c.ak, recent);
        assert_eq!(check(&fine, None, b""), Ok(()));
    }

    #[test]
    fn tokens_and_missing_auth() {
        let token = vec![("X-Auth-Token".to_string(), creds().token)];
        assert_eq!(check(&token, None, b""), Ok(()));
        let wrong = vec![("X-Auth-Token".to_string(), "nope".to_string())];
        assert_eq!(check(&wrong, None, b""), Err(AuthError::BadToken));
        assert_eq!(check(&[], None, b""), Err(AuthError::Missing));
        let other_project = vec![
            ("X-Auth-Token".to_string(), creds().token),
            ("X-Project-Id".to_string(), "ffff".to_string()),
        ];
        assert!(matches!(
            check(&other_project, None, b""),
            Err(AuthError::WrongProject(_))
        ));
    }

    #[test]
    fn received_requests_print_without_credentials() {
        let c = creds();
        let mut headers = signed("GET", "/v2/cloudimages", &[], b"", &c.sk, &c.ak, Utc::now());
        headers.push(("X-Auth-Token".to_string(), c.token.clone()));
        headers.push((
            "X-Security-Token".to_string(),
            "st-never-printed".to_string(),
        ));
        let signature =
            signer::parse_authorization(signer::header_value(&headers, "Authorization").unwrap())
                .unwrap()
                .signature
                .to_string();
        let received = Received {
            method: "GET",
            path: "/v2/cloudimages",
            query: None,
            headers: &headers,
            body: b"",
        };
        let printed = format!("{received:?} {:?}", c);
        for secret in [&c.sk, &c.token, &signature, "st-never-printed"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("Authorization") && printed.contains(&c.ak));
    }

    #[test]
    fn query_pairs_decode() {
        assert_eq!(
            query_pairs(Some("a=1&b=x%20y&c")),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y".to_string()),
                ("c".to_string(), String::new())
            ]
        );
        assert!(query_pairs(None).is_empty());
    }
}
