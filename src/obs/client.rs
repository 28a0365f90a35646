//! The HTTP client for OBS: HEAD Bucket, HEAD Object and a bounded ranged GET, each signed
//! with the OBS signature and turned into a typed answer or a classified [`ObsError`].
//!
//! Addressing follows the endpoint: a domain endpoint (`https://obs.{region}.myhuaweicloud.com`)
//! is addressed virtual-hosted (`https://bucket.obs.../key`), as OBS requires; an IP or loopback
//! endpoint (the simulator, tests) path-style (`http://127.0.0.1:PORT/bucket/key`). Plain http
//! is accepted only for loopback, as for IMS. A ranged GET insists on a 206 with the asked-for
//! `Content-Range` and never reads more than [`MAX_RANGE_BYTES`]: OBS answers a range it cannot
//! use with the whole object, which may be 128 GiB.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, DATE, HeaderMap, HeaderName, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};
use url::{Host, Url};

use super::error::{ObsApiError, ObsError, parse_error_body};
use super::signer::{self, Addressing, Dialect, SigningInput};
use super::types::{BucketInfo, Encryption, ObjectInfo, RangeRead, StorageClass};
use crate::endpoint::is_loopback;
use crate::ims::auth::{Credentials, Secret};
use crate::ims::client::{error_chain, request_never_started};
use crate::ims::error::parse_retry_after;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes one ranged GET may ask for and read (the format probe needs 36 KiB).
pub const MAX_RANGE_BYTES: u64 = 64 * 1024;

/// How much of an error answer's body is read (OBS error bodies are a few hundred bytes).
const MAX_ERROR_BODY: usize = 16 * 1024;

const X_OBS_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-obs-security-token");

/// Everything needed to build an [`ObsClient`].
#[derive(Debug, Clone)]
pub struct ObsClientConfig {
    /// `https://obs.{region}.myhuaweicloud.com`, or an override; see [`resolve_endpoint`].
    pub endpoint: Url,
    /// IMS's credentials; only AK/SK can sign OBS requests.
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// Whole-request limit, from sending to the last byte of the answer.
    pub request_timeout: Duration,
}

impl ObsClientConfig {
    /// A config with the default timeouts.
    pub fn new(endpoint: Url, credentials: Credentials) -> Self {
        Self {
            endpoint,
            credentials,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The OBS endpoint: `endpoint` when given (e.g. the simulator), else
/// `https://obs.{region}.myhuaweicloud.com`. See [`check_endpoint`] for what is accepted.
pub fn resolve_endpoint(region: Option<&str>, endpoint: Option<&str>) -> Result<Url, ObsError> {
    crate::endpoint::resolve(crate::endpoint::OBS, region, endpoint).map_err(ObsError::Config)
}

/// Accepts `https://host[:port]`, and `http://` only for a loopback host; answers how buckets
/// are addressed there: path-style on an IP address or loopback name, else virtual-hosted.
pub fn check_endpoint(url: &Url) -> Result<Addressing, ObsError> {
    crate::endpoint::check(crate::endpoint::OBS, url).map_err(ObsError::Config)?;
    Ok(match url.host() {
        Some(Host::Domain(_)) if !is_loopback(url) => Addressing::VirtualHosted,
        _ => Addressing::PathStyle,
    })
}

/// A bucket name OBS could have created (ims-api.md §9); anything else must not reach a host
/// name or a path.
fn check_bucket(bucket: &str) -> Result<(), ObsError> {
    let bytes = bucket.as_bytes();
    let valid = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(ObsError::Config(format!(
            "{bucket:?} is not a valid OBS bucket name (3-63 characters from a-z, 0-9, '-' and \
             '.', starting and ending with a letter or digit)"
        )))
    }
}

/// The OBS HTTP client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct ObsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    addressing: Addressing,
    access_key: String,
    secret_key: Secret,
    /// The temporary credential's token and its header value, checked once.
    security_token: Option<(Secret, HeaderValue)>,
}

impl std::fmt::Debug for ObsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("addressing", &self.inner.addressing)
            .field("access_key", &self.inner.access_key)
            .finish_non_exhaustive()
    }
}

