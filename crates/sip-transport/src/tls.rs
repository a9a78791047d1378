//! The server's TLS certificate for SIP over TLS (RFC 3261 §26, port 5061) and secure
//! WebSocket: read from PEM files, and read again when either file changes.
//!
//! The files are looked at (their modification times) at most once a second, when a
//! connection is accepted: a renewed certificate (a certbot hook writing new files, say)
//! serves the next connection, and connections already up keep theirs. A change that cannot
//! be used (a key that does not match, a half-written file) is logged with the file and the
//! reason, and the certificate in use stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// Where the certificate chain and its private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be loaded: names the file and says what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM block.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate, or TLS refused the pair.
    #[error("{cert} with {key}: {reason}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check a certificate and key: what the server would serve.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let file_err = |path: &Path, reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(&files.cert, "no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_err(&files.key, format!("no usable private key: {e}")))?;
    let pair_err = |reason: String| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| pair_err(e.to_string()))?;
    Ok(Arc::new(cfg))
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The certificate in use and what its files looked like when it was read.
pub(crate) struct Certificate {
    files: TlsFiles,
    acceptor: TlsAcceptor,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    looked: Instant,
}

impl Certificate {
    /// Read the files once; an error here stops the start (the admin sees it at once).
    pub(crate) fn open(files: TlsFiles) -> Result<Certificate, TlsError> {
        let cfg = load(&files)?;
        let stamps = (modified(&files.cert), modified(&files.key));
        Ok(Certificate {
            files,
            acceptor: TlsAcceptor::from(cfg),
            stamps,
            looked: Instant::now(),
        })
    }

    /// The acceptor for a new connection: the files read again first if they changed.
    pub(crate) fn acceptor(&mut self) -> TlsAcceptor {
        let now = Instant::now();
        if now.duration_since(self.looked) >= Duration::from_secs(1) {
            self.looked = now;
            let stamps = (modified(&self.files.cert), modified(&self.files.key));
            if stamps != self.stamps {
                self.stamps = stamps;
                match load(&self.files) {
                    Ok(cfg) => {
                        self.acceptor = TlsAcceptor::from(cfg);
                        info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => warn!(
                        error = %e,
                        "TLS certificate changed but cannot be used; the previous one stays"
                    ),
                }
            }
        }
        self.acceptor.clone()
    }
}
