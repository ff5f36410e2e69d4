//! Real `paird` processes: two on one SQLite file, a SIGKILL mid-burst, a clean restart, the
//! command-line device. Each runs on the backend the suite runs on (`--database` for
//! PostgreSQL), except the test about SQLite itself.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use client::{PairResult, ResumeResult};
use futures_util::future::join_all;
use protocol::Encoding;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::*;

pub(crate) struct Paird {
    pub(crate) child: Child,
    pub(crate) device_url: String,
    pub(crate) admin: Admin,
    /// What the process printed on start-up: the banner, then the ready line.
    pub(crate) started: Startup,
}

pub(crate) async fn spawn_paird(
    data_dir: &Path,
    database: &TestDatabase,
    token: Option<&str>,
) -> Paird {
    spawn_paird_with(data_dir, database, token, &[]).await
}

/// Starts `paird serve` on `database` with `extra` arguments and waits for its ready line. The
/// admin client uses `token`, or else the operator token this start created.
async fn spawn_paird_with(
    data_dir: &Path,
    database: &TestDatabase,
    token: Option<&str>,
    extra: &[&str],
) -> Paird {
    let mut command = serve_command(data_dir);
    command
        .args(database.serve_args())
        .args(extra)
        .env_remove("PAIRD_OPERATOR_TOKEN")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    if let Some(token) = token {
        command.env("PAIRD_OPERATOR_TOKEN", token);
    }
    let mut child = command.spawn().expect("paird starts");
    let started = wait_until_ready(&mut child)
        .await
        .unwrap_or_else(|error| panic!("paird did not start: {error}"));
    let token = token
        .map(str::to_string)
        .or_else(|| started.ready.new_operator_token.clone())
        .unwrap_or_default();
    Paird {
        child,
        device_url: started.ready.device_url.clone(),
        admin: Admin::new(&started.ready.admin_url, &token),
        started,
    }
}

pub(crate) async fn sigterm(child: &mut Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(exit.success(), "clean shutdown: {exit}");
}