/// One call, before signing.
struct Call<'a> {
    /// `HeadBucket`, `HeadObject`, `GetObject`: for messages.
    name: &'static str,
    method: Method,
    bucket: &'a str,
    key: Option<&'a str>,
    range: Option<String>,
}

impl Call<'_> {
    /// What messages call it: `HeadObject bucket:key`.
    fn operation(&self) -> String {
        match self.key {
            Some(key) => format!("{} {}:{key}", self.name, self.bucket),
            None => format!("{} {}", self.name, self.bucket),
        }
    }
}

impl ObsClient {
    /// Refuses an IAM token ([`ObsError::NeedsAkSk`]), a bad endpoint, or header values HTTP
    /// cannot carry; nothing is sent.
    pub fn new(config: ObsClientConfig) -> Result<Self, ObsError> {
        let addressing = check_endpoint(&config.endpoint)?;
        let Credentials::AkSk {
            ak,
            sk,
            security_token,
        } = config.credentials
        else {
            return Err(ObsError::NeedsAkSk);
        };
        let security_token = match security_token {
            Some(token) => {
                let trimmed = Secret::new(token.expose().trim());
                let mut value = HeaderValue::from_str(trimmed.expose()).map_err(|_| {
                    ObsError::Config(
                        "the security token cannot be sent in the x-obs-security-token header: \
                         it has characters HTTP headers do not allow (check the credentials)"
                            .to_string(),
                    )
                })?;
                value.set_sensitive(true);
                Some((trimmed, value))
            }
            None => None,
        };
        let access_key = ak.trim().to_string();
        if HeaderValue::from_str(&access_key).is_err() {
            return Err(ObsError::Config(
                "the access key has characters HTTP headers do not allow (check the credentials)"
                    .to_string(),
            ));
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            .user_agent(format!("imsreg/{}", crate::VERSION))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirect (wrong region's endpoint) would re-send a signed request elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| ObsError::Config(format!("cannot set up the HTTP client: {err}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoint: config.endpoint,
                addressing,
                access_key,
                secret_key: Secret::new(sk.expose().trim()),
                security_token,
            }),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    pub fn addressing(&self) -> Addressing {
        self.inner.addressing
    }

    /// `HEAD /` on the bucket: its region and default storage class.
    pub async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, ObsError> {
        let call = Call {
            name: "HeadBucket",
            method: Method::HEAD,
            bucket,
            key: None,
            range: None,
        };
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(api_error(&call, response).await);
        }
        let headers = response.headers();
        Ok(BucketInfo {
            location: header_text(headers, "x-obs-bucket-location"),
            storage_class: StorageClass::from_header(
                header_text(headers, "x-obs-storage-class").as_deref(),
            ),
            file_interface: header_text(headers, "x-obs-fs-file-interface")
                .is_some_and(|v| v.eq_ignore_ascii_case("Enabled")),
            request_id: header_text(headers, "x-obs-request-id"),
        })
    }

