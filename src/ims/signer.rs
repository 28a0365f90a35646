//! AK/SK request signing (`SDK-HMAC-SHA256`), byte for byte as Huawei Cloud's official SDK
//! signer (`huaweicloudsdkcore.signer.signer.Signer`) does it.
//!
//! The same code serves both sides: the client signs outgoing requests, and the simulator
//! rebuilds the canonical request from what it received and checks the signature. Everything
//! here is pure (no clock, no I/O) so it is tested against the SDK's own vectors in
//! `../shared/testdata/aksk-vectors.json`.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The algorithm name that opens the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// The header that carries the signing time, `%Y%m%dT%H%M%SZ` in UTC.
pub const DATE_HEADER: &str = "X-Sdk-Date";

/// `strftime`-style format of [`DATE_HEADER`].
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// SHA-256 of the empty string: the payload hash of a request without a body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Everything except `A-Z a-z 0-9 - _ . ~` is percent-encoded (RFC 3986 unreserved).
const SDK_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The parts of an HTTP request that the signature covers.
///
/// `headers` must already hold every header that will be sent and signed, including `Host` and
/// `X-Sdk-Date` (see [`prepare_headers`]). They may be owned (`String`) or borrowed (`&str`).
/// `Debug` shows header names only: the values include `X-Security-Token`.
#[derive(Clone, Copy)]
pub struct SigningInput<'a, H = String> {
    pub method: &'a str,
    /// The path as it goes on the wire (may be percent-encoded).
    pub path: &'a str,
    /// Raw (un-encoded) query pairs, in any order.
    pub query: &'a [(String, String)],
    pub headers: &'a [(H, H)],
    pub body: &'a [u8],
}

/// The result of signing: the header value plus the intermediate strings (for comparing with
/// what the gateway computed). `Debug` shows only the signed header names: the canonical request
/// holds the security token, and the signature authenticates a request until its date expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    /// Lower-case hex HMAC.
    pub signature: String,
}

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "***";

impl<H: AsRef<str>> fmt::Debug for SigningInput<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_ref()).collect();
        f.debug_struct("SigningInput")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("header_names", &header_names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("canonical_request", &format_args!("{REDACTED}"))
            .field("string_to_sign", &format_args!("{REDACTED}"))
            .field("signed_headers", &self.signed_headers)
            .field("signature", &format_args!("{REDACTED}"))
            .finish()
    }
}

impl Signature {
    /// The full `Authorization` header value.
    pub fn authorization(&self, access_key: &str) -> String {
        format!(
            "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={}",
            self.signed_headers, self.signature
        )
    }
}

/// Percent-encodes one path segment or query component as the SDK does (upper-case hex,
/// space as `%20`).
pub fn sdk_escape(raw: &str) -> String {
    utf8_percent_encode(raw, SDK_ESCAPE).to_string()
}

/// The canonical URI: decode, split on `/`, encode each segment, re-join, ensure a trailing `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut uri = String::with_capacity(path.len() + 1);
    push_canonical_uri(&mut uri, path);
    uri
}

fn push_canonical_uri(out: &mut String, path: &str) {
    let start = out.len();
    let plain = path
        .bytes()
        .all(|b| b == b'/' || b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if plain {
        // Decoding and re-encoding would give the same text back.
        out.push_str(path);
    } else {
        let decoded = percent_decode_str(path).decode_utf8_lossy();
        for (i, segment) in decoded.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.extend(utf8_percent_encode(segment, SDK_ESCAPE));
        }
    }
    if !out[start..].ends_with('/') {
        out.push('/');
    }
}

/// The canonical query string: pairs sorted by raw key then raw value, then encoded.
///
/// The SDK sends exactly this string as the URL query, so a client must too.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut text = String::new();
    push_canonical_query(&mut text, query);
    text
}

fn push_canonical_query(out: &mut String, query: &[(String, String)]) {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(utf8_percent_encode(key, SDK_ESCAPE));
        out.push('=');
        out.extend(utf8_percent_encode(value, SDK_ESCAPE));
    }
}

/// Headers whose names contain `_` are sent but not signed.
fn is_signed_header(name: &str) -> bool {
    !name.contains('_') && !name.eq_ignore_ascii_case("authorization")
}

