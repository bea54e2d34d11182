//! The engine's OpenAPI 3.1 document (`docs/openapi.json`, served at
//! `GET /openapi.json`) checked against the router: the same paths as the
//! router declares, and for every path each method the document names is
//! routed while every other one is a 405.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;

use crate::engine::{PAY, TOKEN, artifact, config, send, with_stable};

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The paths `src/engine/http.rs` routes (`.route("/…", …)`).
fn routed_paths() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine/http.rs");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let quoted = rest.trim_start();
        if let Some(q) = quoted.strip_prefix('"') {
            out.insert(q[..q.find('"').unwrap()].to_string());
        }
    }
    out
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(documented, routed_paths());

    let a = artifact(&[PAY]);
    let (_e, app, _sink) = with_stable(config(), &[&a]).await;
    let served = send(&app, "GET", "/openapi.json", vec![], None).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.json(), doc);

    for (path, item) in paths {
        let concrete = path
            .replace("{hash}", &"0".repeat(64))
            .replace("{id}", "ap-0");
        for method in METHODS {
            let upper = method.to_uppercase();
            let r = send(&app, &upper, &concrete, b"{}".to_vec(), Some(TOKEN)).await;
            let routed = r.status != StatusCode::METHOD_NOT_ALLOWED
                && !(r.status == StatusCode::NOT_FOUND && r.text().contains("no such route"));
            assert_eq!(
                routed,
                item.get(method).is_some(),
                "{upper} {concrete}: {} {}",
                r.status,
                r.text()
            );
            // Every answer the document lists for it has a status it names.
            if let Some(op) = item.get(method) {
                let code = r.status.as_u16().to_string();
                assert!(
                    op["responses"].get(&code).is_some(),
                    "{upper} {path} answered {code}, which the document does not list"
                );
                assert!(op["summary"].is_string());
            }
        }
    }
}
