//! The OBS header signature (`Authorization: OBS AK:Signature`, HMAC-SHA1, base64), byte for
//! byte as Huawei's official Python SDK (`esdk-obs-python`, `obs.auth.Authentication`) builds
//! it, plus the verifier a simulator needs to check a request it received.
//!
//! The same rules serve two dialects: native OBS (`x-obs-*` headers, `OBS` prefix) and the
//! AWS-V2 form OBS also accepts (`x-amz-*`, `AWS`), which the SDK switches to by itself for
//! path-style requests, e.g. against `http://127.0.0.1:PORT`. Everything here is pure (the date
//! is a header the caller sets) and tested against vectors made with the SDK
//! (`tests/data/obs-vectors.json`); docs/obs.md §2 describes the rules.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha1::Sha1;

use crate::ims::auth::Secret;
use crate::ims::signer::signatures_match;

/// Python's `urllib.parse.quote(s, safe='/~')`: everything but `A-Z a-z 0-9 - . _ ~ /` is
/// percent-encoded (UTF-8, upper-case hex). The SDK encodes object keys, in the URL path and in
/// the signed resource alike, and sub-resource names this way.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Query parameters that are signed (compared lower-cased), besides any starting with the
/// dialect's header prefix. The SDK's `const.ALLOWED_RESOURCE_PARAMTER_NAMES`.
const SUB_RESOURCES: &[&str] = &[
    "acl",
    "backtosource",
    "policy",
    "torrent",
    "logging",
    "location",
    "storageinfo",
    "quota",
    "storageclass",
    "storagepolicy",
    "requestpayment",
    "versions",
    "versioning",
    "versionid",
    "uploads",
    "uploadid",
    "partnumber",
    "website",
    "notification",
    "dispolicy",
    "lifecycle",
    "deletebucket",
    "delete",
    "cors",
    "restore",
    "tagging",
    "replication",
    "metadata",
    "encryption",
    "publicaccessblock",
    "bucketstatus",
    "policystatus",
    "x-obs-accesslabel",
    "inventory",
    "obscompresspolicy",
    "object-lock",
    "retention",
    "directcoldaccess",
    "append",
    "position",
    "truncate",
    "modify",
    "rename",
    "length",
    "name",
    "fileinterface",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "x-image-save-bucket",
    "x-image-save-object",
    "x-image-process",
    "x-oss-process",
    "x-workflow-prefix",
    "x-workflow-start",
    "x-workflow-limit",
    "x-workflow-template-name",
    "x-workflow-graph-name",
    "x-workflow-execution-state",
    "x-workflow-execution-type",
    "x-workflow-next-marker",
    "obsworkflowtriggerpolicy",
    "obsbucketalias",
    "obsalias",
];

/// OBS refuses requests whose date is further than this from its clock (`RequestTimeTooSkewed`).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Which of the two header signatures OBS accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `Authorization: OBS AK:sig`, `x-obs-*` headers.
    Obs,
    /// `Authorization: AWS AK:sig`, `x-amz-*` headers (what the SDK sends path-style).
    AwsV2,
}

impl Dialect {
    /// The prefix of signed headers (and of signed query parameters beyond the fixed list).
    pub fn header_prefix(self) -> &'static str {
        match self {
            Dialect::Obs => "x-obs-",
            Dialect::AwsV2 => "x-amz-",
        }
    }

    fn meta_prefix(self) -> &'static str {
        match self {
            Dialect::Obs => "x-obs-meta-",
            Dialect::AwsV2 => "x-amz-meta-",
        }
    }

    /// The header that, when present, replaces `Date` (whose line is then empty).
    pub fn date_header(self) -> &'static str {
        match self {
            Dialect::Obs => "x-obs-date",
            Dialect::AwsV2 => "x-amz-date",
        }
    }

    /// The header carrying the security token of temporary credentials (signed).
    pub fn security_token_header(self) -> &'static str {
        match self {
            Dialect::Obs => "x-obs-security-token",
            Dialect::AwsV2 => "x-amz-security-token",
        }
    }

    fn auth_prefix(self) -> &'static str {
        match self {
            Dialect::Obs => "OBS",
            Dialect::AwsV2 => "AWS",
        }
    }
}

