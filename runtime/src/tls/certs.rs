//! A certificates directory, laid out as nbdkit, qemu and libnbd lay it
//! out: `ca-cert.pem` (the CA that signs peers), `server-cert.pem` and
//! `server-key.pem` (a server's own), `client-cert.pem` and
//! `client-key.pem` (a client's own). Files are PEM; keys PKCS#8, PKCS#1
//! or SEC1, as certtool and openssl write them.

use super::TlsError;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest PEM file read: a chain of a few certificates is a few KiB.
const MAX_PEM: u64 = 1 << 20;

pub const CA_CERT: &str = "ca-cert.pem";
pub const SERVER_CERT: &str = "server-cert.pem";
pub const SERVER_KEY: &str = "server-key.pem";
pub const CLIENT_CERT: &str = "client-cert.pem";
pub const CLIENT_KEY: &str = "client-key.pem";

/// Where a program looks when no directory is given, as nbdkit and libnbd
/// do: `/etc/pki/NAME` for root, `$HOME/.pki/NAME` otherwise.
pub fn default_dir(name: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("HOME") {
        Some(home) if !root => Path::new(&home).join(".pki").join(name),
        _ => Path::new("/etc/pki").join(name),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    pub dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> CertDir {
        CertDir { dir: dir.into() }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn has(&self, file: &str) -> bool {
        self.path(file).is_file()
    }

    fn fail(&self, file: &str, why: impl Into<String>) -> TlsError {
        TlsError::File { path: self.path(file), why: why.into() }
    }

    fn read(&self, file: &str) -> Result<Vec<u8>, TlsError> {
        let path = self.path(file);
        let f = std::fs::File::open(&path).map_err(|e| self.fail(file, e.to_string()))?;
        let mut bytes = Vec::new();
        f.take(MAX_PEM + 1).read_to_end(&mut bytes).map_err(|e| self.fail(file, e.to_string()))?;
        if bytes.len() as u64 > MAX_PEM {
            return Err(self.fail(file, format!("larger than {MAX_PEM} bytes: not a PEM file")));
        }
        Ok(bytes)
    }

    /// Every certificate in `file`, at least one.
    pub fn certs(&self, file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = self.read(file)?;
        let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| self.fail(file, format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self.fail(file, "holds no CERTIFICATE block"));
        }
        Ok(certs)
    }

    pub fn key(&self, file: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
        let bytes = self.read(file)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| self.fail(file, format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")))
    }

    /// The CA every peer certificate must chain to.
    pub fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in self.certs(CA_CERT)? {
            roots.add(cert).map_err(|e| self.fail(CA_CERT, format!("not a usable CA certificate: {e}")))?;
        }
        Ok(roots)
    }
}