/// SQLite only, whatever `PAIRD_TEST_BACKEND` says: this is about SQLite's own locking, two
/// processes that each have one writer connection on one file and wait for each other through
/// the busy timeout. Several nodes on one PostgreSQL database are a cluster, tested in
/// `server/tests/cluster/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_sqlite_file_never_assign_a_license_twice() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::sqlite(dir.path());
    let first = spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let second = spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let (org, code) = first.admin.org_with_code("Acme", 20).await;

    let mut connections = Vec::new();
    for index in 0..120 {
        let url = if index % 2 == 0 {
            &first.device_url
        } else {
            &second.device_url
        };
        connections.push(connect(url, Encoding::Postcard).await);
    }
    let results = join_all(connections.into_iter().map(|mut connection| {
        let code = code.clone();
        async move {
            connection
                .pair(&code, &identity(), &device_info("racer"))
                .await
                .expect("answered")
        }
    }))
    .await;
    let paired = results
        .iter()
        .filter(|result| matches!(result, PairResult::Paired(_)))
        .count();
    assert_eq!(paired, 20);
    assert!(
        results
            .iter()
            .filter_map(refusal)
            .all(|reason| reason == protocol::RefusalReason::NoFreeLicense)
    );
    assert_eq!(database.assignment_counts().await, (20, 20, 20));
    assert_eq!(second.admin.summary(&org).await["assigned"], json!(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_pairings_keeps_every_acknowledged_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let mut paird = spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let devices = 600;
    let (org, code) = paird.admin.org_with_code("Acme", devices).await;
    let mut connections = Vec::new();
    for _ in 0..devices {
        connections.push(connect(&paird.device_url, Encoding::Postcard).await);
    }
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let burst = join_all(connections.into_iter().map(|mut connection| {
        let code = code.clone();
        let acknowledged = Arc::clone(&acknowledged);
        async move {
            let identity = identity();
            match connection
                .pair(&code, &identity, &device_info("burst"))
                .await
            {
                Ok(PairResult::Paired(paired)) => {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    Some((identity, paired))
                }
                _ => None,
            }
        }
    }));
    let killer = async {
        eventually("some pairings to be acknowledged", || async {
            (acknowledged.load(Ordering::SeqCst) >= 30).then_some(())
        })
        .await;
        paird.child.start_kill().expect("SIGKILL");
    };
    let (results, ()) = tokio::join!(burst, killer);
    let _ = paird.child.wait().await;
    let acknowledged: Vec<_> = results.into_iter().flatten().collect();
    assert!(acknowledged.len() >= 30);

    let restarted = spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let listed = restarted.admin.license_of_each_device(&org).await;
    for (_, paired) in &acknowledged {
        assert_eq!(
            listed.get(&paired.device_id.to_string()),
            Some(&paired.license_id.to_string()),
            "an acknowledged pairing was lost"
        );
    }
    let (assigned, distinct, active) = database.assignment_counts().await;
    assert_eq!(
        (assigned, distinct),
        (active, active),
        "no license half-assigned or doubled"
    );
    let summary = restarted.admin.summary(&org).await;
    assert_eq!(summary["free"], json!(i64::from(devices) - active));
    // Acknowledged devices reconnect to the restarted server.
    let (identity, paired) = &acknowledged[0];
    let mut connection = connect(&restarted.device_url, Encoding::Json).await;
    let resumed = connection
        .resume(identity, &device_info("burst"), None)
        .await
        .unwrap();
    assert!(matches!(resumed, ResumeResult::Resumed(ref r) if r.device_id == paired.device_id));
}

/// A replacement ends the old pairing and grants its license to the new installation in one
/// transaction: killed in the middle of a burst of replacements, the server comes back with each
/// license held by exactly one of the two devices, never both, never neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_replacements_leaves_each_license_with_exactly_one_of_the_two() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let mut paird = spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let devices = 300;
    let (org, code) = paird.admin.org_with_code("Acme", devices).await;
    // The devices to replace, connected (each is told when its replacement pairs).
    let mut old = Vec::new();
    for _ in 0..devices {
        let (_, connection, paired) = pair_ok(&paird.device_url, &code).await;
        old.push((connection, paired));
    }
    let mut replacements = Vec::new();
    for (_, paired) in &old {
        let answer = paird
            .admin
            .post(
                &format!(
                    "/v1/organizations/{org}/devices/{}/replace",
                    paired.device_id
                ),
                json!({ "validity_seconds": 3600 }),
            )
            .await;
        replacements.push(answer["code"].as_str().unwrap().to_string());
    }
    let mut connections = Vec::new();
    for _ in 0..devices {
        connections.push(connect(&paird.device_url, Encoding::Postcard).await);
    }
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let burst = join_all(connections.into_iter().zip(&replacements).map(
        |(mut connection, replacement)| {
            let acknowledged = Arc::clone(&acknowledged);
            async move {
                match connection
                    .pair(replacement, &identity(), &device_info("replacement"))
                    .await
                {
                    Ok(PairResult::Paired(paired)) => {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                        Some(paired)
                    }
                    _ => None,
                }
            }
        },
    ));
    let killer = async {
        eventually("some replacements to be acknowledged", || async {
            (acknowledged.load(Ordering::SeqCst) >= 30).then_some(())
        })
        .await;
        paird.child.start_kill().expect("SIGKILL");
    };
    let (results, ()) = tokio::join!(burst, killer);
    let _ = paird.child.wait().await;

    let restarted = spawn_paird(dir.path(), &database, Some(OPERATOR_TOKEN)).await;
    let listed = restarted.admin.devices(&org).await;
    let holder: std::collections::HashMap<String, &serde_json::Value> = listed
        .iter()
        .map(|device| (device["license_id"].as_str().unwrap().to_string(), device))
        .collect();
    assert_eq!(
        listed.len(),
        devices as usize,
        "a license lost its device, or gained two"
    );
    assert_eq!(holder.len(), devices as usize, "a license is held twice");
    let mut moved: i64 = 0;
    for ((_, paired), result) in old.iter().zip(&results) {
        let device = holder
            .get(&paired.license_id.to_string())
            .expect("every license is held by the old device or its replacement");
        let id = device["id"].as_str().unwrap();
        if id != paired.device_id.to_string() {
            moved += 1;
            assert_eq!(device["reported_name"], json!("replacement"), "{device}");
        }
        if let Some(new) = result {
            assert_eq!(
                id,
                new.device_id.to_string(),
                "an acknowledged replacement was lost"
            );
        }
    }
    let acknowledged = results.iter().flatten().count() as i64;
    eprintln!("replacements: {moved} moved, {acknowledged} acknowledged of {devices}");
    assert!(
        moved >= acknowledged && acknowledged >= 30,
        "{moved} {acknowledged}"
    );
    // The database agrees with itself: each replacement that happened ended its old device as
    // replaced and spent its code, and nothing else did.
    let counts = database
        .integers(
            "SELECT (SELECT COUNT(*) FROM devices WHERE end_cause = 'replaced'), \
             (SELECT COUNT(*) FROM codes WHERE replaces_device IS NOT NULL \
              AND used_at IS NOT NULL)",
        )
        .await;
    assert_eq!(counts, vec![moved, moved]);
    let (assigned, distinct, active) = database.assignment_counts().await;
    assert_eq!(
        (assigned, distinct, active),
        (active, active, i64::from(devices))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let mut paird = spawn_paird(dir.path(), &database, None).await;
    // First start: a new operator token is printed for the operator, in the banner and in the
    // ready line, and saved.
    let printed = paird
        .started
        .ready
        .new_operator_token
        .clone()
        .expect("the ready line carries the new token");
    assert!(printed.starts_with("paird_op_"), "{printed}");
    assert!(
        paird
            .started
            .banner
            .iter()
            .any(|line| line.contains("operator token") && line.contains(&printed)),
        "the banner shows the new token: {:?}",
        paird.started.banner
    );
    let saved = std::fs::read_to_string(dir.path().join("operator-token")).unwrap();
    assert_eq!(saved.trim(), printed);
    // The rest of the ready line.
    let ready = &paird.started.ready;
    assert_eq!(ready.version, env!("CARGO_PKG_VERSION"));
    assert!(ready.device_url.starts_with("ws://127.0.0.1:"), "{ready:?}");
    assert!(
        ready.device_url.ends_with(protocol::DEVICE_PATH),
        "{ready:?}"
    );
    assert!(
        ready.admin_url.starts_with("http://127.0.0.1:"),
        "{ready:?}"
    );
    let expected_database = match &database {
        TestDatabase::Sqlite { path } => format!("sqlite://{}", path.display()),
        TestDatabase::Postgres { url, .. } => url.clone(),
    };
    assert_eq!(ready.database, expected_database);

    let admin = paird.admin.clone();
    let (org, code) = admin.org_with_code("Acme", 2).await;
    let config = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let codes = admin.get(&format!("/v1/organizations/{org}/codes")).await;
    let code_id = codes["items"][0]["id"].as_str().unwrap().to_string();
    let (identity, mut connection, paired) = pair_ok(&paird.device_url, &code).await;
    let received = next_configuration(&mut connection).await;
    connection
        .ack(
            protocol::ConfigRef {
                configuration_id: received.configuration_id,
                revision: received.revision,
            },
            protocol::AckOutcome::Applied,
        )
        .await
        .unwrap();
    let device_before = admin.device(&org, &paired.device_id.to_string()).await;
    sigterm(&mut paird.child).await;
    // The device was told the server is going away.
    let closed = connection.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(protocol::CloseCode::GoingAway));

    let restarted = spawn_paird(dir.path(), &database, None).await;
    assert!(
        !restarted
            .started
            .banner
            .iter()
            .any(|line| line.contains("paird_op_")),
        "no new token on a restart"
    );
    assert_eq!(restarted.started.ready.new_operator_token, None);
    let admin = Admin::new(restarted.admin.base(), &printed);
    let mut device_after = admin.device(&org, &paired.device_id.to_string()).await;
    let mut expected = device_before.clone();
    for shown in [&mut device_after, &mut expected] {
        shown.as_object_mut().unwrap().remove("last_seen");
        shown.as_object_mut().unwrap().remove("online");
    }
    assert_eq!(device_after, expected);
    let shown = admin
        .get(&format!("/v1/organizations/{org}/codes/{code_id}/reveal"))
        .await;
    assert_eq!(
        shown["code"],
        json!(code),
        "the server key survived the restart"
    );
    let mut again = connect(&restarted.device_url, Encoding::Postcard).await;
    let current = protocol::ConfigRef {
        configuration_id: config.parse().unwrap(),
        revision: 1,
    };
    let resumed = again
        .resume(&identity, &device_info("device"), Some(current))
        .await
        .unwrap();
    assert!(matches!(resumed, ResumeResult::Resumed(_)));
    admin
        .edit_config(&org, &config, "[GLOBAL]\nafter_restart = 1\n")
        .await;
    assert_eq!(next_configuration(&mut again).await.revision, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_device_pairs_prints_configurations_and_reconnects() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 1).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nfrom_cli = 1\n")
        .await;
    let code = admin.reusable_code(&org, json!({})).await;
    let payload = code["payload_uri"].as_str().unwrap();
    let state = test.dir.path().join("device.json");
    let written = test.dir.path().join("applied.ini");

    let output = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_paird"))
            .args([
                "device",
                "pair",
                payload,
                "--once",
                "--encoding",
                "json",
                "--state",
            ])
            .arg(&state)
            .arg("--config-out")
            .arg(&written)
            .output(),
    )
    .await
    .expect("the device finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("paired: device"), "{stdout}");
    assert!(stdout.contains("from_cli = 1"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "[GLOBAL]\nfrom_cli = 1\n"
    );
    let devices = admin.devices(&org).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["applied"]["revision"], json!(1));
    // The state file keeps the credential private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "state file readable by others: {mode:o}");
    }

    // Later: the configuration changed while the device was off; it reconnects from its state
    // file and receives the new revision.
    admin
        .edit_config(&org, &config, "[GLOBAL]\nfrom_cli = 2\n")
        .await;
    let output = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_paird"))
            .args(["device", "run", "--once", "--state"])
            .arg(&state)
            .output(),
    )
    .await
    .expect("the device finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("resumed: device"), "{stdout}");
    assert!(stdout.contains("revision 2"), "{stdout}");
    let device = admin.device(&org, devices[0]["id"].as_str().unwrap()).await;
    assert_eq!(device["applied"]["revision"], json!(2));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_prints_a_code_that_pairs_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let paird = spawn_paird_with(dir.path(), &database, None, &["--demo"]).await;
    // The ready line comes after the demo's code: everything it prints is in the banner.
    let payload = paird
        .started
        .banner
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix("payload")
                .map(|p| p.trim().to_string())
        })
        .expect("payload printed");
    assert!(
        paird
            .started
            .banner
            .iter()
            .any(|line| line.contains('\u{2588}')),
        "a QR is printed"
    );
    let payload = protocol::PairingPayload::parse(&payload).unwrap();
    assert_eq!(payload.websocket_url(), paird.device_url);
    let (_, mut connection, paired) = pair_ok(&paird.device_url, payload.code.as_str()).await;
    assert!(!paired.configuration_pending);
    let configuration = next_configuration(&mut connection).await;
    assert!(configuration.body.contains("[GLOBAL]"));
}

