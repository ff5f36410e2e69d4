//! The admin API as a contract: the OpenAPI document (`GET /v1/openapi.json`, committed as
//! docs/openapi.json) against the live server, and against two tools no one here wrote:
//! `openapi-spec-validator` checks the document, and a bounded `schemathesis` run against the
//! real `paird` binary on loopback (operator token) must find no 5xx answer and no answer the
//! document does not allow. Both come from PyPI, pinned, through `scripts/python-deps`, which
//! this test runs first (it does nothing once they are installed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Method;
use serde_json::Value;

use crate::support::*;

/// The committed document.
fn committed() -> Value {
    let text = std::fs::read_to_string(workspace().join("docs/openapi.json"))
        .expect("docs/openapi.json is committed");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// A path of the document with every `{param}` replaced by a fresh id.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if part.starts_with('{') {
                uuid::Uuid::now_v7().to_string()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_committed_one_and_every_path_has_exactly_its_methods() {
    let test = TestServer::start().await;
    let base = test.server.admin_url();
    // No token needed.
    let answer = reqwest::get(format!("{base}/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let served: Value = answer.json().await.unwrap();
    assert_eq!(
        served,
        committed(),
        "the server serves the committed document"
    );
    assert_eq!(served["openapi"], "3.1.0");

    // For every documented path, the router's `Allow` (a method the path does not take
    // answers 405 with the methods it does) is exactly the document's methods.
    let client = reqwest::Client::new();
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());
    for (path, item) in paths {
        let documented: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|method| method.to_uppercase())
            .collect();
        let answer = client
            .request(Method::TRACE, format!("{base}{}", concrete(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 405, "TRACE {path} is not a route's");
        let allowed: BTreeSet<String> = answer
            .headers()
            .get("allow")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|method| method.trim().to_string())
            .filter(|method| !method.is_empty() && method != "HEAD")
            .collect();
        assert_eq!(
            allowed, documented,
            "{path}: the router's methods, the document's"
        );
    }
    // And the fallback is not mistaken for a route.
    let answer = client
        .request(Method::TRACE, format!("{base}/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    test.stop().await;
}

/// Runs `program` with `args` in `folder`, and fails with what it printed unless it succeeds.
async fn run(program: &Path, args: &[&str], folder: &Path, what: &str) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(folder)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("{what}: {} does not run: {error}", program.display()));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{printed}");
    printed
}

/// The pinned tools, installed on first use; answers their folder.
async fn python_tools() -> PathBuf {
    let pyenv = workspace().join("target/pyenv");
    run(
        &workspace().join("scripts/python-deps"),
        &[],
        &workspace(),
        "scripts/python-deps",
    )
    .await;
    pyenv.join("bin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_passes_openapi_spec_validator_and_schemathesis_finds_nothing() {
    let bin = python_tools().await;
    let document = workspace().join("docs/openapi.json");
    run(
        &bin.join("openapi-spec-validator"),
        &[document.to_str().unwrap()],
        &workspace(),
        "openapi-spec-validator",
    )
    .await;

    // The real binary, with something in it to read: an organization with a key, licenses, a
    // reusable code, a configuration and a paired device, whose ids schemathesis uses for the
    // path parameters (random ids only reach the 404s).
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let paird = crate::processes::spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let started = &paird.started;
    let base = started.ready.admin_url.clone();
    let admin = paird.admin.clone();
    let (org, code) = admin.org_with_code("Contract", 3).await;
    let key = admin.create_key(&org, "contract").await;
    let config = admin.create_config(&org, "Contract", "[GLOBAL]\n").await;
    let (_, _connection, paired) = pair_ok(&started.ready.device_url, &code).await;
    let device = paired.device_id.to_string();
    let license = admin.licenses(&org).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let codes = admin.get(&format!("/v1/organizations/{org}/codes")).await;
    let code_id = codes["items"][0]["id"].as_str().unwrap().to_string();
    let key_id = key["id"].as_str().unwrap().to_string();
    let (status, _) = admin.call(Method::GET, "/v1/whoami", None).await;
    assert_eq!(status, 200);

    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config_file,
        format!(
            "[parameters]\n\
             \"path.org\" = \"{org}\"\n\
             \"path.key\" = \"{key_id}\"\n\
             \"path.license\" = \"{license}\"\n\
             \"path.code\" = \"{code_id}\"\n\
             \"path.config\" = \"{config}\"\n\
             \"path.device\" = \"{device}\"\n"
        ),
    )
    .unwrap();
    let authorization = format!("Authorization: Bearer {OPERATOR_TOKEN}");
    let report = dir.path().join("schemathesis-report");
    let printed = run(
        &bin.join("st"),
        &[
            "--config-file",
            config_file.to_str().unwrap(),
            "run",
            document.to_str().unwrap(),
            "--url",
            &base,
            "--header",
            &authorization,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "16",
            "--max-examples",
            "20",
            // The live feed never ends by itself.
            "--exclude-path",
            "/v1/organizations/{org}/events",
            "--report-dir",
            report.to_str().unwrap(),
            "--no-color",
        ],
        // Its cache (`.schemathesis/`) goes there too: every run starts afresh.
        dir.path(),
        "schemathesis",
    )
    .await;
    println!("{printed}");
    assert!(printed.contains("passed"), "{printed}");
    drop(paird);
}
