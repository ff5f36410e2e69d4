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

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A new data directory and what paird keeps in it are the owner's alone: the directory 0700,
/// the server key, the operator token and (on SQLite) the database and its journal files 0600,
/// and no half-written secret beside them.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_the_owners_alone() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let database = TestDatabase::create(&data).await;
    let mut config = test_config(&data);
    config.operator_token = None;
    database.configure(&mut config);
    let server = server::start(config).await.expect("the server starts");
    let admin = Admin::new(
        &server.admin_url(),
        server
            .new_operator_token
            .as_deref()
            .expect("a new operator token"),
    );
    admin.create_org("Acme").await;
    assert_eq!(mode(&data), 0o700);
    let mut files = vec!["server.key", "operator-token"];
    if matches!(database, TestDatabase::Sqlite { .. }) {
        files.extend(["paird.db", "paird.db-wal", "paird.db-shm"]);
    }
    for file in files {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let names: Vec<String> = std::fs::read_dir(&data)
        .expect("the data directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        !names.iter().any(|name| name.ends_with(".partial")),
        "{names:?}"
    );
    server.shutdown().await;
}

/// A database made with one server key refuses another, and the refused start leaves no key
/// file behind: a new key is written only once the database has recorded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_key_is_kept_only_once_the_database_has_recorded_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let database = TestDatabase::create(&data).await;
    let mut config = test_config(&data);
    database.configure(&mut config);
    let server = server::start(config.clone())
        .await
        .expect("the first start");
    server.shutdown().await;
    let key = data.join("server.key");
    assert!(key.exists());
    std::fs::remove_file(&key).expect("the key file removed");
    let Err(refused) = server::start(config).await else {
        panic!("a database made with another key started");
    };
    assert!(refused.to_string().contains("server key"), "{refused:#}");
    assert!(!key.exists(), "no key file left behind");
}