/// Lower-case hex, a byte at a time (`hex::encode` goes a char at a time; two digests are
/// encoded per signed request).
fn lower_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex(&mut text, bytes);
    text
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
}

/// Finds a header by case-insensitive name.
pub fn header_value<'h, H: AsRef<str>>(headers: &'h [(H, H)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

fn push_payload_hash<H: AsRef<str>>(out: &mut String, headers: &[(H, H)], body: &[u8]) {
    if body.is_empty() {
        out.push_str(EMPTY_BODY_SHA256);
        return;
    }
    match header_value(headers, "X-Sdk-Content-Sha256") {
        Some(declared) => out.push_str(declared),
        None => push_hex(out, &Sha256::digest(body)),
    }
}

/// Builds the canonical request and signs it with `secret_key`.
///
/// `signed_header_names`, when given, restricts the signed set to those names (the verifying
/// side uses the list the client declared); otherwise every eligible header is signed.
pub fn sign<H: AsRef<str>>(
    input: &SigningInput<'_, H>,
    secret_key: &[u8],
    signed_header_names: Option<&[&str]>,
) -> Signature {
    let mut signed: Vec<(Cow<'_, str>, &str)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.as_ref(), value.as_ref()))
        .filter(|(name, _)| is_signed_header(name))
        .map(|(name, value)| (lower_case(name), value))
        .filter(|(name, _)| signed_header_names.is_none_or(|only| only.contains(&name.as_ref())))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));

    // METHOD \n URI \n QUERY \n (name:value \n)* \n SIGNED;HEADERS \n PAYLOAD-HASH
    let mut canonical_request = String::with_capacity(256 + input.path.len());
    canonical_request.extend(input.method.chars().map(|c| c.to_ascii_uppercase()));
    canonical_request.push('\n');
    push_canonical_uri(&mut canonical_request, input.path);
    canonical_request.push('\n');
    push_canonical_query(&mut canonical_request, input.query);
    canonical_request.push('\n');
    for (name, value) in &signed {
        canonical_request.push_str(name);
        canonical_request.push(':');
        canonical_request.push_str(value.trim());
        canonical_request.push('\n');
    }
    canonical_request.push('\n');
    let signed_headers_start = canonical_request.len();
    for (i, (name, _)) in signed.iter().enumerate() {
        if i > 0 {
            canonical_request.push(';');
        }
        canonical_request.push_str(name);
    }
    let signed_headers = canonical_request[signed_headers_start..].to_string();
    canonical_request.push('\n');
    push_payload_hash(&mut canonical_request, input.headers, input.body);

    let date = header_value(input.headers, DATE_HEADER).unwrap_or_default();
    let mut string_to_sign = String::with_capacity(ALGORITHM.len() + date.len() + 66);
    string_to_sign.push_str(ALGORITHM);
    string_to_sign.push('\n');
    string_to_sign.push_str(date);
    string_to_sign.push('\n');
    push_hex(
        &mut string_to_sign,
        &Sha256::digest(canonical_request.as_bytes()),
    );
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret_key).expect("HMAC accepts any key length");
    mac.update(string_to_sign.as_bytes());
    let signature = lower_hex(&mac.finalize().into_bytes());

    Signature {
        canonical_request,
        string_to_sign,
        signed_headers,
        signature,
    }
}

/// `name` in lower case, copied only when it has upper-case letters.
fn lower_case(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Adds what the SDK adds before signing: `X-Sdk-Date` (if absent, from `now`), `Host` (if
/// absent), and trims every header value the way the SDK sends them.
pub fn prepare_headers(
    headers: &mut Vec<(String, String)>,
    host: &str,
    now: chrono::DateTime<chrono::Utc>,
) {
    for (_, value) in headers.iter_mut() {
        let trimmed = value.trim();
        if trimmed.len() != value.len() {
            *value = trimmed.to_string();
        }
    }
    if header_value(headers, DATE_HEADER).is_none() {
        headers.push((DATE_HEADER.to_string(), sdk_date(now)));
    }
    if header_value(headers, "Host").is_none() {
        headers.push(("Host".to_string(), host.to_string()));
    }
}

/// `now` as [`DATE_FORMAT`] writes it, without interpreting the format string on every
/// request.
pub fn sdk_date(now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A parsed `Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...`.
/// `Debug` leaves the signature out.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationHeader<'a> {
    pub access_key: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

impl fmt::Debug for AuthorizationHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationHeader")
            .field("access_key", &self.access_key)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &format_args!("{REDACTED}"))
            .finish()
    }
}

