//! The HTTP client for IMS: one pooled connection set, every request authenticated exactly as
//! the official SDK does it, every answer turned into a typed value or a classified [`ImsError`].
//!
//! A request goes through four steps, top to bottom in [`Client::execute`]: build the URL (the
//! signer's canonical query string *is* the URL query, so the wire matches the signature), add
//! the SDK's headers and authenticate (AK/SK signature or `X-Auth-Token`), send, then read the
//! answer. Transport failures are split into "never sent" (safe to repeat) and "ambiguous" (the
//! server may have acted), which matters for the non-idempotent register call.
//!
//! HTTP/1.1 only, like the SDK: the signed `Host` header then travels as it was signed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use url::Url;

use super::api::ImsApi;
use super::auth::{self, Credentials};
use super::error::{ImsError, excerpt, parse_error_body, parse_retry_after};
use super::paging::{PAGE_LIMIT, next_marker_of};
use super::signer::{self, SigningInput};
use super::types::{
    CreateImageMetadataRequest, ImageInfo, ImageQuota, ImageStatusPage, Job, ListImagesQuery,
    ListImagesResponse, OsPlatform, OsVersion, QuotaResponse, RegisterImageRequest,
    RegisterImageResponse, flatten_os_versions,
};
use crate::ids::{ImageId, JobId};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle pooled connections are dropped after this. Kept short so that a request rarely goes
/// out on a connection the gateway is just closing (which would make a register ambiguous).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Answers larger than this are refused (a list page of 500 images is a few hundred KiB).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// `Content-Type` as the SDK sends it: with a charset on requests with a body, plain on GETs.
const CONTENT_TYPE_WITH_BODY: &str = "application/json;charset=UTF-8";
const CONTENT_TYPE_NO_BODY: &str = "application/json";

/// Headers whose values are secret; reqwest/hyper keep them out of their own debug output.
const SENSITIVE_HEADERS: &[&str] = &["authorization", "x-auth-token", "x-security-token"];

