//! The IMS client against local servers on 127.0.0.1: a raw-TCP HTTP/1.1 server that records
//! every request exactly as it arrived (so the signature and the query string are checked on
//! the wire) and answers with scripted replies or faults (connection dropped after the request,
//! stalled answers, refused connections). Also credential discovery and redaction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use imsreg::ids::ImageId;
use imsreg::ims::auth::{self, AuthError, CredentialSource, Credentials, Secret};
use imsreg::ims::client::{Client, ClientConfig, resolve_endpoint};
use imsreg::ims::signer::{self, SigningInput};
use imsreg::ims::types::{CreateImageMetadataRequest, ImageStatus, JobStatus, ListImagesQuery};
use imsreg::ims::{ErrorClass, ImsApi, ImsError};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const AK: &str = "HPUATESTAKID00000001";
const SK: &str = "sk-Very-Secret-Value-0123456789";
const SECURITY_TOKEN: &str = "sts-Secret-Token-abcdef";
const IAM_TOKEN: &str = "MIIE-iam-Secret-Token-xyz";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const IMAGE_ID: &str = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";

// ---------------------------------------------------------------------------------------------
// The recording test server.

/// One request as it arrived on the socket.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    /// The request target exactly as sent: path and raw query.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        signer::header_value(&self.headers, name)
    }

    fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    fn raw_query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The query pairs, percent-decoded.
    fn query_pairs(&self) -> Vec<(String, String)> {
        let decode = |s: &str| percent_decode_str(s).decode_utf8().unwrap().into_owned();
        self.raw_query()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    fn query_value(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

enum Reply {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Close the connection after reading the request, without answering.
    Drop,
    /// Read the request, then say nothing for this long.
    Stall(Duration),
    /// Answer 200 announcing a longer body than is sent, then close: cut mid-response.
    Truncated,
    /// Answer 200 with this body (keep-alive, no `Connection: close`), then close the
    /// connection anyway, as a gateway dropping an idle connection does.
    AnswerThenClose(String),
}

fn reply(status: u16, body: &str) -> Reply {
    Reply::Http {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

fn reply_with(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    Reply::Http {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_string(),
    }
}

type Responder = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    async fn start(respond: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let respond: Responder = Arc::new(respond);
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, respond.clone(), log.clone()));
            }
        });
        Self { addr, received }
    }

    fn endpoint(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn only_request(&self) -> Received {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:#?}");
        all.into_iter().next().unwrap()
    }
}

