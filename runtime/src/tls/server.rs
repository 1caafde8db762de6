//! The server side: a rustls configuration from `--tls-certificates DIR`
//! (`server-cert.pem`, `server-key.pem`, and `ca-cert.pem` when clients
//! must show a certificate: `--tls-verify-peer`).

use super::certs::{CA_CERT, CertDir, SERVER_CERT, SERVER_KEY};
use super::{TlsError, TlsMode, provider};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// How an NBD server speaks TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub mode: TlsMode,
    pub verify_peer: bool,
    pub dir: CertDir,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("mode", &self.mode).field("verify_peer", &self.verify_peer).field("dir", &self.dir).finish()
    }
}

impl ServerTls {
    /// Load the certificates now (a bad file fails the start, naming it);
    /// None when `mode` is off.
    pub fn load(mode: TlsMode, dir: CertDir, verify_peer: bool) -> Result<Option<ServerTls>, TlsError> {
        if mode == TlsMode::Off {
            return Ok(None);
        }
        let chain = dir.certs(SERVER_CERT)?;
        let key = dir.key(SERVER_KEY)?;
        let builder =
            rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if verify_peer {
            let roots = Arc::new(dir.roots()?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::File { path: dir.path(CA_CERT), why: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::File { path: dir.path(SERVER_KEY), why: format!("does not go with {SERVER_CERT}: {e}") })?;
        Ok(Some(ServerTls { mode, verify_peer, dir, config: Arc::new(config) }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}