/// Parses an `Authorization` header value; `None` if it is not an `SDK-HMAC-SHA256` one.
pub fn parse_authorization(value: &str) -> Option<AuthorizationHeader<'_>> {
    let rest = value.trim().strip_prefix(ALGORITHM)?.trim_start();
    let mut access_key = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Access" => access_key = Some(val),
            "SignedHeaders" => signed_headers = Some(val.split(';').collect()),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }
    Some(AuthorizationHeader {
        access_key: access_key?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// Compares two signatures in constant time (the verifier side).
pub fn signatures_match(expected: &str, received: &str) -> bool {
    let (a, b) = (expected.as_bytes(), received.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_complete() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
    }

    #[test]
    fn the_date_header_matches_its_format() {
        for raw in ["2024-11-06T07:04:05Z", "0999-01-31T23:59:59Z"] {
            let now = chrono::DateTime::parse_from_rfc3339(raw)
                .unwrap()
                .with_timezone(&chrono::Utc);
            assert_eq!(sdk_date(now), now.format(DATE_FORMAT).to_string());
        }
    }

    #[test]
    fn canonical_uri_appends_slash_and_reencodes() {
        assert_eq!(canonical_uri("/v2/cloudimages"), "/v2/cloudimages/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a%20b/c d"), "/a%20b/c%20d/");
    }

    #[test]
    fn canonical_query_sorts_raw_then_encodes() {
        let q = vec![
            ("k:".to_string(), "1".to_string()),
            ("k9".to_string(), "2".to_string()),
            ("Zeta".to_string(), "".to_string()),
        ];
        assert_eq!(canonical_query(&q), "Zeta=&k9=2&k%3A=1");
    }

    #[test]
    fn authorization_round_trips() {
        let header = "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=abc";
        let parsed = parse_authorization(header).unwrap();
        assert_eq!(parsed.access_key, "AK");
        assert_eq!(parsed.signed_headers, vec!["host", "x-sdk-date"]);
        assert_eq!(parsed.signature, "abc");
        assert!(parse_authorization("Bearer xyz").is_none());
    }

    #[test]
    fn debug_output_leaves_secrets_out() {
        let token = "tok-DEBUG-5ecret-never-printed";
        let headers = vec![
            ("X-Security-Token".to_string(), token.to_string()),
            (DATE_HEADER.to_string(), "20240101T000000Z".to_string()),
            ("Host".to_string(), "ims.example.com".to_string()),
        ];
        let input = SigningInput {
            method: "GET",
            path: "/v2/cloudimages",
            query: &[],
            headers: &headers,
            body: b"",
        };
        let signature = sign(&input, b"sk-DEBUG-5ecret-never-printed", None);
        // The secrets are there to be hidden: the canonical request carries the token.
        assert!(signature.canonical_request.contains(token));
        let header = signature.authorization("AKDEBUG");
        let parsed = parse_authorization(&header).unwrap();
        for printed in [
            format!("{input:?}"),
            format!("{signature:?}"),
            format!("{signature:#?}"),
            format!("{parsed:?}"),
        ] {
            assert!(!printed.contains("5ecret"), "{printed}");
            assert!(!printed.contains(&signature.signature), "{printed}");
            assert!(!printed.contains(&signature.string_to_sign), "{printed}");
        }
        // What is not secret stays visible.
        assert!(format!("{input:?}").contains("X-Security-Token"));
        assert!(format!("{signature:?}").contains("host;x-sdk-date;x-security-token"));
        assert!(format!("{parsed:?}").contains("AKDEBUG"));
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_match("abcd", "abcd"));
        assert!(!signatures_match("abcd", "abce"));
        assert!(!signatures_match("abcd", "abc"));
    }
}
