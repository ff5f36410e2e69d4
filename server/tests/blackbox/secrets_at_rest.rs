//! The database holds no usable secret in plain text: read the files and look.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_hold_no_code_credential_or_key_in_plain_text() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let licenses = admin.add_licenses(&org, 3).await;
    let key = admin.create_key(&org, "portal").await;
    let reusable = admin.reusable_code(&org, json!({ "label": "fleet" })).await;
    let single = admin.single_use_code(&org, &licenses[2]).await;
    let (identity, connection, _) =
        pair_ok(&test.device_url(), reusable["code"].as_str().unwrap()).await;
    connection.close().await;
    let dir = test.stop().await;

    let secrets: Vec<Vec<u8>> = [
        reusable["code"].as_str().unwrap().to_string(),
        single["code"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
        OPERATOR_TOKEN.to_string(),
        identity.credential.to_text(),
    ]
    .into_iter()
    .flat_map(|text| {
        [
            text.to_ascii_uppercase().into_bytes(),
            text.to_ascii_lowercase().into_bytes(),
            text.into_bytes(),
        ]
    })
    .chain([identity.credential.0.to_vec()])
    .collect();

    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("paird.db") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        files += 1;
        for secret in &secrets {
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_slice()),
                "{name} contains a secret in plain text"
            );
        }
    }
    assert!(files >= 1, "the database file was read");
    // The check can fail: the installation id (not a secret) is found in the same files.
    let found = std::fs::read_dir(dir.path()).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        let id = identity.installation_id.as_bytes();
        bytes.windows(id.len()).any(|window| window == id)
    });
    assert!(
        found,
        "the installation id is stored, so the files were the right ones"
    );
}
