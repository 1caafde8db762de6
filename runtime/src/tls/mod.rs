//! TLS for NBD (the protocol's `NBD_OPT_STARTTLS`), with rustls: no OpenSSL
//! or GnuTLS on the data path. Certificates come from a directory with the
//! file names nbdkit, qemu and libnbd use (`certs.rs`); the server side
//! (`server.rs`) backs `serve --tls`, the client side (`client.rs`) backs
//! `nbds://` legs; `identity.rs` names the peer a certificate proves.
//!
//! X.509 only: rustls has no external pre-shared keys (its PSKs are session
//! resumption tickets), and nbdkit's `--tls-psk` is GnuTLS's. A CA and
//! client certificates (`--tls-verify-peer`) give what PSK gives, with keys
//! that can be revoked per machine.

mod certs;
pub mod client;
pub mod identity;
pub mod server;

pub use certs::{CertDir, default_dir};
pub use client::ClientTls;
pub use server::ServerTls;

use std::path::PathBuf;
use std::sync::Arc;

/// Why TLS could not be set up. Every variant names the file or the peer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Whether an NBD server offers TLS (nbdkit's `--tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext only; `NBD_OPT_STARTTLS` is refused.
    #[default]
    Off,
    /// Offered: a client chooses TLS or plaintext.
    On,
    /// Required: every option but STARTTLS and ABORT is refused before it.
    Require,
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::On => "on",
            TlsMode::Require => "require",
        })
    }
}

/// The one crypto provider every configuration uses. ring builds with a C
/// compiler alone (aws-lc needs cmake and adds minutes to a clean build);
/// rustls deprecates it only for lacking post-quantum key exchange, which
/// the GnuTLS of today's nbdkit, qemu and libnbd do not offer either.
///
/// AES-128-GCM is offered first: both ends spend a third less on it than on
/// AES-256-GCM, and GnuTLS servers (nbdkit, qemu-nbd) follow the client's
/// order. 128-bit AES is what TLS 1.3 makes mandatory; the 256-bit suites
/// stay offered for servers that insist.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| !format!("{:?}", s.suite()).contains("AES_128_GCM"));
    Arc::new(p)
}

/// What a session negotiated, for `status` and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// "TLSv1.3" and the cipher suite.
    pub protocol: String,
    /// The identity the peer's certificate proves (`identity.rs`), or None
    /// when the peer showed none (a client of a server without
    /// `--tls-verify-peer`).
    pub peer: Option<String>,
}

impl Session {
    pub fn of(conn: &rustls::CommonState) -> Session {
        let version = conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        });
        let suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
        let protocol = [version, suite].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let peer = conn.peer_certificates().and_then(|c| c.first()).map(identity::describe);
        Session { protocol, peer }
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.peer {
            Some(p) => write!(f, "{} with {p}", self.protocol),
            None => write!(f, "{}, peer unauthenticated", self.protocol),
        }
    }
}
