//! The database holds no usable secret in plain text: read what it stored and look.
//!
//! On SQLite that is the database file and its companions; on PostgreSQL this database's table
//! and index files, the write-ahead log written meanwhile and every table's rows read back with
//! SQL (see `TestDatabase::stored_bytes`).

use memchr::memmem;
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
    let database = test.database.clone();
    let _dir = test.stop().await;

    let credential_hex: String = identity
        .credential
        .0
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let secrets: Vec<Vec<u8>> = [
        reusable["code"].as_str().unwrap().to_string(),
        single["code"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
        OPERATOR_TOKEN.to_string(),
        identity.credential.to_text(),
        // How a `bytea` column shows in the rows PostgreSQL gives back.
        credential_hex,
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

    let stored = database.stored_bytes().await;
    assert!(!stored.is_empty(), "the database files were read");
    for (name, bytes) in &stored {
        for secret in &secrets {
            assert!(
                memmem::find(bytes, secret).is_none(),
                "{name} contains a secret in plain text"
            );
        }
    }
    // The check can fail: the installation id (not a secret) is found in the same files.
    let id = identity.installation_id.as_bytes();
    assert!(
        stored
            .iter()
            .any(|(_, bytes)| memmem::find(bytes, id).is_some()),
        "the installation id is stored, so the files were the right ones"
    );
}