/// Everything needed to build a [`Client`]. `Debug` hides the secrets (see [`Credentials`])
/// and any password in the endpoint URL.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://ims.{region}.myhuaweicloud.com`, or an override; see [`resolve_endpoint`].
    pub endpoint: Url,
    /// Sent as `X-Project-Id` on every request; required by [`Client::show_job`].
    pub project_id: Option<String>,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// Whole-request limit, from sending to the last byte of the answer.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// A config with the default timeouts and no project.
    pub fn new(endpoint: Url, credentials: Credentials) -> Self {
        Self {
            endpoint,
            project_id: None,
            credentials,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut endpoint = self.endpoint.clone();
        if endpoint.password().is_some() {
            let _ = endpoint.set_password(Some("***"));
        }
        f.debug_struct("ClientConfig")
            .field("endpoint", &endpoint.as_str())
            .field("project_id", &self.project_id)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// The IMS endpoint: `endpoint` when given (an override, e.g. the simulator), else
/// `https://ims.{region}.myhuaweicloud.com`. See [`check_endpoint`] for what is accepted.
pub fn resolve_endpoint(region: Option<&str>, endpoint: Option<&str>) -> Result<Url, ImsError> {
    crate::endpoint::resolve(crate::endpoint::IMS, region, endpoint).map_err(ImsError::Config)
}

/// Accepts `https://host[:port][/base]`, and `http://` only for loopback hosts (127.0.0.0/8,
/// `::1`, `localhost`): signed requests and tokens must not travel in clear over a network.
pub fn check_endpoint(url: &Url) -> Result<(), ImsError> {
    crate::endpoint::check(crate::endpoint::IMS, url).map_err(ImsError::Config)
}

/// The IMS HTTP client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    /// The endpoint's path without a trailing `/` ("" for a bare host).
    base_path: String,
    /// `host[:port]` as signed and sent in `Host` (port only when not the scheme's default).
    host: String,
    project_id: Option<String>,
    credentials: Credentials,
    /// Header values that are the same on every request, checked once.
    fixed: FixedHeaders,
}

/// The header values every request carries unchanged.
struct FixedHeaders {
    host: HeaderValue,
    project_id: Option<HeaderValue>,
    /// `X-Security-Token` (AK/SK with a temporary credential) or `X-Auth-Token`, trimmed.
    token: Option<(HeaderName, HeaderValue)>,
}

impl FixedHeaders {
    fn new(
        host: &str,
        project_id: Option<&str>,
        credentials: &Credentials,
    ) -> Result<Self, ImsError> {
        check_credential_text(project_id, credentials)?;
        let token = match credentials {
            Credentials::AkSk {
                security_token: Some(token),
                ..
            } => Some((
                X_SECURITY_TOKEN,
                header("X-Security-Token", token.expose())?,
            )),
            Credentials::AkSk { .. } => None,
            Credentials::Token(token) => {
                Some((X_AUTH_TOKEN, header("X-Auth-Token", token.expose())?))
            }
        };
        Ok(FixedHeaders {
            host: header("Host", host)?,
            project_id: project_id
                .map(|project| header("X-Project-Id", project))
                .transpose()?,
            token,
        })
    }
}

/// Every credential and the project ID must be text HTTP can carry ([`auth::malformation`]):
/// checked once here, so that a bad value is a configuration error at start, not a failure of
/// every request. Names the value, never shows it.
fn check_credential_text(
    project_id: Option<&str>,
    credentials: &Credentials,
) -> Result<(), ImsError> {
    let mut values: Vec<(&str, &str)> = Vec::with_capacity(4);
    match credentials {
        Credentials::AkSk {
            ak,
            sk,
            security_token,
        } => {
            values.push(("access key (AK)", ak));
            values.push(("secret key (SK)", sk.expose()));
            if let Some(token) = security_token {
                values.push(("security token", token.expose()));
            }
        }
        Credentials::Token(token) => values.push(("IAM token", token.expose())),
    }
    if let Some(project) = project_id {
        values.push(("project ID", project));
    }
    for (what, value) in values {
        if let Some(problem) = auth::malformation(value.trim()) {
            return Err(ImsError::Config(
                auth::AuthError::Malformed {
                    what: format!("the {what}"),
                    problem,
                }
                .to_string(),
            ));
        }
    }
    Ok(())
}

/// A header value, trimmed as the SDK sends it; secrets are marked sensitive (hyper and reqwest
/// keep those out of their debug output).
fn header(name: &str, value: &str) -> Result<HeaderValue, ImsError> {
    let mut parsed = HeaderValue::from_str(value.trim()).map_err(|_| {
        // Name the header, never its value: it may be a secret.
        ImsError::Config(format!(
            "the {name} header cannot be sent: its value has characters HTTP headers do not \
             allow (check the project ID and credentials)"
        ))
    })?;
    parsed.set_sensitive(
        SENSITIVE_HEADERS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name)),
    );
    Ok(parsed)
}

const X_PROJECT_ID: HeaderName = HeaderName::from_static("x-project-id");
const X_SDK_DATE: HeaderName = HeaderName::from_static("x-sdk-date");
const X_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-security-token");
const X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("project_id", &self.inner.project_id)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

/// `GET /v2/cloudimages` with the query's filter and paging (full or lean decode).
fn list_call(query: &ListImagesQuery) -> Call<'static> {
    Call {
        name: "ListImages",
        subject: "",
        method: Method::GET,
        path: "/v2/cloudimages".to_string(),
        query: query.to_pairs(),
        body: None,
    }
}