/// Where the bucket name travels: in the host name (OBS's documented form) or as the first
/// path segment. It changes the signed resource of a bucket-level request (`/bucket/` versus
/// `/bucket`) and the URL path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://bucket.obs.{region}.myhuaweicloud.com/key`.
    VirtualHosted,
    /// `http://127.0.0.1:PORT/bucket/key`.
    PathStyle,
}

/// What the signature covers.
///
/// `headers` are the headers as sent, names in any case; only `Content-MD5`, `Content-Type`,
/// `Date` and the dialect's prefixed headers are taken. `Range`, `Host` and `User-Agent` are
/// not signed.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a, H = String> {
    pub method: &'a str,
    pub bucket: Option<&'a str>,
    /// The object key, raw (not percent-encoded). `None` or empty for a bucket request.
    pub key: Option<&'a str>,
    /// Raw query pairs; `None` is a bare `?name`. Only sub-resources are signed.
    pub query: &'a [(String, Option<String>)],
    pub headers: &'a [(H, H)],
}

/// An object key as it appears in the URL path and in the signed resource.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ESCAPE).to_string()
}

/// The URL path of a request: `/key` (or `/`) virtual-hosted, `/bucket/key` path-style.
pub fn url_path(addressing: Addressing, bucket: &str, key: Option<&str>) -> String {
    let key = key.filter(|k| !k.is_empty()).map(encode_key);
    match (addressing, key) {
        (Addressing::VirtualHosted, Some(key)) => format!("/{key}"),
        (Addressing::VirtualHosted, None) => "/".to_string(),
        (Addressing::PathStyle, Some(key)) => format!("/{bucket}/{key}"),
        (Addressing::PathStyle, None) => format!("/{bucket}"),
    }
}

/// The string to sign (the SDK's "CanonicalString").
pub fn string_to_sign<H: AsRef<str>>(
    dialect: Dialect,
    addressing: Addressing,
    input: &SigningInput<'_, H>,
) -> String {
    let prefix = dialect.header_prefix();
    // Lower-cased names, sorted (the three fixed ones sort before any `x-` header); repeated
    // headers are joined with `,` as the documentation says (the SDK never repeats one).
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in input.headers {
        let name = name.as_ref().to_ascii_lowercase();
        if matches!(name.as_str(), "content-md5" | "content-type" | "date")
            || name.starts_with(prefix)
        {
            taken
                .entry(name)
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value.as_ref());
                })
                .or_insert_with(|| value.as_ref().to_string());
        }
    }
    if taken.contains_key(dialect.date_header()) {
        taken.insert("date".to_string(), String::new());
    }
    taken.entry("content-md5".to_string()).or_default();
    taken.entry("content-type".to_string()).or_default();

    let mut text = String::with_capacity(128);
    text.push_str(input.method);
    text.push('\n');
    for (name, value) in &taken {
        if name.starts_with(dialect.meta_prefix()) {
            text.push_str(name);
            text.push(':');
            text.push_str(value.trim());
        } else if name.starts_with(prefix) {
            text.push_str(name);
            text.push(':');
            text.push_str(value);
        } else {
            text.push_str(value);
        }
        text.push('\n');
    }
    push_resource(&mut text, addressing, input.bucket, input.key);
    push_sub_resources(&mut text, dialect, input.query);
    text
}

fn push_resource(
    text: &mut String,
    addressing: Addressing,
    bucket: Option<&str>,
    key: Option<&str>,
) {
    let start = text.len();
    if let Some(bucket) = bucket.filter(|b| !b.is_empty()) {
        text.push('/');
        text.push_str(bucket);
        if addressing == Addressing::VirtualHosted {
            text.push('/');
        }
    }
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        if !text[start..].ends_with('/') {
            text.push('/');
        }
        text.extend(utf8_percent_encode(key, KEY_ESCAPE));
    }
    if text.len() == start {
        text.push('/');
    }
}