/// Serves keep-alive HTTP/1.1 requests on one connection until the client closes it.
async fn serve_connection(stream: TcpStream, respond: Responder, log: Arc<Mutex<Vec<Received>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let length = signer::header_value(&headers, "content-length")
            .map_or(0, |v| v.parse::<usize>().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        let request = Received {
            method,
            target,
            headers,
            body,
        };
        log.lock().unwrap().push(request.clone());

        match respond(&request) {
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let stream = reader.get_mut();
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(body.as_bytes()).await.unwrap();
                stream.flush().await.unwrap();
            }
            Reply::Drop => return,
            Reply::AnswerThenClose(body) => {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(answer.as_bytes()).await;
                return;
            }
            Reply::Truncated => {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"job_id\":";
                let _ = reader.get_mut().write_all(head.as_bytes()).await;
                return;
            }
            Reply::Stall(pause) => {
                tokio::time::sleep(pause).await;
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients and the server-side signature check.

fn aksk(security_token: Option<&str>) -> Credentials {
    Credentials::AkSk {
        ak: AK.into(),
        sk: Secret::new(SK),
        security_token: security_token.map(Secret::new),
    }
}

fn config(server: &Server, credentials: Credentials, project: Option<&str>) -> ClientConfig {
    let mut config = ClientConfig::new(server.endpoint(), credentials);
    config.project_id = project.map(str::to_string);
    config.request_timeout = Duration::from_secs(10);
    config
}

fn client(server: &Server) -> Client {
    Client::new(config(server, aksk(None), Some(PROJECT))).unwrap()
}

/// Recomputes the signature from what arrived, with the header names the client declared,
/// as the gateway does; also checks that the wire query is the canonical query.
fn verify_signature(request: &Received, secret_key: &str) -> bool {
    let authorization = request.header("authorization").expect("Authorization sent");
    let declared = signer::parse_authorization(authorization).expect("SDK-HMAC-SHA256 header");
    assert_eq!(declared.access_key, AK);
    for required in ["content-type", "host", "x-sdk-date"] {
        assert!(
            declared.signed_headers.contains(&required),
            "{required} not signed: {authorization}"
        );
    }
    let pairs = request.query_pairs();
    assert_eq!(request.raw_query(), signer::canonical_query(&pairs));
    let date = request.header("x-sdk-date").unwrap();
    let signed_at = chrono::NaiveDateTime::parse_from_str(date, signer::DATE_FORMAT)
        .unwrap()
        .and_utc();
    assert!((chrono::Utc::now() - signed_at).num_seconds().abs() < 60);

    let expected = signer::sign(
        &SigningInput {
            method: &request.method,
            path: request.path(),
            query: &pairs,
            headers: &request.headers,
            body: &request.body,
        },
        secret_key.as_bytes(),
        Some(&declared.signed_headers),
    );
    signer::signatures_match(&expected.signature, declared.signature)
}

fn api_error(result: Result<impl std::fmt::Debug, ImsError>) -> imsreg::ims::ApiError {
    match result {
        Err(ImsError::Api(api)) => api,
        other => panic!("expected an API error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Successful calls.

#[tokio::test]
async fn register_image_trims_job_id_and_is_signed() {
    let server = Server::start(|_| {
        reply(
            200,
            r#"{"job_id":" b912fb4a4c464b568ecfca1071b21b10","unexpected":{"x":[1,2]}}"#,
        )
    })
    .await;
    let job = client(&server)
        .register_image(IMAGE_ID, "bucket:folder/disk1.qcow2")
        .await
        .unwrap();
    assert_eq!(job, "b912fb4a4c464b568ecfca1071b21b10");

    let request = server.only_request();
    assert_eq!(request.method, "PUT");
    assert_eq!(request.target, format!("/v1/cloudimages/{IMAGE_ID}/upload"));
    assert_eq!(
        request.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(
        request.json_body(),
        serde_json::json!({"image_url": "bucket:folder/disk1.qcow2"})
    );
    assert_eq!(request.header("x-project-id"), Some(PROJECT));
    assert_eq!(
        request.header("host"),
        Some(server.addr.to_string().as_str())
    );
    assert_eq!(
        request.header("user-agent"),
        Some(format!("imsreg/{}", imsreg::VERSION).as_str())
    );
    assert!(request.header("x-security-token").is_none());
    assert!(request.header("x-auth-token").is_none());
    assert!(verify_signature(&request, SK));
    assert!(!verify_signature(&request, "another-secret-key"));
}

#[tokio::test]
async fn show_job_reads_every_field_and_ignores_unknown_ones() {
    let server = Server::start(|_| {
        reply(
            200,
            r#"{"status":"FAIL","job_id":"j1","job_type":"imsNativeImportImageJob",
                "begin_time":"2024-11-06T07:14:54.848Z","end_time":"2024-11-06T07:20:00Z",
                "error_code":"IMG.0057","fail_reason":"file not found",
                "entities":{"image_id":"4ca4","brand_new":true},"another":null}"#,
        )
    })
    .await;
    let job = client(&server).show_job("j1").await.unwrap();
    assert_eq!(job.status, Some(JobStatus::Fail));
    assert_eq!(job.job_type.as_deref(), Some("imsNativeImportImageJob"));
    assert_eq!(job.error_code.as_deref(), Some("IMG.0057"));
    assert_eq!(job.fail_reason.as_deref(), Some("file not found"));
    assert_eq!(job.entities.unwrap().image_id.as_deref(), Some("4ca4"));

    let request = server.only_request();
    assert_eq!(request.method, "GET");
    assert_eq!(request.target, format!("/v1/{PROJECT}/jobs/j1"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request.body.is_empty());
    assert!(verify_signature(&request, SK));
}

#[tokio::test]
async fn show_job_needs_a_project_and_sends_nothing_without_one() {
    let server = Server::start(|_| reply(200, "{}")).await;
    let client = Client::new(config(&server, aksk(None), None)).unwrap();
    let err = client.show_job("j1").await.unwrap_err();
    assert!(matches!(&err, ImsError::Config(m) if m.contains("HUAWEICLOUD_SDK_PROJECT_ID")));
    assert_eq!(err.class(), ErrorClass::Final);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn show_job_progress_reads_the_percentage() {
    let server = Server::start(|_| {
        reply(
            200,
            r#"{"status":"RUNNING","job_id":"j2","entities":{"process_percent":42.5,
                "subJobId":"s1","image_id":"i"},"x":1}"#,
        )
    })
    .await;
    let job = client(&server).show_job_progress("j2").await.unwrap();
    assert_eq!(job.status, Some(JobStatus::Running));
    let entities = job.entities.unwrap();
    assert_eq!(entities.process_percent, Some(42.5));
    assert_eq!(entities.sub_job_id.as_deref(), Some("s1"));
    let request = server.only_request();
    assert_eq!(request.target, "/v1/cloudimages/job/j2");
    assert!(verify_signature(&request, SK));
}

const TWO_IMAGES: &str = r#"{"images":[
    {"id":"a1","name":"one","status":"active","disk_format":"qcow2","__imagetype":"private",
     "__image_size":"1024","min_disk":40,"__os_type":"Linux","tags":[],"file":"/v2/images/a1/file"},
    {"id":"b2","status":"saving","virtual_env_type":"FusionCompute"}],
    "page_info":{"next_marker":"b2"},"extra":"ignored"}"#;

#[tokio::test]
async fn list_images_sends_the_canonical_query_and_pages() {
    let server = Server::start(|_| reply(200, TWO_IMAGES)).await;
    let query = ListImagesQuery {
        id: None,
        status: Some(ImageStatus::Active),
        imagetype: Some("private".into()),
        updated_at: Some("gt:2018-10-28T10:00:00Z".into()),
        marker: Some("a0".into()),
        limit: Some(100),
        tag: None,
    };
    let page = client(&server).list_images(&query).await.unwrap();
    assert_eq!(page.images.len(), 2);
    assert_eq!(page.images[0].status, ImageStatus::Active);
    assert_eq!(page.images[0].image_size.as_deref(), Some("1024"));
    assert_eq!(page.images[1].status, ImageStatus::Saving);
    assert!(page.images[1].name.is_none());
    assert_eq!(page.page_info.unwrap().next_marker.as_deref(), Some("b2"));

    let request = server.only_request();
    assert_eq!(request.path(), "/v2/cloudimages");
    // Sorted by raw key, encoded after sorting, exactly as signed.
    assert_eq!(
        request.raw_query(),
        "__imagetype=private&limit=100&marker=a0&status=active&updated_at=gt%3A2018-10-28T10%3A00%3A00Z"
    );
    assert!(verify_signature(&request, SK));
}

#[tokio::test]
async fn list_image_statuses_sends_the_same_query_and_keeps_three_fields() {
    let server = Server::start(|_| reply(200, TWO_IMAGES)).await;
    let query = ListImagesQuery {
        status: Some(ImageStatus::Active),
        imagetype: Some("private".into()),
        marker: Some("a0".into()),
        limit: Some(100),
        ..ListImagesQuery::default()
    };
    let page = client(&server).list_image_statuses(&query).await.unwrap();
    let ids: Vec<_> = page
        .images
        .iter()
        .map(|i| (i.id.as_str(), &i.status))
        .collect();
    assert_eq!(
        ids,
        [("a1", &ImageStatus::Active), ("b2", &ImageStatus::Saving)]
    );
    assert_eq!(page.page_info.unwrap().next_marker.as_deref(), Some("b2"));
    let request = server.only_request();
    assert_eq!(
        request.raw_query(),
        "__imagetype=private&limit=100&marker=a0&status=active"
    );
    assert!(verify_signature(&request, SK));
}

#[tokio::test]
async fn get_image_filters_by_id_and_answers_none_when_absent() {
    let server = Server::start(|request| match request.query_value("id").as_deref() {
        Some("a1") => reply(200, TWO_IMAGES),
        _ => reply(200, r#"{"images":[]}"#),
    })
    .await;
    let client = client(&server);
    let found = client.get_image("a1").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.status.clone()),
        ("a1", ImageStatus::Active)
    );
    assert!(client.get_image("zz").await.unwrap().is_none());

    for request in server.requests() {
        assert_eq!(
            request.query_value("__imagetype").as_deref(),
            Some("private")
        );
        assert!(verify_signature(&request, SK));
    }
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn create_image_metadata_posts_the_body_and_reads_201() {
    let server = Server::start(|_| {
        reply(
            201,
            r#"{"id":"n1","status":"queued","__image_size":"0","file":"/v2/images/n1/file",
                "self":"/v2/images/n1","schema":"/v2/schemas/image","owner":"p",
                "__imagetype":"private","virtual_env_type":"FusionCompute","visibility":"private"}"#,
        )
    })
    .await;
    let request_body = CreateImageMetadataRequest {
        name: Some("img one".into()),
        os_version: Some("CentOS 7.9 64bit".into()),
        disk_format: Some("qcow2".into()),
        min_disk: Some(40),
        tags: Some(vec!["k=v".into()]),
        ..Default::default()
    };
    let image = client(&server)
        .create_image_metadata(&request_body)
        .await
        .unwrap();
    assert_eq!(image.id, "n1");
    assert_eq!(image.status, ImageStatus::Queued);

    let request = server.only_request();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/v2/images")
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(
        request.json_body(),
        serde_json::json!({"name":"img one","__os_version":"CentOS 7.9 64bit",
                           "disk_format":"qcow2","min_disk":40,"tags":["k=v"]})
    );
    assert!(verify_signature(&request, SK));
}

#[tokio::test]
async fn a_create_answered_2xx_with_an_unreadable_body_is_ambiguous() {
    for body in [
        "<html>gateway</html>",
        "{}",
        r#"{"id":"","status":"queued"}"#,
    ] {
        let server = Server::start(move |_| reply(201, body)).await;
        let request = CreateImageMetadataRequest {
            name: Some("web-01".into()),
            ..Default::default()
        };
        let err = ImsApi::create_image_metadata(&client(&server), &request)
            .await
            .unwrap_err();
        assert!(matches!(err, ImsError::Ambiguous { .. }), "{body}: {err:?}");
        assert_eq!(err.class(), ErrorClass::Ambiguous);
        assert!(
            err.to_string().contains("CreateImageMetadata web-01"),
            "{err}"
        );
        // Sent once: the client never repeats a create by itself.
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn a_create_whose_connection_drops_is_ambiguous_and_sent_once() {
    let server = Server::start(|_| Reply::Drop).await;
    let err =
        ImsApi::create_image_metadata(&client(&server), &CreateImageMetadataRequest::default())
            .await
            .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    assert_eq!(server.only_request().method, "POST");
}

/// Two pages of images: `marker` absent gives the first (with a `next_marker`), `c3` the last.
fn tagged_pages(request: &Received) -> Reply {
    match request.query_value("marker").as_deref() {
        None => reply(
            200,
            r#"{"images":[
                {"id":"a1","status":"queued","tags":["imsreg-key=k1","team=web"]},
                {"id":"b2","status":"active","tags":["team=web"]},
                {"id":"c3","status":"saving","tags":["imsreg-key=k2"]}],
               "page_info":{"next_marker":"c3"}}"#,
        ),
        Some("c3") => reply(
            200,
            r#"{"images":[{"id":"d4","status":"killed","tags":["imsreg-key=k1"]},
                          {"id":"e5","status":"active"}]}"#,
        ),
        Some(other) => panic!("unexpected marker {other}"),
    }
}

#[tokio::test]
async fn find_images_by_tag_sends_the_tag_filter_and_reads_every_page() {
    let server = Server::start(tagged_pages).await;
    let found = ImsApi::find_images_by_tag(&client(&server), "imsreg-key", "k1")
        .await
        .unwrap();
    // The server ignored the filter here; only images that carry the tag are kept.
    let ids: Vec<_> = found.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["a1", "d4"]);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].raw_query(),
        "__imagetype=private&limit=1000&tag=imsreg-key%3Dk1"
    );
    assert_eq!(requests[1].query_value("marker").as_deref(), Some("c3"));
    assert_eq!(
        requests[1].query_value("tag").as_deref(),
        Some("imsreg-key=k1")
    );
    for request in &requests {
        assert_eq!(request.path(), "/v2/cloudimages");
        assert!(verify_signature(request, SK));
    }
}

