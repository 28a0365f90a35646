//! The signer must reproduce every vector produced by the official Huawei Cloud SDK signer
//! (`shared/testdata/aksk-vectors.json`; a copy lives in `tests/data/` so the crate tests
//! stand alone, and the shared original is preferred when it is present).

use std::path::PathBuf;

use imsreg::ims::signer::{self, SigningInput};
use serde_json::Value;

fn vectors() -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/testdata/aksk-vectors.json");
    let path = if shared.exists() {
        shared
    } else {
        root.join("tests/data/aksk-vectors.json")
    };
    let text = std::fs::read_to_string(&path).expect("vector file readable");
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[test]
fn reproduces_every_sdk_vector() {
    let doc = vectors();
    let list = doc["vectors"].as_array().expect("vectors array");
    assert!(list.len() >= 8, "expected the full vector set");
    for vector in list {
        let id = vector["id"].as_str().unwrap();
        let creds = &vector["credentials"];
        let request = &vector["request"];
        let expected = &vector["expected"];

        let mut headers: Vec<(String, String)> = request["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        if let Some(project) = str_of(&creds["project_id"]) {
            headers.push(("X-Project-Id".into(), project));
        }
        if let Some(token) = str_of(&creds["security_token"]) {
            headers.push(("X-Security-Token".into(), token));
        }
        let host = request["host"].as_str().unwrap();
        signer::prepare_headers(&mut headers, host, chrono::Utc::now());

        let query: Vec<(String, String)> = request["query"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_string(),
                    pair[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let body = request["body"].as_str().unwrap_or("").as_bytes();
        let input = SigningInput {
            method: request["method"].as_str().unwrap(),
            path: request["path"].as_str().unwrap(),
            query: &query,
            headers: &headers,
            body,
        };
        let sig = signer::sign(&input, creds["sk"].as_str().unwrap().as_bytes(), None);
        assert_eq!(
            sig.canonical_request,
            expected["canonical_request"].as_str().unwrap(),
            "{id}: canonical request"
        );
        assert_eq!(
            sig.string_to_sign,
            expected["string_to_sign"].as_str().unwrap(),
            "{id}: string to sign"
        );
        let authorization = sig.authorization(creds["ak"].as_str().unwrap());
        assert_eq!(
            authorization,
            expected["authorization"].as_str().unwrap(),
            "{id}: Authorization"
        );

        // The verifying side, given only the declared header list, reaches the same signature.
        let parsed = signer::parse_authorization(expected["authorization"].as_str().unwrap())
            .expect("parsable Authorization");
        let reverified = signer::sign(
            &input,
            creds["sk"].as_str().unwrap().as_bytes(),
            Some(&parsed.signed_headers),
        );
        assert!(
            signer::signatures_match(&reverified.signature, parsed.signature),
            "{id}: verify"
        );

        headers.push(("Authorization".into(), authorization));
        let mut sent: Vec<(String, String)> = expected["headers_sent"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        sent.sort();
        headers.sort();
        assert_eq!(headers, sent, "{id}: headers sent");

        let canonical_query = signer::canonical_query(&query);
        let url_sent = if canonical_query.is_empty() {
            format!("https://{host}{}", request["path"].as_str().unwrap())
        } else {
            format!(
                "https://{host}{}?{canonical_query}",
                request["path"].as_str().unwrap()
            )
        };
        assert_eq!(
            url_sent,
            expected["url_sent"].as_str().unwrap(),
            "{id}: url"
        );
    }
}