    /// `HEAD /{key}`: size, storage class, encryption.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObsError> {
        let call = Call {
            name: "HeadObject",
            method: Method::HEAD,
            bucket,
            key: Some(key),
            range: None,
        };
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(api_error(&call, response).await);
        }
        let headers = response.headers();
        let text = |name: &str| header_text(headers, name);
        // The header itself: a HEAD answer has no body to measure.
        let size = text("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ObsError::Decode {
                operation: call.operation(),
                detail: "the answer has no readable Content-Length".to_string(),
            })?;
        Ok(ObjectInfo {
            size,
            storage_class: StorageClass::from_header(text("x-obs-storage-class").as_deref()),
            encryption: Encryption::from_headers(
                text("x-obs-server-side-encryption").as_deref(),
                text("x-obs-server-side-encryption-kms-key-id").as_deref(),
                text("x-obs-server-side-encryption-customer-algorithm").as_deref(),
            ),
            restore: text("x-obs-restore"),
            object_type: text("x-obs-object-type"),
            etag: text("etag"),
            last_modified: text("last-modified"),
            version_id: text("x-obs-version-id"),
            expiration: text("x-obs-expiration"),
            request_id: text("x-obs-request-id"),
        })
    }

    /// `GET /{key}` with `Range: bytes=start-end`: at most [`MAX_RANGE_BYTES`], answered 206.
    /// An end past the object is cut by OBS to its last byte; a start past it is 416.
    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: RangeInclusive<u64>,
    ) -> Result<RangeRead, ObsError> {
        let (start, end) = (*range.start(), *range.end());
        if start > end || end - start >= MAX_RANGE_BYTES {
            return Err(ObsError::Config(format!(
                "the byte range {start}-{end} of {bucket}:{key} is empty or longer than \
                 {MAX_RANGE_BYTES} bytes"
            )));
        }
        let call = Call {
            name: "GetObject",
            method: Method::GET,
            bucket,
            key: Some(key),
            range: Some(format!("bytes={start}-{end}")),
        };
        let response = self.send(&call).await?;
        let status = response.status();
        if status != StatusCode::PARTIAL_CONTENT {
            if status.is_success() {
                // Dropping the answer unread closes the connection under a possibly huge body.
                return Err(ObsError::RangeRefused {
                    operation: call.operation(),
                    detail: format!("HTTP {status} instead of 206; the body was not read"),
                });
            }
            return Err(api_error(&call, response).await);
        }
        let request_id = header_text(response.headers(), "x-obs-request-id");
        let content_range = header_text(response.headers(), "content-range");
        let (first, last, total) = content_range
            .as_deref()
            .and_then(parse_content_range)
            .filter(|&(first, last, _)| first == start && last <= end)
            .ok_or_else(|| ObsError::RangeRefused {
                operation: call.operation(),
                detail: format!(
                    "Content-Range {} does not answer bytes={start}-{end}",
                    content_range.as_deref().unwrap_or("(missing)")
                ),
            })?;
        let expected = last - first + 1; // at most MAX_RANGE_BYTES, checked above
        let bytes = read_exactly(&call, response, expected).await?;
        Ok(RangeRead {
            first,
            last,
            total,
            bytes,
            request_id,
        })
    }

    /// Builds, signs and sends one call; answers the response whatever its status.
    async fn send(&self, call: &Call<'_>) -> Result<reqwest::Response, ObsError> {
        check_bucket(call.bucket)?;
        if call.key.is_some_and(|k| k.is_empty() || k.len() > 1024) {
            return Err(ObsError::Config(format!(
                "the object key of {} must be 1 to 1024 bytes long",
                call.operation()
            )));
        }
        let request = self.build_request(call)?;
        let started = Instant::now();
        let response = self
            .inner
            .http
            .execute(request)
            .await
            .map_err(|err| self.transport_error(call, err))?;
        tracing::debug!(
            operation = call.name,
            bucket = call.bucket,
            key = call.key.unwrap_or("-"),
            status = response.status().as_u16(),
            request_id = header_text(response.headers(), "x-obs-request-id")
                .as_deref()
                .unwrap_or("-"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "OBS answered"
        );
        Ok(response)
    }

    fn build_request(&self, call: &Call<'_>) -> Result<reqwest::Request, ObsError> {
        let inner = &*self.inner;
        let mut url = inner.endpoint.clone();
        if inner.addressing == Addressing::VirtualHosted {
            let host = inner.endpoint.host_str().unwrap_or_default();
            url.set_host(Some(&format!("{}.{host}", call.bucket)))
                .map_err(|err| {
                    ObsError::Config(format!(
                        "cannot address bucket {} at {}: {err}",
                        call.bucket, inner.endpoint
                    ))
                })?;
        }
        url.set_path(&signer::url_path(inner.addressing, call.bucket, call.key));

        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(2);
        signed.push(("Date", &date));
        if let Some((token, _)) = &inner.security_token {
            signed.push((Dialect::Obs.security_token_header(), token.expose()));
        }
        let authorization = signer::sign(
            Dialect::Obs,
            inner.addressing,
            &SigningInput {
                method: call.method.as_str(),
                bucket: Some(call.bucket),
                key: call.key,
                query: &[],
                headers: &signed,
            },
            &inner.access_key,
            inner.secret_key.expose(),
        );

        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(DATE, header_value(&date)?);
        if let Some((_, token)) = &inner.security_token {
            headers.insert(X_OBS_SECURITY_TOKEN, token.clone());
        }
        if let Some(range) = &call.range {
            headers.insert(RANGE, header_value(range)?);
        }
        let mut authorization = header_value(&authorization)?;
        authorization.set_sensitive(true);
        headers.insert(AUTHORIZATION, authorization);

        let mut request = reqwest::Request::new(call.method.clone(), url);
        *request.headers_mut() = headers;
        Ok(request)
    }

    fn transport_error(&self, call: &Call<'_>, err: reqwest::Error) -> ObsError {
        let err = err.without_url();
        let detail = error_chain(&err);
        if err.is_builder() {
            return ObsError::Config(format!(
                "cannot build the {} request: {detail}",
                call.operation()
            ));
        }
        if err.is_connect() || request_never_started(&err) {
            return ObsError::NotSent {
                endpoint: self.inner.endpoint.to_string(),
                detail,
            };
        }
        ObsError::Interrupted {
            operation: call.operation(),
            detail,
        }
    }
}