/// `?a&b=v`: the signed parameters sorted by their raw name (case-sensitive), names encoded,
/// values raw, as the SDK writes them.
fn push_sub_resources(text: &mut String, dialect: Dialect, query: &[(String, Option<String>)]) {
    let mut signed: Vec<&(String, Option<String>)> = query
        .iter()
        .filter(|(name, _)| {
            let lower = name.to_lowercase();
            SUB_RESOURCES.contains(&lower.as_str()) || lower.starts_with(dialect.header_prefix())
        })
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, value)) in signed.into_iter().enumerate() {
        text.push(if i == 0 { '?' } else { '&' });
        text.extend(utf8_percent_encode(name, KEY_ESCAPE));
        if let Some(value) = value {
            text.push('=');
            text.push_str(value);
        }
    }
}

/// `base64(HMAC-SHA1(secret_key, string_to_sign))`.
pub fn signature(secret_key: &str, string_to_sign: &str) -> String {
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value: `OBS AK:sig` or `AWS AK:sig`.
pub fn authorization(dialect: Dialect, access_key: &str, signature: &str) -> String {
    format!("{} {access_key}:{signature}", dialect.auth_prefix())
}

/// Signs a request: the `Authorization` header value for these inputs.
pub fn sign<H: AsRef<str>>(
    dialect: Dialect,
    addressing: Addressing,
    input: &SigningInput<'_, H>,
    access_key: &str,
    secret_key: &str,
) -> String {
    let text = string_to_sign(dialect, addressing, input);
    authorization(dialect, access_key, &signature(secret_key, &text))
}

// ---------------------------------------------------------------------------------------------
// The verifier side.

/// A request as a server received it.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedRequest<'a, H = String> {
    pub method: &'a str,
    /// The request target: the path as sent (percent-encoded) and the raw query, if any.
    pub target: &'a str,
    /// Every header received, `Host` included.
    pub headers: &'a [(H, H)],
}

/// What a verified request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub dialect: Dialect,
    pub addressing: Addressing,
    pub access_key: String,
    pub bucket: Option<String>,
    /// Decoded object key.
    pub key: Option<String>,
    /// The security token sent (signed), for the server to check against its credentials.
    pub security_token: Option<Secret>,
}

/// Why a received request is refused; [`VerifyError::code`] gives OBS's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the request carries no Authorization header")]
    Missing,
    #[error("the Authorization header is not `OBS AK:signature` or `AWS AK:signature`")]
    Malformed,
    #[error("the request path is not valid percent-encoded UTF-8")]
    BadPath,
    #[error("the request has neither a Date nor an {0} header that can be read")]
    BadDate(&'static str),
    #[error("the request time differs from the server's by more than 15 minutes")]
    TooSkewed,
    #[error("the access key {0} is not known")]
    UnknownAccessKey(String),
    /// Carries the string the server signed, as OBS's error body does, with the security
    /// token's value replaced by `***`.
    #[error("the signature does not match (the server signed {string_to_sign:?})")]
    SignatureMismatch { string_to_sign: String },
}

impl VerifyError {
    /// OBS's error code for this refusal (all are 403 except a bad path, 400).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Missing | VerifyError::BadDate(_) => "AccessDenied",
            VerifyError::Malformed => "InvalidArgument",
            VerifyError::BadPath => "InvalidURI",
            VerifyError::TooSkewed => "RequestTimeTooSkewed",
            VerifyError::UnknownAccessKey(_) => "InvalidAccessKeyId",
            VerifyError::SignatureMismatch { .. } => "SignatureDoesNotMatch",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::BadPath => 400,
            _ => 403,
        }
    }
}