/// The banner's value after `label` (a line `label  value`), if it printed one.
fn banner_value(paird: &Paird, label: &str) -> Option<String> {
    paird.started.banner.iter().find_map(|line| {
        line.trim()
            .strip_prefix(label)
            .filter(|rest| rest.starts_with(' '))
            .map(|rest| rest.trim().to_string())
    })
}

/// What `--demo` printed for signing in to the portal: the portal's address and the demo key,
/// after checking that the address serves the portal and the key opens the demo organization.
async fn demo_sign_in(paird: &Paird) -> String {
    let portal = banner_value(paird, "portal").expect("the portal's address printed");
    assert_eq!(portal, format!("{}/portal/", paird.admin.base()));
    assert_eq!(
        paird.started.ready.portal_url, portal,
        "the ready line has it too"
    );
    let page = reqwest::get(&portal).await.expect("the portal answers");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("paird Customer Portal"));

    let key = banner_value(paird, "demo key").expect("a key printed");
    assert!(key.starts_with("paird_key_"), "{key}");
    let organization = paird
        .started
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("demo organization "))
        .and_then(|rest| rest.rsplit_once(" ("))
        .map(|(_, id)| id.trim_end_matches(')').to_string())
        .expect("the demo organization printed");
    let me = paird.admin.with_token(&key).get("/v1/whoami").await;
    assert_eq!(me["role"], json!("organization_key"), "{me}");
    assert_eq!(me["organization_id"], json!(organization), "{me}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_prints_the_portal_and_a_key_that_signs_in_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let key_file = dir.path().join("demo-key");

    let mut paird = spawn_paird_with(dir.path(), &database, None, &["--demo"]).await;
    let operator = paird
        .started
        .ready
        .new_operator_token
        .clone()
        .expect("the first start creates an operator token");
    let key = demo_sign_in(&paird).await;
    assert!(
        paird
            .started
            .banner
            .iter()
            .any(|line| line.contains("created by this start")),
        "{:?}",
        paird.started.banner
    );
    // Kept like the operator token: in the data directory, for its owner only.
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // A restart prints the same key: the API would not show it again, the file keeps it.
    sigterm(&mut paird.child).await;
    let mut paird = spawn_paird_with(dir.path(), &database, Some(&operator), &["--demo"]).await;
    assert_eq!(demo_sign_in(&paird).await, key);
    assert!(
        paird
            .started
            .banner
            .iter()
            .any(|line| line.contains("kept from an earlier start")),
        "{:?}",
        paird.started.banner
    );

    // Revoked (by the operator, on the portal's Keys page or with the API), it is replaced by a
    // new "demo" key at the next start.
    let org = paird.admin.with_token(&key).get("/v1/whoami").await["organization_id"]
        .as_str()
        .unwrap()
        .to_string();
    let keys = paird
        .admin
        .get(&format!("/v1/organizations/{org}/keys"))
        .await;
    let demo = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == "demo")
        .expect("the key is named demo")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = paird
        .admin
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/organizations/{org}/keys/{demo}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    sigterm(&mut paird.child).await;
    let paird = spawn_paird_with(dir.path(), &database, Some(&operator), &["--demo"]).await;
    let replaced = demo_sign_in(&paird).await;
    assert_ne!(replaced, key);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), replaced);
}