/// A header value built from text we made (dates, ranges, signatures): always visible ASCII,
/// so the error is unreachable in practice; it never echoes the value.
fn header_value(text: &str) -> Result<HeaderValue, ObsError> {
    HeaderValue::from_str(text).map_err(|_| {
        ObsError::Config("cannot build an OBS request header (a bug in imsreg)".to_string())
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `bytes <first>-<last>/<total>` (total known), with `first <= last < total`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, total) = (
        first.trim().parse::<u64>().ok()?,
        last.trim().parse::<u64>().ok()?,
        total.trim().parse::<u64>().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

/// Reads a 206 body of exactly `expected` bytes (at most [`MAX_RANGE_BYTES`]); stops as soon as
/// the server sends more than it announced.
async fn read_exactly(
    call: &Call<'_>,
    mut response: reqwest::Response,
    expected: u64,
) -> Result<Vec<u8>, ObsError> {
    let limit = expected.min(MAX_RANGE_BYTES) as usize;
    let mut body = Vec::with_capacity(limit);
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|err| ObsError::Interrupted {
                operation: call.operation(),
                detail: format!(
                    "reading the bytes failed: {}",
                    error_chain(&err.without_url())
                ),
            })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > limit {
            return Err(ObsError::RangeRefused {
                operation: call.operation(),
                detail: format!(
                    "the answer has more than the {expected} bytes its Content-Range announced"
                ),
            });
        }
        body.extend_from_slice(&chunk);
    }
    if body.len() < limit {
        return Err(ObsError::Interrupted {
            operation: call.operation(),
            detail: format!("the answer ended after {} of {expected} bytes", body.len()),
        });
    }
    Ok(body)
}

/// The error of a non-success answer: code and message from the `x-obs-error-*` headers (all
/// a HEAD answer has) or the XML body (read up to [`MAX_ERROR_BODY`]).
async fn api_error(call: &Call<'_>, mut response: reqwest::Response) -> ObsError {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // An error status is an answer even if its body is cut short.
            Ok(None) | Err(_) => break,
        }
    }
    let (body_code, body_message, body_request_id) = parse_error_body(&body);
    ObsError::Api {
        operation: call.operation(),
        error: ObsApiError {
            status,
            code: header_text(&headers, "x-obs-error-code").or(body_code),
            message: header_text(&headers, "x-obs-error-message").or(body_message),
            request_id: header_text(&headers, "x-obs-request-id").or(body_request_id),
            retry_after: header_text(&headers, "retry-after")
                .and_then(|v| parse_retry_after(&v, SystemTime::now())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_their_addressing() {
        let url = resolve_endpoint(Some("ap-southeast-1"), None).unwrap();
        assert_eq!(
            url.as_str(),
            "https://obs.ap-southeast-1.myhuaweicloud.com/"
        );
        assert_eq!(check_endpoint(&url).unwrap(), Addressing::VirtualHosted);
        for (loopback, addressing) in [
            ("http://127.0.0.1:9000", Addressing::PathStyle),
            ("http://[::1]:9000/", Addressing::PathStyle),
            ("http://localhost:9000", Addressing::PathStyle),
            ("https://10.1.2.3", Addressing::PathStyle),
            (
                "https://obs.eu-de.otc.t-systems.com",
                Addressing::VirtualHosted,
            ),
        ] {
            let url = resolve_endpoint(None, Some(loopback)).unwrap();
            assert_eq!(check_endpoint(&url).unwrap(), addressing, "{loopback}");
        }
        for bad in [
            "http://obs.example.com",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://obs.example.com/base",
            "https://obs.example.com/?a=b",
            "https://u:hunter2@obs.example.com",
        ] {
            let err = resolve_endpoint(None, Some(bad)).unwrap_err().to_string();
            assert!(
                err.contains("OBS endpoint") && !err.contains("hunter2"),
                "{bad}: {err}"
            );
        }
        assert!(resolve_endpoint(Some("cn north"), None).is_err());
        assert!(resolve_endpoint(None, None).is_err());
    }

    #[test]
    fn bucket_names_that_cannot_be_addressed_are_refused() {
        for ok in ["abc", "my-bucket", "a.b-c.d", "0bucket9"] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-ab",
            "ab-",
            "Upper",
            "a/b",
            "a_b",
            "evil.com:80",
            &"a".repeat(64),
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-36863/4096000"),
            Some((0, 36863, 4096000))
        );
        assert_eq!(
            parse_content_range("bytes 20-30/4583"),
            Some((20, 30, 4583))
        );
        assert_eq!(
            parse_content_range("bytes 0-4095/4096"),
            Some((0, 4095, 4096))
        );
        assert_eq!(parse_content_range("bytes 0-10/*"), None);
        assert_eq!(parse_content_range("bytes 10-5/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn an_iam_token_cannot_sign_obs_requests() {
        let url: Url = "http://127.0.0.1:9".parse().unwrap();
        let err = ObsClient::new(ObsClientConfig::new(
            url,
            Credentials::Token(Secret::new("iam-token-value")),
        ))
        .unwrap_err();
        assert!(matches!(err, ObsError::NeedsAkSk));
        assert!(!err.to_string().contains("iam-token-value"));
    }

    /// Real endpoints are addressed virtual-hosted; the request verifies against the domain.
    #[test]
    fn virtual_hosted_requests_put_the_bucket_in_the_host() {
        let client = ObsClient::new(ObsClientConfig::new(
            "https://obs.ap-southeast-1.myhuaweicloud.com"
                .parse()
                .unwrap(),
            Credentials::AkSk {
                ak: "AKID".into(),
                sk: Secret::new("sk"),
                security_token: Some(Secret::new("tok")),
            },
        ))
        .unwrap();
        assert_eq!(client.addressing(), Addressing::VirtualHosted);
        let call = Call {
            name: "GetObject",
            method: Method::GET,
            bucket: "my-bucket",
            key: Some("dir/a b+1.qcow2"),
            range: Some("bytes=0-36863".into()),
        };
        let request = client.build_request(&call).unwrap();
        assert_eq!(
            request.url().as_str(),
            "https://my-bucket.obs.ap-southeast-1.myhuaweicloud.com/dir/a%20b%2B1.qcow2"
        );
        let mut headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        headers.push(("host".into(), request.url().host_str().unwrap().to_string()));
        let verified = signer::verify(
            &signer::ReceivedRequest {
                method: "GET",
                target: request.url().path(),
                headers: &headers,
            },
            Some("obs.ap-southeast-1.myhuaweicloud.com"),
            SystemTime::now(),
            |_| Some("sk".to_string()),
        )
        .unwrap();
        assert_eq!(verified.bucket.as_deref(), Some("my-bucket"));
        assert_eq!(verified.key.as_deref(), Some("dir/a b+1.qcow2"));
        assert_eq!(
            verified.security_token.as_ref().map(|t| t.expose()),
            Some("tok")
        );
        assert!(request.headers()[AUTHORIZATION].is_sensitive());
        assert!(request.headers()[X_OBS_SECURITY_TOKEN].is_sensitive());
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let client = ObsClient::new(ObsClientConfig::new(
            "http://127.0.0.1:9".parse().unwrap(),
            Credentials::AkSk {
                ak: "AKID".into(),
                sk: Secret::new("secret-key-value"),
                security_token: Some(Secret::new("token-value")),
            },
        ))
        .unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("secret-key-value") && !shown.contains("token-value"));
    }
}
