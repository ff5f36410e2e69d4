//! TLS terminated by paird itself: devices pair over `wss://`, the admin API answers over
//! `https://`, and a renewed certificate is served without a restart (when the files change, and
//! on SIGHUP). Certificates are made in the test (rcgen).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use client::stream::client_config;
use client::{ConnectOptions, Connection, PairResult};
use protocol::Encoding;
use rustls_pki_types::ServerName;
use server::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate");
    (made.cert.pem(), made.signing_key.serialize_pem())
}

/// Writes a file whole, by renaming a finished copy over it (as certificate tools do).
fn replace(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

struct Pki {
    files: TlsFiles,
    /// Trusted by the test's clients: every certificate the test will serve.
    ca_file: PathBuf,
}

/// The first certificate in place, and a CA file trusting it and `later` ones.
fn pki(dir: &Path, first: &(String, String), later: &[&(String, String)]) -> Pki {
    let files = TlsFiles {
        certificate: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    replace(&files.certificate, &first.0);
    replace(&files.key, &first.1);
    let ca_file = dir.join("ca.pem");
    let trusted: String = std::iter::once(first)
        .chain(later.iter().copied())
        .map(|(cert, _)| cert.as_str())
        .collect();
    std::fs::write(&ca_file, trusted).unwrap();
    Pki { files, ca_file }
}

/// The leaf certificate a new TLS connection to `address` is served (DER).
async fn served_certificate(address: std::net::SocketAddr, ca_file: &Path) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(client_config(Some(ca_file)).unwrap());
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn admin_devices_len(test: &TestServer, pki: &Pki, org: &str) -> usize {
    let tls = client_config(Some(&pki.ca_file)).unwrap();
    Admin::with_tls(&test.server.admin_url(), OPERATOR_TOKEN, &tls)
        .devices(org)
        .await
        .len()
}

fn device_options(ca_file: &Path) -> ConnectOptions {
    ConnectOptions {
        tls: Some(client_config(Some(ca_file)).unwrap()),
        ..ConnectOptions::with_encoding(Encoding::Postcard)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_pair_over_wss_and_the_admin_api_answers_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), &certificate(), &[]);
    let files = pki.files.clone();
    let test = TestServer::start_with(|config| config.tls = Some(files)).await;
    assert!(test.server.device_url().starts_with("wss://"));
    let tls = client_config(Some(&pki.ca_file)).unwrap();
    let admin = Admin::with_tls(&test.server.admin_url(), OPERATOR_TOKEN, &tls);
    let (org, code) = admin.org_with_code("Acme", 2).await;
    // The QR payload tells devices to use TLS.
    let created = admin.reusable_code(&org, serde_json::json!({})).await;
    let payload =
        protocol::PairingPayload::parse(created["payload_uri"].as_str().unwrap()).unwrap();
    assert!(payload.tls, "{created}");
    let mut device = Connection::connect(&test.server.device_url(), &device_options(&pki.ca_file))
        .await
        .expect("a wss connection");
    let result = device
        .pair(&code, &identity(), &device_info("over TLS"))
        .await
        .unwrap();
    assert!(matches!(result, PairResult::Paired(_)), "{result:?}");
    assert_eq!(admin.devices(&org).await.len(), 1);
    // A client that does not trust the certificate is refused, and so is plain HTTP.
    let untrusted = Connection::connect(
        &test.server.device_url(),
        &ConnectOptions {
            tls: Some(client_config(None).unwrap()),
            ..ConnectOptions::default()
        },
    )
    .await;
    assert!(
        matches!(untrusted, Err(client::ClientError::Tls(_))),
        "{untrusted:?}"
    );
    let mut plain = TcpStream::connect(test.server.admin_addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: paird\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP is not served"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (certificate(), certificate());
    let pki = pki(dir.path(), &first, &[&second]);
    let files = pki.files.clone();
    let test = TestServer::start_with(|config| config.tls = Some(files)).await;
    let device = test.server.device_addr;
    let admin = test.server.admin_addr;
    assert_eq!(
        served_certificate(device, &pki.ca_file).await,
        der(&first.0)
    );
    // A device that connected before the renewal keeps its connection.
    let mut before = Connection::connect(&test.server.device_url(), &device_options(&pki.ca_file))
        .await
        .unwrap();
    replace(&pki.files.key, &second.1);
    replace(&pki.files.certificate, &second.0);
    eventually("the renewed certificate on the device listener", || async {
        (served_certificate(device, &pki.ca_file).await == der(&second.0)).then_some(())
    })
    .await;
    assert_eq!(
        served_certificate(admin, &pki.ca_file).await,
        der(&second.0)
    );
    // A broken renewal (a key that is not the certificate's) keeps the one in use.
    replace(&pki.files.key, &certificate().1);
    for _ in 0..3 {
        assert_eq!(
            served_certificate(device, &pki.ca_file).await,
            der(&second.0)
        );
    }
    let (org, code) = Admin::with_tls(
        &test.server.admin_url(),
        OPERATOR_TOKEN,
        &client_config(Some(&pki.ca_file)).unwrap(),
    )
    .org_with_code("Acme", 1)
    .await;
    let result = before
        .pair(&code, &identity(), &device_info("connected before"))
        .await
        .unwrap();
    assert!(matches!(result, PairResult::Paired(_)), "{result:?}");
    assert_eq!(admin_devices_len(&test, &pki, &org).await, 1);
    test.stop().await;
}

/// The same length and modification time as before, so that only the signal can tell.
fn replace_unnoticed(path: &Path, text: &str) {
    let before = std::fs::metadata(path).unwrap();
    let mut padded = text.to_string();
    assert!(padded.len() <= before.len() as usize);
    padded.push_str(&"\n".repeat(before.len() as usize - padded.len()));
    replace(path, &padded);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_paird_read_its_certificate_again() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (certificate(), certificate());
    let pki = pki(dir.path(), &first, &[&second]);
    // Both files padded to one length, so that the renewal can keep it.
    for (path, text) in [
        (&pki.files.certificate, &first.0),
        (&pki.files.key, &first.1),
    ] {
        replace(path, &format!("{text}{}", "\n".repeat(4096 - text.len())));
    }
    let data = dir.path().join("data");
    let database = TestDatabase::create(&data).await;
    let mut child = serve_command(&data)
        .args(database.serve_args())
        .arg("--tls-cert")
        .arg(&pki.files.certificate)
        .arg("--tls-key")
        .arg(&pki.files.key)
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .expect("paird starts");
    let started = wait_until_ready(&mut child).await.expect("ready");
    let device = started.ready.device_address;
    assert!(started.ready.device_url.starts_with("wss://"));
    assert!(started.ready.admin_url.starts_with("https://"));
    assert_eq!(
        served_certificate(device, &pki.ca_file).await,
        der(&first.0)
    );
    replace_unnoticed(&pki.files.key, &second.1);
    replace_unnoticed(&pki.files.certificate, &second.0);
    let pid = child.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    eventually("the certificate read again on SIGHUP", || async {
        (served_certificate(device, &pki.ca_file).await == der(&second.0)).then_some(())
    })
    .await;
    child.kill().await.unwrap();
}