/// Checks a received request's signature.
///
/// `virtual_host_domain` is the service host (`obs.ap-southeast-1.myhuaweicloud.com`,
/// `obs.test`; no port): a `Host` of `bucket.{domain}` is read as virtual-hosted, anything else
/// as path-style. `secret_for` answers the secret key of an access key. The request date
/// (`x-obs-date`, else `Date`) must be within [`MAX_CLOCK_SKEW`] of `now`.
pub fn verify<H: AsRef<str>>(
    request: &ReceivedRequest<'_, H>,
    virtual_host_domain: Option<&str>,
    now: SystemTime,
    secret_for: impl FnOnce(&str) -> Option<String>,
) -> Result<Verified, VerifyError> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().trim())
    };
    let authorization = header("authorization").ok_or(VerifyError::Missing)?;
    let (prefix, credential) = authorization
        .split_once(' ')
        .ok_or(VerifyError::Malformed)?;
    let dialect = match prefix {
        "OBS" => Dialect::Obs,
        "AWS" => Dialect::AwsV2,
        _ => return Err(VerifyError::Malformed),
    };
    let (access_key, received) = credential
        .trim()
        .split_once(':')
        .filter(|(ak, sig)| !ak.is_empty() && !sig.is_empty())
        .ok_or(VerifyError::Malformed)?;

    let date = header(dialect.date_header())
        .or_else(|| header("date"))
        .and_then(parse_date)
        .ok_or(VerifyError::BadDate(dialect.date_header()))?;
    let skew = now
        .duration_since(date)
        .or_else(|_| date.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(VerifyError::TooSkewed);
    }

    let (path, raw_query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target, ""));
    let host = header("host").map(strip_port);
    let vhost_bucket = match (host, virtual_host_domain) {
        (Some(host), Some(domain)) => host
            .strip_suffix(domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|bucket| !bucket.is_empty()),
        _ => None,
    };
    let path = decode(path)?;
    let (addressing, bucket, key) = match vhost_bucket {
        Some(bucket) => (
            Addressing::VirtualHosted,
            Some(bucket.to_string()),
            path.strip_prefix('/').unwrap_or(&path).to_string(),
        ),
        None => {
            let rest = path.strip_prefix('/').unwrap_or(&path);
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket = (!bucket.is_empty()).then(|| bucket.to_string());
            (Addressing::PathStyle, bucket, key.to_string())
        }
    };
    let key = (!key.is_empty()).then_some(key);
    let query = parse_query(raw_query)?;

    let secret = secret_for(access_key)
        .ok_or_else(|| VerifyError::UnknownAccessKey(access_key.to_string()))?;
    let input = SigningInput {
        method: request.method,
        bucket: bucket.as_deref(),
        key: key.as_deref(),
        query: &query,
        headers: request.headers,
    };
    let expected_text = string_to_sign(dialect, addressing, &input);
    if !signatures_match(&signature(&secret, &expected_text), received) {
        return Err(VerifyError::SignatureMismatch {
            string_to_sign: redact_token(dialect, &expected_text),
        });
    }
    Ok(Verified {
        dialect,
        addressing,
        access_key: access_key.to_string(),
        bucket,
        key,
        security_token: header(dialect.security_token_header()).map(Secret::new),
    })
}

