//! TLS on the server's listeners, with a certificate that can be replaced while the server runs.
//!
//! The certificate chain and key are read from PEM files (`--tls-cert`, `--tls-key`). Both
//! listeners share one [`ServerTls`]: its resolver hands every new handshake the newest
//! certificate, so a renewed certificate is served without a restart. It is read again on
//! `SIGHUP` and when either file's modification time or size changes (checked every 2 s). A
//! reload that fails (a half-written file, a key that does not match) keeps the certificate in
//! use and logs why; connections already open keep the session they negotiated.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use client::stream::{MaybeTls, TlsSetupError, crypto_provider, read_certificates};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Where the certificate and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub certificate: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// The TLS side of both listeners.
#[derive(Clone)]
pub(crate) struct ServerTls {
    acceptor: TlsAcceptor,
    resolver: Arc<Reloading>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.resolver.files)
            .finish_non_exhaustive()
    }
}

/// The certificate in use, replaced on reload.
struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' (modification time, size) when last read.
    seen: RwLock<Option<[(SystemTime, u64); 2]>>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

impl ServerTls {
    /// Reads the files; fails with a message that names the file at fault.
    pub fn load(files: &TlsFiles) -> anyhow::Result<ServerTls> {
        let seen = stamps(files);
        let key = certified_key(files)?;
        let resolver = Arc::new(Reloading {
            files: files.clone(),
            current: RwLock::new(Arc::new(key)),
            seen: RwLock::new(seen),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    /// The TLS handshake on an accepted connection.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<MaybeTls> {
        let stream = self.acceptor.accept(stream).await?;
        Ok(MaybeTls::Tls(Box::new(stream.into())))
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = stamps(&self.resolver.files);
        let key = certified_key(&self.resolver.files)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
        *self
            .resolver
            .seen
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
        tracing::info!(certificate = %self.resolver.files.certificate.display(), "TLS certificate loaded");
        Ok(())
    }

    fn reload_logged(&self, why: &str) {
        if let Err(error) = self.reload() {
            tracing::error!(%error, why, "the new TLS certificate was not loaded; the previous one stays in use");
        }
    }

    /// Reloads on SIGHUP and when the files change, until `stop` turns true.
    pub async fn watch(self, mut stop: watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup_received = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup_received = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = stop.changed() => return,
                _ = hangup_received => self.reload_logged("SIGHUP"),
                _ = tick.tick() => {
                    let now = stamps(&self.resolver.files);
                    let before = *self
                        .resolver
                        .seen
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if now.is_some() && now != before {
                        self.reload_logged("the files changed");
                    }
                }
            }
        }
    }
}

/// The files' (modification time, size), when both can be read.
fn stamps(files: &TlsFiles) -> Option<[(SystemTime, u64); 2]> {
    let stamp = |path: &Path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    };
    Some([stamp(&files.certificate)?, stamp(&files.key)?])
}

fn certified_key(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let chain = read_certificates(&files.certificate)?;
    let shown = files.key.display().to_string();
    let bytes = std::fs::read(&files.key).map_err(|error| TlsSetupError::Read {
        path: shown.clone(),
        error,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| TlsSetupError::Invalid {
        path: shown.clone(),
        message: format!("no private key read: {error}"),
    })?;
    let signing = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| TlsSetupError::Invalid {
            path: shown.clone(),
            message: error.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|error| TlsSetupError::Invalid {
            path: shown,
            message: format!("the key does not belong to the certificate: {error}"),
        })?;
    Ok(certified)
}
