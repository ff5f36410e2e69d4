//! The device endpoint's handshake rate: TCP connect, the TLS handshake (when paird terminates
//! TLS itself) and the WebSocket handshake, with a 2048-bit RSA certificate, a P-256 one, and
//! without TLS. The certificates are made by `openssl` (ring, which paird's TLS uses, cannot
//! generate RSA keys). One iteration opens `concurrency` connections at once and closes them;
//! criterion reports the time per iteration, so handshakes/s = concurrency / time. Client and
//! server share this machine's two cores, so the figure is a lower bound on the server's own.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{ConnectOptions, Connection};
use criterion::{Criterion, criterion_group, criterion_main};
use server::{ServerConfig, TlsFiles};

/// A self-signed certificate for 127.0.0.1 made by openssl with `key` (`rsa:2048` or `ec`).
fn certificate(dir: &Path, name: &str, key: &[&str]) -> TlsFiles {
    let files = TlsFiles {
        certificate: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    // A leaf, not a CA (openssl's default for -x509): the client trusts it directly.
    let config = dir.join("leaf.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name = dn\nx509_extensions = leaf\nprompt = no\n\
         [dn]\nCN = 127.0.0.1\n\
         [leaf]\nbasicConstraints = critical,CA:FALSE\nextendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1\n",
    )
    .expect("openssl configuration");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "1", "-config"])
        .arg(&config)
        .args(key)
        .arg("-keyout")
        .arg(&files.key)
        .arg("-out")
        .arg(&files.certificate)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian: openssl) makes the benchmark's certificates");
    assert!(status.success(), "openssl failed");
    files
}

async fn handshakes(url: &str, options: &ConnectOptions, concurrency: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let url = url.to_string();
            let options = options.clone();
            tokio::spawn(async move {
                let connection = Connection::connect(&url, &options)
                    .await
                    .expect("handshake");
                drop(connection);
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn tls(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let variants: [(&str, Option<TlsFiles>); 3] = [
        ("plain", None),
        (
            "P-256",
            Some(certificate(
                dir.path(),
                "p256",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            )),
        ),
        (
            "RSA 2048",
            Some(certificate(dir.path(), "rsa", &["-newkey", "rsa:2048"])),
        ),
    ];
    let mut group = c.benchmark_group("device handshake");
    group.sample_size(10);
    for (name, files) in variants {
        let data = tempfile::tempdir().expect("temporary directory");
        let mut config = ServerConfig::ephemeral(data.path());
        config.operator_token = Some(format!("bench-{}", uuid::Uuid::new_v4().simple()));
        config.device.max_unproven_per_address = 0;
        let mut options = ConnectOptions::default();
        if let Some(files) = &files {
            options.tls =
                Some(client::stream::client_config(Some(&files.certificate)).expect("client TLS"));
        }
        config.tls = files;
        let server = runtime
            .block_on(server::start(config))
            .expect("server starts");
        let url = Arc::new(server.device_url());
        for concurrency in [1usize, 32] {
            group.throughput(criterion::Throughput::Elements(concurrency as u64));
            group.bench_function(format!("{name}, {concurrency} at once"), |b| {
                b.to_async(&runtime).iter_custom(|iterations| {
                    let url = Arc::clone(&url);
                    let options = options.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            total += handshakes(&url, &options, concurrency).await;
                        }
                        total
                    }
                })
            });
        }
        runtime.block_on(server.shutdown());
    }
    group.finish();
}

criterion_group!(benches, tls);
criterion_main!(benches);