/// The string to sign with the security token's value hidden (it is a secret).
fn redact_token(dialect: Dialect, text: &str) -> String {
    let prefix = format!("{}:", dialect.security_token_header());
    text.split('\n')
        .map(|line| {
            if line.starts_with(&prefix) {
                format!("{prefix}***")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An HTTP date. A weekday that does not fit the date is tolerated (OBS's own documentation
/// signs `Sat, 12 Oct 2015`, a Monday).
fn parse_date(text: &str) -> Option<SystemTime> {
    if let Ok(time) = httpdate::parse_http_date(text) {
        return Some(time);
    }
    let (_, rest) = text.split_once(',')?;
    let naive = chrono::NaiveDateTime::parse_from_str(rest.trim(), "%d %b %Y %H:%M:%S GMT").ok()?;
    Some(SystemTime::from(naive.and_utc()))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host; // an IPv6 literal is never a bucket host
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn decode(text: &str) -> Result<String, VerifyError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| VerifyError::BadPath)
}

/// `a&b=v` into decoded pairs (`a` without `=` is `None`).
fn parse_query(raw: &str) -> Result<Vec<(String, Option<String>)>, VerifyError> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => Ok((decode(name)?, Some(decode(value)?))),
            None => Ok((decode(pair)?, None)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sat, 12 Oct 2015 08:12:38 GMT";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(
        addressing: Addressing,
        input: SigningInput<'_>,
        ak: &str,
        sk: &str,
        expected_text: &str,
        expected_signature: &str,
    ) {
        let text = string_to_sign(Dialect::Obs, addressing, &input);
        assert_eq!(text, expected_text);
        assert_eq!(signature(sk, &text), expected_signature);
        assert_eq!(
            sign(Dialect::Obs, addressing, &input, ak, sk),
            format!("OBS {ak}:{expected_signature}")
        );
    }

    /// shared/obs-api.md section 4.4, V1-V5, exactly.
    #[test]
    fn documented_vectors() {
        let v1 = headers(&[
            ("Content-MD5", "abc"),
            ("Content-Type", "text/plain"),
            ("Date", "Mon, 15 Aug 2022 16:50:12 GMT"),
        ]);
        check(
            Addressing::VirtualHosted,
            SigningInput {
                method: "GET",
                bucket: Some("bucket"),
                key: Some("object.txt"),
                query: &[],
                headers: &v1,
            },
            "access_key",
            "123456",
            "GET\nabc\ntext/plain\nMon, 15 Aug 2022 16:50:12 GMT\n/bucket/object.txt",
            "9gUZ4ol2W19LyYcc92Bu3U0V09E=",
        );

        let date = headers(&[("Date", DATE)]);
        let head = |bucket, key| SigningInput {
            method: "HEAD",
            bucket: Some(bucket),
            key,
            query: &[],
            headers: &date,
        };
        check(
            Addressing::VirtualHosted,
            head("my-bucket", Some("dir/disk image+1~.qcow2")),
            "AKEXAMPLE",
            "SKEXAMPLE",
            &format!("HEAD\n\n\n{DATE}\n/my-bucket/dir/disk%20image%2B1~.qcow2"),
            "uqLe3zerVZV4epw7erGJeCI1kds=",
        );
        check(
            Addressing::VirtualHosted,
            head("my-bucket", None),
            "AKEXAMPLE",
            "SKEXAMPLE",
            &format!("HEAD\n\n\n{DATE}\n/my-bucket/"),
            "qS2L/lgrijP9RLixZkcB82E7usg=",
        );
        check(
            Addressing::PathStyle,
            head("my-bucket", None),
            "AKEXAMPLE",
            "SKEXAMPLE",
            &format!("HEAD\n\n\n{DATE}\n/my-bucket"),
            "eFg1Ame+JwTqa9h7rJbqMgGc7l4=",
        );

        let v4 = headers(&[
            ("Date", DATE),
            ("x-obs-date", DATE),
            ("x-obs-security-token", "T"),
            ("Range", "bytes=0-9"),
            ("x-obs-meta-a", "  v  "),
        ]);
        let query = vec![
            ("versionId".to_string(), Some("v1".to_string())),
            ("acl".to_string(), None),
            ("foo".to_string(), Some("bar".to_string())),
        ];
        check(
            Addressing::VirtualHosted,
            SigningInput {
                method: "GET",
                bucket: Some("my-bucket"),
                key: Some("k"),
                query: &query,
                headers: &v4,
            },
            "AKEXAMPLE",
            "SKEXAMPLE",
            &format!(
                "GET\n\n\n\nx-obs-date:{DATE}\nx-obs-meta-a:v\nx-obs-security-token:T\n\
                 /my-bucket/k?acl&versionId=v1"
            ),
            "PFEOmSdfQO0OYs+nLnMS4HBivFg=",
        );

        check(
            Addressing::VirtualHosted,
            head("bucket", Some("镜像/a b.qcow2")),
            "AKEXAMPLE",
            "SKEXAMPLE",
            &format!("HEAD\n\n\n{DATE}\n/bucket/%E9%95%9C%E5%83%8F/a%20b.qcow2"),
            "BkmQSpD6/D7vGpMbjuUuPvSL7U8=",
        );
    }

    #[test]
    fn url_paths_match_the_signed_resource_encoding() {
        let key = Some("dir/a b+c~.qcow2");
        assert_eq!(
            url_path(Addressing::VirtualHosted, "b1", key),
            "/dir/a%20b%2Bc~.qcow2"
        );
        assert_eq!(
            url_path(Addressing::PathStyle, "b1", key),
            "/b1/dir/a%20b%2Bc~.qcow2"
        );
        assert_eq!(url_path(Addressing::VirtualHosted, "b1", None), "/");
        assert_eq!(url_path(Addressing::PathStyle, "b1", Some("")), "/b1");
    }

    fn signed_request(
        addressing: Addressing,
        host: &str,
        target: &str,
        bucket: &str,
        key: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut sent = headers(&[
            ("Host", host),
            ("Date", DATE),
            ("x-obs-security-token", "tok"),
        ]);
        let input = SigningInput {
            method: "GET",
            bucket: Some(bucket),
            key,
            query: &[],
            headers: &sent,
        };
        let auth = sign(Dialect::Obs, addressing, &input, "AK1", "SK1");
        assert!(target.starts_with('/'));
        sent.push(("Authorization".into(), auth));
        sent
    }

    fn at_date() -> SystemTime {
        parse_date(DATE).unwrap()
    }

    #[test]
    fn verifier_accepts_both_addressings_and_recovers_bucket_and_key() {
        let secret = |ak: &str| (ak == "AK1").then(|| "SK1".to_string());
        let sent = signed_request(
            Addressing::VirtualHosted,
            "b1.obs.test:9000",
            "/d/a%20b.qcow2",
            "b1",
            Some("d/a b.qcow2"),
        );
        let request = ReceivedRequest {
            method: "GET",
            target: "/d/a%20b.qcow2",
            headers: &sent,
        };
        let ok = verify(&request, Some("obs.test"), at_date(), secret).unwrap();
        assert_eq!(ok.addressing, Addressing::VirtualHosted);
        assert_eq!(ok.bucket.as_deref(), Some("b1"));
        assert_eq!(ok.key.as_deref(), Some("d/a b.qcow2"));
        assert_eq!(ok.security_token.as_ref().map(Secret::expose), Some("tok"));
        assert!(!format!("{ok:?}").contains("tok\""));

        let sent = signed_request(Addressing::PathStyle, "127.0.0.1:9000", "/b1", "b1", None);
        let request = ReceivedRequest {
            method: "GET",
            target: "/b1",
            headers: &sent,
        };
        let ok = verify(&request, Some("obs.test"), at_date(), secret).unwrap();
        assert_eq!(
            (ok.addressing, ok.bucket.as_deref(), ok.key),
            (Addressing::PathStyle, Some("b1"), None)
        );
    }

    #[test]
    fn verifier_refusals_carry_obs_codes() {
        let secret = |ak: &str| (ak == "AK1").then(|| "SK1".to_string());
        let sent = signed_request(
            Addressing::PathStyle,
            "127.0.0.1:1",
            "/b1/k",
            "b1",
            Some("k"),
        );
        let at = |target, headers| ReceivedRequest {
            method: "GET",
            target,
            headers,
        };
        assert!(verify(&at("/b1/k", &sent), None, at_date(), secret).is_ok());

        // Another key than the one signed.
        let err = verify(&at("/b1/other", &sent), None, at_date(), secret).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch");
        assert!(
            matches!(err, VerifyError::SignatureMismatch { ref string_to_sign }
            if string_to_sign.ends_with("/b1/other"))
        );

        // A changed signed header.
        let mut tampered = sent.clone();
        tampered[2].1 = "other-token".into();
        let err = verify(&at("/b1/k", &tampered), None, at_date(), secret).unwrap_err();
        assert_eq!(err.code(), "SignatureDoesNotMatch");
        let shown = err.to_string();
        assert!(
            shown.contains("x-obs-security-token:***") && !shown.contains("other-token"),
            "{shown}"
        );

        let late = at_date() + Duration::from_secs(16 * 60);
        let err = verify(&at("/b1/k", &sent), None, late, secret).unwrap_err();
        assert_eq!(err.code(), "RequestTimeTooSkewed");

        let err = verify(&at("/b1/k", &sent), None, at_date(), |_| None).unwrap_err();
        assert_eq!(err, VerifyError::UnknownAccessKey("AK1".into()));

        let unsigned = headers(&[("Date", DATE)]);
        let err = verify(&at("/b1/k", &unsigned), None, at_date(), secret).unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("AccessDenied", 403));

        let mut bearer = unsigned.clone();
        bearer.push(("Authorization".into(), "Bearer x".into()));
        let err = verify(&at("/b1/k", &bearer), None, at_date(), secret).unwrap_err();
        assert_eq!(err, VerifyError::Malformed);

        let err = verify(&at("/b1/%FF", &sent), None, at_date(), secret).unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("InvalidURI", 400));
    }
}