/// One API call, before authentication.
struct Call<'a> {
    /// For messages, with `subject`: e.g. `RegisterImage 4ca4...`.
    name: &'static str,
    /// The image or job the call is about ("" for none).
    subject: &'a str,
    method: Method,
    /// Below the endpoint's base path, already percent-encoded, starting with `/`.
    path: String,
    /// Raw pairs; sent as the signer's canonical query string.
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call<'_> {
    /// What messages call it: e.g. `RegisterImage 4ca4...` (built only when needed).
    fn operation(&self) -> String {
        Self::label(self.name, self.subject)
    }

    fn label(name: &str, subject: &str) -> String {
        if subject.is_empty() {
            name.to_string()
        } else {
            format!("{name} {subject}")
        }
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, ImsError> {
        check_endpoint(&config.endpoint)?;
        let host_name = config
            .endpoint
            .host_str()
            .ok_or_else(|| ImsError::Config("the IMS endpoint has no host name".to_string()))?;
        let host = match config.endpoint.port() {
            Some(port) => format!("{host_name}:{port}"),
            None => host_name.to_string(),
        };
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            .user_agent(format!("imsreg/{}", crate::VERSION))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // A redirect would re-send a signed request elsewhere; IMS does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| ImsError::Config(format!("cannot set up the HTTP client: {err}")))?;
        let project_id = config
            .project_id
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        let fixed = FixedHeaders::new(&host, project_id.as_deref(), &config.credentials)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_path: config.endpoint.path().trim_end_matches('/').to_string(),
                endpoint: config.endpoint,
                host,
                project_id,
                credentials: config.credentials,
                fixed,
            }),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    pub fn project_id(&self) -> Option<&str> {
        self.inner.project_id.as_deref()
    }

    /// `PUT /v1/cloudimages/{image_id}/upload` with `{"image_url": "bucket:object"}`; answers
    /// the job ID, trimmed (the documented example has a leading space).
    ///
    /// A 2xx whose body cannot be used (not JSON, no `job_id`, an empty or oversized answer, a
    /// job ID of the wrong shape, see [`JobId::parse`]) means IMS probably accepted the call:
    /// it is [`ImsError::Ambiguous`], like an answer that never arrived, never a refusal.
    pub async fn register_image(&self, image_id: &str, image_url: &str) -> Result<JobId, ImsError> {
        let body = serde_json::to_vec(&RegisterImageRequest { image_url }).map_err(|err| {
            ImsError::Config(format!("cannot encode the register request: {err}"))
        })?;
        let call = Call {
            path: format!(
                "/v1/cloudimages/{}/upload",
                path_segment("image ID", image_id)?
            ),
            name: "RegisterImage",
            subject: image_id,
            method: Method::PUT,
            query: Vec::new(),
            body: Some(body),
        };
        let unusable = |detail: String| ImsError::Ambiguous {
            operation: format!("RegisterImage {image_id}"),
            detail: format!(
                "IMS answered with success, but the answer cannot be used ({detail}); the \
                 registration was probably accepted"
            ),
        };
        let answer: RegisterImageResponse = match self.call_json(call).await {
            Ok(answer) => answer,
            Err(ImsError::Decode { detail, .. }) => return Err(unusable(detail)),
            Err(other) => return Err(other),
        };
        JobId::parse(&answer.job_id).map_err(|invalid| unusable(invalid.to_string()))
    }

    /// `GET /v1/{project_id}/jobs/{job_id}`; needs a project ID.
    pub async fn show_job(&self, job_id: &str) -> Result<Job, ImsError> {
        let project = self.inner.project_id.as_deref().ok_or_else(|| {
            ImsError::Config(
                "querying a job needs the project ID: set HUAWEICLOUD_SDK_PROJECT_ID, or \
                 `project_id:` in the manifest settings or on the command line"
                    .to_string(),
            )
        })?;
        let call = Call {
            name: "ShowJob",
            subject: job_id,
            method: Method::GET,
            path: format!(
                "/v1/{}/jobs/{}",
                path_segment("project ID", project)?,
                path_segment("job ID", job_id)?
            ),
            query: Vec::new(),
            body: None,
        };
        self.call_json(call).await
    }

    /// `GET /v1/cloudimages/job/{job_id}`: the job plus `entities.process_percent`.
    pub async fn show_job_progress(&self, job_id: &str) -> Result<Job, ImsError> {
        let call = Call {
            name: "ShowJobProgress",
            subject: job_id,
            method: Method::GET,
            path: format!("/v1/cloudimages/job/{}", path_segment("job ID", job_id)?),
            query: Vec::new(),
            body: None,
        };
        self.call_json(call).await
    }

    /// `GET /v2/cloudimages` with the query's filter and paging.
    pub async fn list_images(
        &self,
        query: &ListImagesQuery,
    ) -> Result<ListImagesResponse, ImsError> {
        self.call_json(list_call(query)).await
    }

    /// `GET /v2/cloudimages`, keeping only each image's ID, status and `updated_at`.
    pub async fn list_image_statuses(
        &self,
        query: &ListImagesQuery,
    ) -> Result<ImageStatusPage, ImsError> {
        self.call_json(list_call(query)).await
    }

    /// One private image by ID (`GET /v2/cloudimages?id=...&__imagetype=private`); `None`
    /// when the list has no image with that ID.
    pub async fn get_image(&self, image_id: &str) -> Result<Option<ImageInfo>, ImsError> {
        let query = ListImagesQuery {
            id: Some(image_id.to_string()),
            imagetype: Some("private".to_string()),
            ..Default::default()
        };
        let page = self.list_images(&query).await?;
        Ok(page
            .images
            .into_iter()
            .find(|image| image.id.eq_ignore_ascii_case(image_id)))
    }

    /// `POST /v2/images`: creates the metadata of a private image (status `queued`, 201).
    ///
    /// Sent once, never repeated here: a lost answer may still have created the image. A 2xx
    /// whose body cannot be read as an image is [`ImsError::Ambiguous`] (the image was
    /// probably created), like an answer that never arrived.
    pub async fn create_image_metadata(
        &self,
        request: &CreateImageMetadataRequest,
    ) -> Result<ImageInfo, ImsError> {
        let body = serde_json::to_vec(request)
            .map_err(|err| ImsError::Config(format!("cannot encode the image metadata: {err}")))?;
        let subject = request.name.as_deref().unwrap_or("(unnamed)");
        let call = Call {
            name: "CreateImageMetadata",
            subject,
            method: Method::POST,
            path: "/v2/images".to_string(),
            query: Vec::new(),
            body: Some(body),
        };
        match self.call_json::<ImageInfo>(call).await {
            Err(ImsError::Decode { detail, .. }) => Err(ImsError::Ambiguous {
                operation: Call::label("CreateImageMetadata", subject),
                detail: format!(
                    "IMS answered with success, but the answer cannot be used ({detail}); the \
                     image was probably created"
                ),
            }),
            Ok(image) if image.id.trim().is_empty() => Err(ImsError::Ambiguous {
                operation: Call::label("CreateImageMetadata", subject),
                detail: "IMS answered with success but without an image ID; the image was \
                         probably created"
                    .to_string(),
            }),
            other => other,
        }
    }

    /// Every page of `GET /v2/cloudimages` for `query` (its `marker` and `limit` are set
    /// here), kept when `keep` says so.
    async fn list_all(
        &self,
        mut query: ListImagesQuery,
        keep: impl Fn(&ImageInfo) -> bool,
    ) -> Result<Vec<ImageInfo>, ImsError> {
        query.limit = Some(PAGE_LIMIT);
        query.marker = None;
        let mut found = Vec::new();
        loop {
            let page = self.list_images(&query).await?;
            let next = next_marker_of(
                page.page_info.as_ref(),
                page.images.len(),
                page.images.last().map(|image| image.id.as_str()),
            );
            found.extend(page.images.into_iter().filter(|image| keep(image)));
            match next {
                // A server that hands back the marker it was given would page forever.
                Some(marker) if query.marker.as_deref() == Some(marker.as_str()) => {
                    return Err(ImsError::Decode {
                        operation: "ListImages".to_string(),
                        detail: format!("paging did not advance past marker {marker}"),
                    });
                }
                Some(marker) => query.marker = Some(marker),
                None => return Ok(found),
            }
        }
    }

    /// `GET /v2/cloudimages?__imagetype=private&tag=KEY=VALUE`, every page. Only images that
    /// really carry the tag are kept (a server that ignored the filter changes nothing).
    pub async fn find_images_by_tag(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ImageInfo>, ImsError> {
        let query = ListImagesQuery {
            imagetype: Some("private".to_string()),
            tag: Some(format!("{key}={value}")),
            ..ListImagesQuery::default()
        };
        self.list_all(query, |image| image.tag(key) == Some(value))
            .await
    }

    /// Every private image with a tag of this key (all pages, filtered here).
    pub async fn list_images_tagged(&self, key: &str) -> Result<Vec<ImageInfo>, ImsError> {
        let query = ListImagesQuery {
            imagetype: Some("private".to_string()),
            ..ListImagesQuery::default()
        };
        self.list_all(query, |image| image.tag(key).is_some()).await
    }

    /// `GET /v1/cloudimages/os_version`, flattened to one entry per OS version.
    pub async fn list_os_versions(&self) -> Result<Vec<OsVersion>, ImsError> {
        let call = Call {
            name: "ListOsVersions",
            subject: "",
            method: Method::GET,
            path: "/v1/cloudimages/os_version".to_string(),
            query: Vec::new(),
            body: None,
        };
        let platforms: Vec<OsPlatform> = self.call_json(call).await?;
        Ok(flatten_os_versions(platforms))
    }

    /// `GET /v1/cloudimages/quota`: the `image` resource.
    pub async fn image_quota(&self) -> Result<ImageQuota, ImsError> {
        let call = Call {
            name: "ShowImageQuota",
            subject: "",
            method: Method::GET,
            path: "/v1/cloudimages/quota".to_string(),
            query: Vec::new(),
            body: None,
        };
        let answer: QuotaResponse = self.call_json(call).await?;
        answer.image().ok_or_else(|| ImsError::Decode {
            operation: "ShowImageQuota".to_string(),
            detail: "the answer has no `image` resource with `used` and `quota`".to_string(),
        })
    }

    /// `DELETE /v2/images/{image_id}` (204); 404 (already gone) is success too.
    pub async fn delete_image(&self, image_id: &str) -> Result<(), ImsError> {
        let call = Call {
            name: "DeleteImage",
            subject: image_id,
            method: Method::DELETE,
            path: format!("/v2/images/{}", path_segment("image ID", image_id)?),
            query: Vec::new(),
            body: None,
        };
        match self.execute(call).await {
            Ok(_) => Ok(()),
            Err(ImsError::Api(api)) if api.status == 404 => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Runs a call and decodes a 2xx answer as `T`.
    async fn call_json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ImsError> {
        let (name, subject) = (call.name, call.subject);
        let body = self.execute(call).await?;
        serde_json::from_slice(&body).map_err(|err| ImsError::Decode {
            operation: Call::label(name, subject),
            detail: format!(
                "{err}; the answer starts with: {}",
                excerpt(&String::from_utf8_lossy(&body), 120)
            ),
        })
    }

    /// Authenticates, sends and reads one call; answers the body of a 2xx response.
    async fn execute(&self, mut call: Call<'_>) -> Result<Vec<u8>, ImsError> {
        let request = self.build_request(&mut call)?;
        let started = Instant::now();
        let response = self
            .inner
            .http
            .execute(request)
            .await
            .map_err(|err| self.transport_error(&call.operation(), err))?;

        let status = response.status();
        let request_id = header_text(response.headers(), "x-request-id");
        let retry_after = (!status.is_success())
            .then(|| header_text(response.headers(), "retry-after"))
            .flatten()
            .and_then(|value| parse_retry_after(&value, SystemTime::now()));
        let body = read_body(response).await;
        tracing::debug!(
            operation = call.name,
            subject = call.subject,
            status = status.as_u16(),
            request_id = request_id.as_deref().unwrap_or("-"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "IMS answered"
        );

        if status.is_success() {
            return match body {
                Ok(BodyRead::Complete(bytes)) => Ok(bytes),
                Ok(BodyRead::TooLarge(_)) => Err(ImsError::Decode {
                    operation: call.operation(),
                    detail: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                }),
                // The server acted and said so, but we lost the details.
                Err(err) => Err(ImsError::Ambiguous {
                    operation: call.operation(),
                    detail: format!(
                        "HTTP {status}, but reading the answer failed: {}",
                        error_chain(&err)
                    ),
                }),
            };
        }
        // An error status is an answer even if its body is cut short.
        let bytes = match body {
            Ok(BodyRead::Complete(bytes) | BodyRead::TooLarge(bytes)) => bytes,
            Err(_) => Vec::new(),
        };
        let reason = status.canonical_reason().unwrap_or("");
        Err(ImsError::Api(parse_error_body(
            status.as_u16(),
            reason,
            &bytes,
            request_id,
            retry_after,
        )))
    }

    /// The URL (canonical query as the query), the SDK's headers, and the authentication. The
    /// body moves into the request.
    fn build_request(&self, call: &mut Call) -> Result<reqwest::Request, ImsError> {
        let inner = &*self.inner;
        let mut url = inner.endpoint.clone();
        if inner.base_path.is_empty() {
            url.set_path(&call.path);
        } else {
            url.set_path(&format!("{}{}", inner.base_path, call.path));
        }
        if !call.query.is_empty() {
            url.set_query(Some(&signer::canonical_query(&call.query)));
        }

        let body = call.body.take();
        let content_type = if body.is_some() {
            CONTENT_TYPE_WITH_BODY
        } else {
            CONTENT_TYPE_NO_BODY
        };
        let fixed = &inner.fixed;
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(project) = &fixed.project_id {
            headers.insert(X_PROJECT_ID, project.clone());
        }
        if let Some((name, token)) = &fixed.token {
            headers.insert(name.clone(), token.clone());
        }
        if let Credentials::AkSk {
            ak,
            sk,
            security_token,
        } = &inner.credentials
        {
            // The SDK's headers, as signed: every one sent above, plus the date and Host.
            let date = signer::sdk_date(chrono::Utc::now());
            let mut signed: Vec<(&str, &str)> = Vec::with_capacity(5);
            signed.push(("Content-Type", content_type));
            if let Some(project) = &inner.project_id {
                signed.push(("X-Project-Id", project));
            }
            if let Some(token) = security_token {
                signed.push(("X-Security-Token", token.expose().trim()));
            }
            signed.push((signer::DATE_HEADER, &date));
            signed.push(("Host", &inner.host));
            let signature = signer::sign(
                &SigningInput {
                    method: call.method.as_str(),
                    path: url.path(),
                    query: &call.query,
                    headers: &signed,
                    body: body.as_deref().unwrap_or_default(),
                },
                sk.expose().as_bytes(),
                None,
            );
            headers.insert(X_SDK_DATE, header(signer::DATE_HEADER, &date)?);
            headers.insert(HOST, fixed.host.clone());
            headers.insert(
                AUTHORIZATION,
                header("Authorization", &signature.authorization(ak))?,
            );
        }

        let mut request = reqwest::Request::new(call.method.clone(), url);
        *request.headers_mut() = headers;
        *request.body_mut() = body.map(reqwest::Body::from);
        Ok(request)
    }

    /// Splits transport failures into "never sent" and "may have been processed".
    fn transport_error(&self, operation: &str, err: reqwest::Error) -> ImsError {
        // The operation and endpoint already say where; the URL would only repeat it.
        let err = err.without_url();
        let detail = error_chain(&err);
        if err.is_builder() {
            return ImsError::Config(format!("cannot build the {operation} request: {detail}"));
        }
        if err.is_connect() || request_never_started(&err) {
            return ImsError::NotSent {
                endpoint: self.inner.endpoint.to_string(),
                detail,
            };
        }
        // Timeout after connecting, reset or close before a full answer, ...: the request may
        // have been written and acted on.
        ImsError::Ambiguous {
            operation: operation.to_string(),
            detail,
        }
    }
}

/// hyper reports `Canceled` only for a request it never started writing (e.g. the pooled
/// connection closed first); everything else after connecting may have reached the server.
pub(crate) fn request_never_started(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(hyper_err) = current.downcast_ref::<hyper::Error>()
            && hyper_err.is_canceled()
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// `err: cause: cause`, without repeating a message its source already printed.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// A percent-encoded path segment; an empty one would silently change the path.
fn path_segment(what: &str, value: &str) -> Result<String, ImsError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ImsError::Config(format!("the {what} is empty")));
    }
    Ok(signer::sdk_escape(value))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

enum BodyRead {
    Complete(Vec<u8>),
    /// The first [`MAX_RESPONSE_BYTES`] of a longer answer.
    TooLarge(Vec<u8>),
}

async fn read_body(mut response: reqwest::Response) -> Result<BodyRead, reqwest::Error> {
    // Sized once from Content-Length: list pages run to hundreds of KiB.
    let announced = response.content_length().unwrap_or(0);
    let mut body = Vec::with_capacity(announced.min(MAX_RESPONSE_BYTES as u64) as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            let room = MAX_RESPONSE_BYTES - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok(BodyRead::TooLarge(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(BodyRead::Complete(body))
}

/// The typed IDs go on the wire as their text (lower-case UUIDs, job IDs as IMS sent them).
impl ImsApi for Client {
    fn register_image(
        &self,
        image_id: &ImageId,
        image_url: &str,
    ) -> impl Future<Output = Result<JobId, ImsError>> + Send {
        let image_id = image_id.to_string();
        async move { Client::register_image(self, &image_id, image_url).await }
    }

    fn show_job(&self, job_id: &JobId) -> impl Future<Output = Result<Job, ImsError>> + Send {
        Client::show_job(self, job_id.as_str())
    }

    fn show_job_progress(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Job, ImsError>> + Send {
        Client::show_job_progress(self, job_id.as_str())
    }

    fn list_images(
        &self,
        query: &ListImagesQuery,
    ) -> impl Future<Output = Result<ListImagesResponse, ImsError>> + Send {
        Client::list_images(self, query)
    }

    fn list_image_statuses(
        &self,
        query: &ListImagesQuery,
    ) -> impl Future<Output = Result<ImageStatusPage, ImsError>> + Send {
        Client::list_image_statuses(self, query)
    }

    fn get_image(
        &self,
        image_id: &ImageId,
    ) -> impl Future<Output = Result<Option<ImageInfo>, ImsError>> + Send {
        let image_id = image_id.to_string();
        async move { Client::get_image(self, &image_id).await }
    }

    fn create_image_metadata(
        &self,
        request: &CreateImageMetadataRequest,
    ) -> impl Future<Output = Result<ImageInfo, ImsError>> + Send {
        Client::create_image_metadata(self, request)
    }

    fn find_images_by_tag(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<ImageInfo>, ImsError>> + Send {
        Client::find_images_by_tag(self, key, value)
    }

    fn list_images_tagged(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Vec<ImageInfo>, ImsError>> + Send {
        Client::list_images_tagged(self, key)
    }

    fn list_os_versions(&self) -> impl Future<Output = Result<Vec<OsVersion>, ImsError>> + Send {
        Client::list_os_versions(self)
    }

    fn image_quota(&self) -> impl Future<Output = Result<ImageQuota, ImsError>> + Send {
        Client::image_quota(self)
    }

    fn delete_image(
        &self,
        image_id: &ImageId,
    ) -> impl Future<Output = Result<(), ImsError>> + Send {
        let image_id = image_id.to_string();
        async move { Client::delete_image(self, &image_id).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::auth::Secret;

    #[test]
    fn endpoints() {
        let url = resolve_endpoint(Some("cn-north-4"), None).unwrap();
        assert_eq!(url.as_str(), "https://ims.cn-north-4.myhuaweicloud.com/");
        let url = resolve_endpoint(Some("cn-north-4"), Some("http://127.0.0.1:8080")).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        for ok in [
            "http://[::1]:9/",
            "http://localhost:1",
            "http://127.9.9.9",
            "https://x.y/ims",
        ] {
            assert!(resolve_endpoint(None, Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://ims.example.com",
            "http://10.0.0.1:80",
            "ftp://127.0.0.1",
            "ims.cn-north-4.myhuaweicloud.com",
            "https://u:p@ims.example.com",
            "https://ims.example.com/?a=b",
        ] {
            assert!(
                matches!(resolve_endpoint(None, Some(bad)), Err(ImsError::Config(_))),
                "{bad}"
            );
        }
        let leaked = resolve_endpoint(None, Some("https://user:hunter2@ims.example.com"));
        assert!(!leaked.unwrap_err().to_string().contains("hunter2"));
        assert!(resolve_endpoint(Some("cn north"), None).is_err());
        let none = resolve_endpoint(None, Some("  ")).unwrap_err().to_string();
        assert!(
            none.contains("region") && none.contains("endpoint"),
            "{none}"
        );
    }

    #[test]
    fn header_values_http_cannot_carry_are_refused_at_setup_without_echoing_them() {
        let endpoint: Url = "http://127.0.0.1:9".parse().unwrap();
        let aksk = |token: Option<&str>| Credentials::AkSk {
            ak: "AK".into(),
            sk: Secret::new("sk"),
            security_token: token.map(Secret::new),
        };
        let mut config = ClientConfig::new(endpoint.clone(), aksk(None));
        config.project_id = Some("zqxj\nzqxj".into());
        let err = Client::new(config).unwrap_err().to_string();
        assert!(err.contains("project ID") && !err.contains("zqxj"), "{err}");

        let config = ClientConfig::new(endpoint.clone(), aksk(Some("zqxj\u{7f}zqxj")));
        let err = Client::new(config).unwrap_err().to_string();
        assert!(
            err.contains("security token") && !err.contains("zqxj"),
            "{err}"
        );

        let config =
            ClientConfig::new(endpoint.clone(), Credentials::Token(Secret::new("a\rzqxj")));
        let err = Client::new(config).unwrap_err().to_string();
        assert!(err.contains("IAM token") && !err.contains("zqxj"), "{err}");

        for (ak, sk, problem) in [
            (
                "AK\u{1}zqxj",
                "sk",
                "access key (AK) contains a control character",
            ),
            ("AK", "zqxj s", "secret key (SK) contains a space"),
            ("AKé", "sk", "outside printable ASCII"),
        ] {
            let credentials = Credentials::AkSk {
                ak: ak.into(),
                sk: Secret::new(sk),
                security_token: None,
            };
            let err = Client::new(ClientConfig::new(endpoint.clone(), credentials))
                .unwrap_err()
                .to_string();
            assert!(err.contains(problem) && !err.contains("zqxj"), "{err}");
        }
    }

    #[test]
    fn config_and_client_print_without_secrets() {
        let mut config = ClientConfig::new(
            "http://127.0.0.1:9".parse().unwrap(),
            Credentials::AkSk {
                ak: "AKPRINTED".into(),
                sk: Secret::new("sk-never-printed"),
                security_token: Some(Secret::new("st-never-printed")),
            },
        );
        config.project_id = Some("p1".into());
        let client = Client::new(config.clone()).unwrap();
        let token_client = Client::new(ClientConfig::new(
            "http://127.0.0.1:9".parse().unwrap(),
            Credentials::Token(Secret::new("iam-never-printed")),
        ))
        .unwrap();
        // Not accepted by `Client::new`, but a config may still hold one.
        config.endpoint = "https://user:pw-never-printed@ims.example.com"
            .parse()
            .unwrap();
        for printed in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{client:?}"),
            format!("{token_client:?}"),
        ] {
            assert!(!printed.contains("never-printed"), "{printed}");
            assert!(printed.contains("***"), "{printed}");
        }
        assert!(format!("{client:?}").contains("AKPRINTED"));
        assert!(format!("{config:?}").contains("ims.example.com"));
    }

    #[test]
    fn path_segments_are_escaped_and_non_empty() {
        assert_eq!(path_segment("x", " a/b c ").unwrap(), "a%2Fb%20c");
        assert!(path_segment("job ID", " ").is_err());
    }
}
