//! The client side, for `nbds://` legs: the server's certificate must chain
//! to `ca-cert.pem` and name the host the URI names (libnbd's rules: over a
//! Unix socket there is no host name to check unless `tls-hostname=` gives
//! one); `client-cert.pem` and `client-key.pem`, when the directory has
//! them, prove who we are to a server that asks.

use super::certs::{CA_CERT, CLIENT_CERT, CLIENT_KEY, CertDir};
use super::{TlsError, provider};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// How one remote leg speaks TLS.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

/// Which of the server's claims are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The chain to the CA and the host name.
    ChainAndName,
    /// The chain only: a Unix socket has no host name to check.
    ChainOnly,
    /// Nothing (`tls-verify-peer=false`): encrypted, but anyone on the path
    /// can pose as the server.
    Nothing,
}

impl ClientTls {
    /// `host`: the name the server's certificate must carry (or the SNI
    /// sent when `verify` does not check it).
    pub fn load(dir: &CertDir, host: &str, verify: Verify) -> Result<ClientTls, TlsError> {
        let server_name = ServerName::try_from(host.to_string()).map_err(|e| TlsError::Config(format!("{host:?} is not a host name for TLS: {e}")))?;
        let builder =
            rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(AnyServer(provider())),
            Verify::ChainAndName | Verify::ChainOnly => {
                let roots = Arc::new(dir.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::File { path: dir.path(CA_CERT), why: e.to_string() })?;
                if verify == Verify::ChainOnly { Arc::new(ChainOnly(webpki)) } else { webpki }
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = if dir.has(CLIENT_CERT) || dir.has(CLIENT_KEY) {
            let chain = dir.certs(CLIENT_CERT)?;
            let key = dir.key(CLIENT_KEY)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::File { path: dir.path(CLIENT_KEY), why: format!("does not go with {CLIENT_CERT}: {e}") })?
        } else {
            builder.with_no_client_auth()
        };
        Ok(ClientTls { config: Arc::new(config), server_name })
    }

    /// A fresh session (every connection and reconnection handshakes anew).
    pub fn session(&self) -> Result<rustls::ClientConnection, TlsError> {
        rustls::ClientConnection::new(self.config.clone(), self.server_name.clone()).map_err(|e| TlsError::Config(e.to_string()))
    }
}

/// The CA's chain, whatever names the certificate carries.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Any certificate: the handshake's signatures are still checked (the
/// server holds the key of what it showed), not who signed it.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