#[tokio::test]
async fn list_images_tagged_keeps_every_image_with_the_key() {
    let server = Server::start(tagged_pages).await;
    let found = ImsApi::list_images_tagged(&client(&server), "imsreg-key")
        .await
        .unwrap();
    let got: Vec<_> = found
        .iter()
        .map(|i| (i.id.as_str(), i.tag("imsreg-key")))
        .collect();
    assert_eq!(
        got,
        [("a1", Some("k1")), ("c3", Some("k2")), ("d4", Some("k1"))]
    );
    let requests = server.requests();
    assert_eq!(requests[0].raw_query(), "__imagetype=private&limit=1000");
    assert_eq!(requests.len(), 2);
}

#[tokio::test]
async fn paging_that_does_not_advance_is_an_error_not_a_loop() {
    let server = Server::start(|_| {
        reply(
            200,
            r#"{"images":[{"id":"a1","status":"queued"}],"page_info":{"next_marker":"a1"}}"#,
        )
    })
    .await;
    let err = ImsApi::list_images_tagged(&client(&server), "imsreg-key")
        .await
        .unwrap_err();
    assert!(matches!(err, ImsError::Decode { .. }), "{err:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn os_versions_are_read_from_the_bare_array() {
    let server = Server::start(|_| {
        reply(
            200,
            r#"[{"platform":"CentOS","version_list":[
                  {"platform":"CentOS","os_version_key":"CentOS 7.9 64bit",
                   "os_version":"CentOS 7.9 64bit","os_bit":64,"os_type":"Linux"}]},
                {"platform":"Ubuntu","version_list":[
                  {"platform":"Ubuntu","os_version":"Ubuntu 22.04 server 64bit","os_bit":64,
                   "os_type":"Linux"}]}]"#,
        )
    })
    .await;
    let versions = ImsApi::list_os_versions(&client(&server)).await.unwrap();
    let names: Vec<_> = versions.iter().map(|v| v.os_version.as_str()).collect();
    assert_eq!(names, ["CentOS 7.9 64bit", "Ubuntu 22.04 server 64bit"]);
    assert_eq!(versions[1].platform, "Ubuntu");
    let request = server.only_request();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", "/v1/cloudimages/os_version")
    );
    assert!(verify_signature(&request, SK));
}

