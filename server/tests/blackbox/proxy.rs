//! paird behind a real nginx (Debian's, installed by `scripts/proxy-deps`), run with the
//! configuration of docs/nginx.conf: TLS ends at nginx, the device stream carries the PROXY
//! protocol and the admin API `X-Forwarded-For`. Clients connect from distinct loopback
//! addresses, so that paird can only tell them apart by what nginx passes on.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use client::stream::client_config;
use client::{ConnectOptions, Connection, PairResult, ResumeResult};
use protocol::{Encoding, RefusalReason};
use server::TrustedProxies;

use crate::support::*;

const NGINX: &str = "/usr/sbin/nginx";
const BAD_CLIENT: [u8; 4] = [127, 0, 0, 2];
const GOOD_DEVICE: [u8; 4] = [127, 0, 0, 3];
const ADMIN_CLIENT: [u8; 4] = [127, 0, 0, 4];

/// Installs nginx with `scripts/proxy-deps` when it is missing, once per test process.
fn ensure_nginx_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        if Path::new(NGINX).exists()
            && Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists()
        {
            return Ok(());
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/proxy-deps");
        let output = Command::new(&script)
            .output()
            .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed:\n{}\n{}",
                script.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(error) = result {
        panic!("the proxy test needs nginx: {error}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx running docs/nginx.conf with the test's ports, certificate and paths; stopped on drop.
struct Nginx {
    child: std::process::Child,
    device_port: u16,
    admin_port: u16,
}

impl Drop for Nginx {
    /// A fast shutdown (SIGTERM): the master stops its workers (SIGKILL would leave them).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(dir: &Path, certificate: &Path, key: &Path, paird: (SocketAddr, SocketAddr)) -> Nginx {
        ensure_nginx_installed();
        let documented =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/nginx.conf"))
                .unwrap();
        let (device_port, admin_port) = (free_port(), free_port());
        let replaced = [
            (
                "listen 443 ssl;",
                format!("listen 127.0.0.1:{device_port} ssl;"),
            ),
            (
                "listen 8443 ssl;",
                format!("listen 127.0.0.1:{admin_port} ssl;"),
            ),
            ("/etc/paird/tls.crt", certificate.display().to_string()),
            ("/etc/paird/tls.key", key.display().to_string()),
            ("127.0.0.1:7878", paird.0.to_string()),
            ("127.0.0.1:7879", paird.1.to_string()),
            ("worker_rlimit_nofile 65536;", String::new()),
            (
                "worker_connections 32768;",
                "worker_connections 512;".into(),
            ),
        ];
        let mut config = documented.clone();
        for (documented_value, test_value) in &replaced {
            assert!(
                config.contains(documented_value),
                "docs/nginx.conf no longer says {documented_value:?}: update this test"
            );
            config = config.replace(documented_value, test_value);
        }
        // Only for running it here: in the foreground, files in the test's directory, and as
        // root when the test is root (the workers must read the test's private directory).
        let scratch = dir.display();
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
        let user = if is_root { "user root;\n" } else { "" };
        let config = format!(
            "daemon off;\n{user}pid {scratch}/nginx.pid;\nerror_log {scratch}/error.log info;\n{}",
            config.replacen(
                "http {\n",
                &format!(
                    "http {{\n    access_log {scratch}/access.log;\n    \
                     client_body_temp_path {scratch}/body;\n    \
                     proxy_temp_path {scratch}/proxy;\n    \
                     fastcgi_temp_path {scratch}/fastcgi;\n    \
                     uwsgi_temp_path {scratch}/uwsgi;\n    \
                     scgi_temp_path {scratch}/scgi;\n"
                ),
                1
            )
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let checked = Command::new(NGINX)
            .arg("-t")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = Command::new(NGINX)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Nginx {
            child,
            device_port,
            admin_port,
        }
    }

    fn device_url(&self) -> String {
        format!("wss://127.0.0.1:{}/device", self.device_port)
    }

    fn admin_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.admin_port)
    }
}

fn device_options(ca_file: &Path, from: [u8; 4]) -> ConnectOptions {
    ConnectOptions {
        tls: Some(client_config(Some(ca_file)).unwrap()),
        local_address: Some(IpAddr::from(from)),
        ..ConnectOptions::with_encoding(Encoding::Postcard)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_bad_client_is_limited_while_a_good_device_pairs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (certificate, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&certificate, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let test = TestServer::start_with(|config| {
        config.trusted_proxies = TrustedProxies::new(vec!["127.0.0.1".parse().unwrap()]);
        config.engine.failures_per_address.max_failures = 3;
    })
    .await;
    let nginx = Nginx::start(
        dir.path(),
        &certificate,
        &key,
        (test.server.device_addr, test.server.admin_addr),
    );
    let (org, code) = test.admin.org_with_code("Acme", 5).await;
    let url = nginx.device_url();
    eventually("nginx to accept", || async {
        Connection::connect(&url, &device_options(&certificate, GOOD_DEVICE))
            .await
            .ok()
    })
    .await;

    // A client guessing codes is limited by its own address...
    let mut limited = false;
    for _ in 0..6 {
        let mut bad = Connection::connect(&url, &device_options(&certificate, BAD_CLIENT))
            .await
            .unwrap();
        let answer = bad
            .pair(
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                &identity(),
                &device_info("guess"),
            )
            .await;
        if let Ok(PairResult::Refused(refused)) = answer
            && refused.reason == RefusalReason::RateLimited
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "the guessing client was never limited");
    // ... while a device behind the same proxy pairs, and resumes on a new connection.
    let identity = identity();
    let mut good = Connection::connect(&url, &device_options(&certificate, GOOD_DEVICE))
        .await
        .unwrap();
    match good
        .pair(&code, &identity, &device_info("good"))
        .await
        .unwrap()
    {
        PairResult::Paired(_) => {}
        refused => panic!("the good device was refused: {refused:?}"),
    }
    good.close().await;
    let mut again = Connection::connect(&url, &device_options(&certificate, GOOD_DEVICE))
        .await
        .unwrap();
    let resumed = again
        .resume(&identity, &device_info("good"), None)
        .await
        .unwrap();
    assert!(matches!(resumed, ResumeResult::Resumed(_)), "{resumed:?}");

    // The audit log names the device's own address, not the proxy's.
    let audit = test.admin.audit(&org).await;
    let pairing = audit
        .iter()
        .find(|entry| entry["action"] == "device.paired")
        .unwrap_or_else(|| panic!("no pairing in {audit:?}"));
    assert_eq!(pairing["details"]["address"], "127.0.0.3", "{pairing}");

    // The admin API sees the client nginx names, whatever the client claims itself.
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*client_config(Some(&certificate)).unwrap()).clone())
        .local_address(IpAddr::from(ADMIN_CLIENT))
        .build()
        .unwrap();
    let whoami: serde_json::Value = http
        .get(format!("{}/v1/whoami", nginx.admin_url()))
        .bearer_auth(OPERATOR_TOKEN)
        .header("X-Forwarded-For", "203.0.113.66")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whoami["client_address"], "127.0.0.4", "{whoami}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let test = TestServer::start().await;
    let (status, whoami) = test
        .admin
        .call_with(
            reqwest::Method::GET,
            "/v1/whoami",
            None,
            &[
                ("X-Forwarded-For", "203.0.113.66"),
                ("Forwarded", "for=198.51.100.7"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(whoami["client_address"], "127.0.0.1", "{whoami}");
    test.stop().await;
}