#[tokio::test]
async fn the_image_quota_is_read_and_a_missing_resource_is_an_error() {
    let server = Server::start(|_| {
        reply(
            200,
            r#"{"quotas":{"resources":[{"type":"image","used":7,"quota":20,"min":1,"max":1000}]}}"#,
        )
    })
    .await;
    let quota = ImsApi::image_quota(&client(&server)).await.unwrap();
    assert_eq!((quota.used, quota.quota), (7, 20));
    assert_eq!(server.only_request().target, "/v1/cloudimages/quota");

    let server = Server::start(|_| reply(200, r#"{"quotas":{"resources":[]}}"#)).await;
    let err = ImsApi::image_quota(&client(&server)).await.unwrap_err();
    assert!(matches!(err, ImsError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn delete_image_treats_404_as_gone_and_reports_other_refusals() {
    let server =
        Server::start(
            |request| match request.path().rsplit('/').next().unwrap_or_default() {
                "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86" => reply(204, ""),
                "00000000-0000-4000-8000-000000000404" => reply(
                    404,
                    r#"{"error":{"code":"IMG.0144","message":"The image does not exist."}}"#,
                ),
                _ => reply(
                    409,
                    r#"{"error":{"code":"IMG.0085","message":"The image is being created."}}"#,
                ),
            },
        )
        .await;
    let ims = client(&server);
    let id = |text: &str| ImageId::parse(text).unwrap();
    ImsApi::delete_image(&ims, &id(IMAGE_ID)).await.unwrap();
    ImsApi::delete_image(&ims, &id("00000000-0000-4000-8000-000000000404"))
        .await
        .unwrap();
    let refused =
        api_error(ImsApi::delete_image(&ims, &id("00000000-0000-4000-8000-000000000409")).await);
    assert_eq!((refused.status, refused.code.as_str()), (409, "IMG.0085"));
    let requests = server.requests();
    assert_eq!(requests[0].method, "DELETE");
    assert_eq!(requests[0].target, format!("/v2/images/{IMAGE_ID}"));
    assert!(verify_signature(&requests[0], SK));
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_security_token() {
    let server = Server::start(|_| reply(200, r#"{"images":[]}"#)).await;
    let client = Client::new(config(&server, aksk(Some(SECURITY_TOKEN)), None)).unwrap();
    client
        .list_images(&ListImagesQuery::default())
        .await
        .unwrap();
    let request = server.only_request();
    assert_eq!(request.header("x-security-token"), Some(SECURITY_TOKEN));
    assert!(request.header("x-project-id").is_none());
    assert_eq!(request.target, "/v2/cloudimages");
    let declared = signer::parse_authorization(request.header("authorization").unwrap())
        .unwrap()
        .signed_headers
        .join(";");
    assert_eq!(declared, "content-type;host;x-sdk-date;x-security-token");
    assert!(verify_signature(&request, SK));
}

#[tokio::test]
async fn token_mode_sends_x_auth_token_and_no_signature() {
    let server = Server::start(|_| reply(200, r#"{"job_id":"j"}"#)).await;
    let credentials = Credentials::Token(Secret::new(IAM_TOKEN));
    let client = Client::new(config(&server, credentials, Some(PROJECT))).unwrap();
    assert_eq!(client.register_image(IMAGE_ID, "b:o").await.unwrap(), "j");
    let request = server.only_request();
    assert_eq!(request.header("x-auth-token"), Some(IAM_TOKEN));
    assert_eq!(request.header("x-project-id"), Some(PROJECT));
    assert!(request.header("authorization").is_none());
    assert!(request.header("x-sdk-date").is_none());
}

#[tokio::test]
async fn a_shared_client_serves_concurrent_calls_over_its_pool() {
    let server = Server::start(|request| {
        let id = request.query_value("id").unwrap_or_default();
        reply(
            200,
            &format!(r#"{{"images":[{{"id":"{id}","status":"active"}}]}}"#),
        )
    })
    .await;
    let client = client(&server);
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let client = client.clone();
            // Through the trait, in spawned tasks: the futures are Send and the client is shared.
            let id: ImageId = format!("00000000-0000-0000-0000-{n:012}").parse().unwrap();
            tokio::spawn(async move { ImsApi::get_image(&client, &id).await })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let image = task.await.unwrap().unwrap().unwrap();
        assert_eq!(image.id, format!("00000000-0000-0000-0000-{n:012}"));
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 16);
    assert!(requests.iter().all(|r| verify_signature(r, SK)));
}

// ---------------------------------------------------------------------------------------------
// Error answers.

#[tokio::test]
async fn error_bodies_of_each_shape_are_parsed_and_classified() {
    let retry_date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let server = Server::start(move |request| {
        let case = request.path().split('/').nth(3).unwrap_or_default().to_string();
        match case.as_str() {
            "ims400" => reply_with(
                400,
                &[("X-Request-Id", "req-400")],
                r#"{"error":{"code":"IMG.0017","message":"The URL format is incorrect."}}"#,
            ),
            "apig429" => reply_with(
                429,
                &[("Retry-After", "2")],
                r#"{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached","request_id":"body-rid"}"#,
            ),
            "date429" => reply_with(429, &[("Retry-After", retry_date.as_str())], ""),
            "long429" => reply_with(429, &[("Retry-After", "3600")], "{}"),
            "flow" => reply(400, r#"{"error":{"code":"IMG.0060","message":"too many tasks"}}"#),
            "auth" => reply(
                401,
                r#"{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: verify aksk signature fail"}"#,
            ),
            "camel" => reply(403, r#"{"errorCode":"IMG.0026","errorMsg":"no permission"}"#),
            "html" => reply_with(502, &[], &format!("<html><body>{}</body></html>", "x".repeat(2000))),
            "empty" => reply_with(503, &[], ""),
            "notjson" => reply(200, "this is not json"),
            "blankjob" => reply(200, r#"{"job_id":"   "}"#),
            _ => reply(404, "{}"),
        }
    })
    .await;
    let client = client(&server);

    let ims = api_error(client.register_image("ims400", "b:o").await);
    assert_eq!((ims.status, ims.code.as_str()), (400, "IMG.0017"));
    assert_eq!(ims.message, "The URL format is incorrect.");
    assert_eq!(ims.request_id.as_deref(), Some("req-400"));
    assert_eq!(ImsError::Api(ims.clone()).class(), ErrorClass::Final);
    assert!(ImsError::Api(ims).to_string().contains("req-400"));

    let throttled = api_error(client.register_image("apig429", "b:o").await);
    assert_eq!(throttled.code, "APIG.0308");
    assert_eq!(throttled.request_id.as_deref(), Some("body-rid"));
    assert_eq!(
        ImsError::Api(throttled).class(),
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(2)),
            throttled: true
        }
    );

    let dated = api_error(client.register_image("date429", "b:o").await);
    assert_eq!(dated.code, "429");
    let wait = dated.retry_after.expect("HTTP-date Retry-After parsed");
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );

    let capped = api_error(client.register_image("long429", "b:o").await);
    assert_eq!(capped.retry_after, Some(Duration::from_secs(60)));

    let flow = client.register_image("flow", "b:o").await.unwrap_err();
    assert_eq!(flow.class(), ErrorClass::FlowControl);
    assert_eq!(flow.code(), Some("IMG.0060"));

    let auth = client.register_image("auth", "b:o").await.unwrap_err();
    assert_eq!(auth.class(), ErrorClass::AuthFailed);
    assert_eq!(auth.http_status(), Some(401));
    assert_eq!(auth.code(), Some("APIG.0301"));

    let camel = api_error(client.register_image("camel", "b:o").await);
    assert_eq!(
        (camel.status, camel.code.as_str(), camel.message.as_str()),
        (403, "IMG.0026", "no permission")
    );

    let html = api_error(client.register_image("html", "b:o").await);
    assert_eq!(html.code, "502");
    assert!(html.message.starts_with("<html><body>xxx") && html.message.ends_with("..."));
    assert!(html.message.len() < 300);
    assert!(matches!(
        ImsError::Api(html).class(),
        ErrorClass::Retryable {
            throttled: false,
            ..
        }
    ));

    let empty = api_error(client.register_image("empty", "b:o").await);
    assert_eq!(
        (empty.code.as_str(), empty.message.as_str()),
        ("503", "Service Unavailable")
    );

    // A 2xx that cannot be used was probably accepted: checked like an unanswered call.
    for case in ["notjson", "blankjob"] {
        let err = client.register_image(case, "b:o").await.unwrap_err();
        assert!(matches!(err, ImsError::Ambiguous { .. }), "{case}: {err:?}");
        assert_eq!(err.class(), ErrorClass::Ambiguous);
    }
}

// ---------------------------------------------------------------------------------------------
// Transport faults.

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_ambiguous() {
    let server = Server::start(|_| Reply::Drop).await;
    let err = client(&server)
        .register_image(IMAGE_ID, "b:o")
        .await
        .unwrap_err();
    assert!(matches!(err, ImsError::Ambiguous { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    // The server did get the whole request: re-sending blindly could register twice.
    assert_eq!(server.only_request().method, "PUT");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SK));
}

#[tokio::test]
async fn an_answer_cut_mid_body_is_ambiguous() {
    let server = Server::start(|_| Reply::Truncated).await;
    let err = client(&server)
        .register_image(IMAGE_ID, "b:o")
        .await
        .unwrap_err();
    assert!(matches!(err, ImsError::Ambiguous { .. }), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_is_replaced_quietly() {
    let server = Server::start(|_| Reply::AnswerThenClose(r#"{"images":[]}"#.into())).await;
    let client = client(&server);
    for _ in 0..3 {
        client
            .list_images(&ListImagesQuery::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_timeout_after_sending_is_ambiguous() {
    let server = Server::start(|_| Reply::Stall(Duration::from_secs(5))).await;
    let mut cfg = config(&server, aksk(None), Some(PROJECT));
    cfg.request_timeout = Duration::from_millis(300);
    let err = Client::new(cfg)
        .unwrap()
        .register_image(IMAGE_ID, "b:o")
        .await
        .unwrap_err();
    assert!(matches!(err, ImsError::Ambiguous { .. }), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_not_sent_and_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: nothing listens there any more
    let endpoint = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let client = Client::new(ClientConfig::new(endpoint, aksk(None))).unwrap();
    let err = client.register_image(IMAGE_ID, "b:o").await.unwrap_err();
    assert!(matches!(err, ImsError::NotSent { .. }), "{err:?}");
    assert_eq!(
        err.class(),
        ErrorClass::Retryable {
            retry_after: None,
            throttled: false
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoints and secrets.

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let err = resolve_endpoint(None, Some("http://ims.cn-north-4.myhuaweicloud.com")).unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    let remote = url::Url::parse("http://192.0.2.10:8080").unwrap();
    let err = Client::new(ClientConfig::new(remote, aksk(None))).unwrap_err();
    assert!(matches!(err, ImsError::Config(_)));
    assert_eq!(
        resolve_endpoint(Some("ap-southeast-1"), None)
            .unwrap()
            .as_str(),
        "https://ims.ap-southeast-1.myhuaweicloud.com/"
    );
    assert!(resolve_endpoint(None, None).is_err());
}

#[test]
fn secrets_never_show_in_debug_output() {
    let endpoint = url::Url::parse("https://ims.cn-north-4.myhuaweicloud.com").unwrap();
    let mut temp = ClientConfig::new(endpoint.clone(), aksk(Some(SECURITY_TOKEN)));
    temp.project_id = Some(PROJECT.into());
    let token = ClientConfig::new(endpoint, Credentials::Token(Secret::new(IAM_TOKEN)));
    let shown = [
        format!("{temp:?}"),
        format!("{temp:#?}"),
        format!("{token:?}"),
        format!("{:?}", Client::new(temp.clone()).unwrap()),
        format!("{:#?}", Client::new(token.clone()).unwrap()),
        format!("{:?} {}", temp.credentials, temp.credentials.describe()),
        format!("{:?}", auth::discover(env(&[("OS_AUTH_TOKEN", IAM_TOKEN)]))),
    ];
    for text in &shown {
        for secret in [SK, SECURITY_TOKEN, IAM_TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("***"), "{text}");
    }
    assert!(shown[0].contains(AK) && shown[0].contains(PROJECT));
}

// ---------------------------------------------------------------------------------------------
// Credential discovery.

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn sk_of(credentials: &Credentials) -> &str {
    match credentials {
        Credentials::AkSk { sk, .. } => sk.expose(),
        Credentials::Token(_) => panic!("expected AK/SK"),
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn environment_keys_come_first() {
    let found = auth::discover(env(&[
        ("HUAWEICLOUD_SDK_AK", "AK1"),
        ("HUAWEICLOUD_SDK_SK", "SK1"),
        ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "ST1"),
        ("HUAWEICLOUD_SDK_PROJECT_ID", "P1"),
        ("OS_AUTH_TOKEN", "T1"),
        (
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            "/nonexistent/never/read",
        ),
    ]))
    .unwrap();
    assert_eq!(found.source, CredentialSource::Environment);
    assert_eq!(found.project_id.as_deref(), Some("P1"));
    match &found.credentials {
        Credentials::AkSk {
            ak,
            sk,
            security_token,
        } => {
            assert_eq!((ak.as_str(), sk.expose()), ("AK1", "SK1"));
            assert_eq!(security_token.as_ref().map(Secret::expose), Some("ST1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn half_a_key_pair_is_an_error_naming_the_missing_variable() {
    let err = auth::discover(env(&[
        ("HUAWEICLOUD_SDK_AK", "AK1"),
        ("OS_AUTH_TOKEN", "T"),
    ]))
    .unwrap_err();
    assert!(matches!(
        err,
        AuthError::MissingVariable {
            missing: "HUAWEICLOUD_SDK_SK",
            ..
        }
    ));
    assert!(err.to_string().contains("HUAWEICLOUD_SDK_SK"));
    let err = auth::discover(env(&[("HUAWEICLOUD_SDK_SK", "S")])).unwrap_err();
    assert!(
        err.to_string().contains("HUAWEICLOUD_SDK_AK is not"),
        "{err}"
    );
}

#[test]
fn os_auth_token_comes_before_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("creds");
    write_file(&file, "[basic]\nak=FA\nsk=FS\n");
    let found = auth::discover(env(&[
        ("HUAWEICLOUD_SDK_AK", ""),
        ("OS_AUTH_TOKEN", " T1 "),
        ("OS_PROJECT_ID", "OP"),
        ("HUAWEICLOUD_SDK_CREDENTIALS_FILE", file.to_str().unwrap()),
    ]))
    .unwrap();
    assert_eq!(found.source, CredentialSource::AuthToken);
    assert_eq!(found.credentials, Credentials::Token(Secret::new("T1")));
    assert_eq!(found.project_id.as_deref(), Some("OP"));
}

#[test]
fn the_credentials_file_is_read_from_the_variable_or_home() {
    let dir = tempfile::tempdir().unwrap();
    let named = dir.path().join("named.ini");
    write_file(
        &named,
        "# comment\n[global]\nak=GA\nsk=GS\n[basic]\nak = FA\nsk = FS\nsecurity_token = FT\nproject_id = FP\n",
    );
    let found = auth::discover(env(&[(
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
        named.to_str().unwrap(),
    )]))
    .unwrap();
    assert_eq!(found.source, CredentialSource::File(named.clone()));
    assert_eq!(sk_of(&found.credentials), "FS");
    assert_eq!(found.project_id.as_deref(), Some("FP"));

    // The environment's project overrides the file's.
    let found = auth::discover(env(&[
        ("HUAWEICLOUD_SDK_CREDENTIALS_FILE", named.to_str().unwrap()),
        ("HUAWEICLOUD_SDK_PROJECT_ID", "EP"),
    ]))
    .unwrap();
    assert_eq!(found.project_id.as_deref(), Some("EP"));

    let home = dir.path().join("home");
    write_file(
        &home.join(".huaweicloud/credentials"),
        "[basic]\nak=HA\nsk=HS\n",
    );
    let found = auth::discover(env(&[("HOME", home.to_str().unwrap())])).unwrap();
    assert_eq!(sk_of(&found.credentials), "HS");
    assert!(found.project_id.is_none());
}

#[test]
fn nothing_configured_names_the_variables_and_the_file() {
    let empty_home = tempfile::tempdir().unwrap();
    let err = auth::discover(env(&[("HOME", empty_home.path().to_str().unwrap())])).unwrap_err();
    assert!(matches!(err, AuthError::NotConfigured { .. }));
    let message = err.to_string();
    for needle in [
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "OS_AUTH_TOKEN",
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
        ".huaweicloud/credentials",
    ] {
        assert!(message.contains(needle), "{needle} missing from: {message}");
    }
    assert!(matches!(
        auth::discover(env(&[])),
        Err(AuthError::NotConfigured { .. })
    ));
}

#[test]
fn broken_credentials_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = auth::discover(env(&[(
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
        missing.to_str().unwrap(),
    )]))
    .unwrap_err();
    assert!(matches!(err, AuthError::FileUnreadable { .. }), "{err:?}");

    let cases = [
        ("[global]\nak=A\nsk=S\n", "[basic]"),
        ("[basic]\nak=A\n", "`sk`"),
        ("[basic]\nproject_id=P\n", "`ak` and `sk`"),
    ];
    for (text, needle) in cases {
        let file = dir.path().join("c.ini");
        write_file(&file, text);
        let err = auth::discover(env(&[(
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            file.to_str().unwrap(),
        )]))
        .unwrap_err();
        assert!(matches!(err, AuthError::FileIncomplete { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}
