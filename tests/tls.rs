//! NBD over TLS, wasmraid's export side, against real clients: libnbd's
//! nbdinfo and nbdcopy, qemu-img, and wasmraid's own remote legs. The
//! certificates are made by each test (`scripts/make-certs.sh`, openssl):
//! a CA "alpha" the server trusts and a CA "beta" it does not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use wasmraid_tests::{Served, require, run};

fn make_certs(dir: &Path, name: &str) -> PathBuf {
    wasmraid_tests::make_certs(dir, name, &["localhost", "127.0.0.1"])
}

/// A free TCP port on loopback (bound, then released for the server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A raid1 served with `tls` (e.g. ["--tls", "require"]) on a Unix socket
/// and on 127.0.0.1:port, certificates from `certs`.
fn serve_tls(dir: &Arc<tempfile::TempDir>, certs: &Path, port: u16, tls: &[&str]) -> Served {
    let legs: Vec<String> = (0..2).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
    let mut args: Vec<String> = ["--layout", "raid1", "--create-legs", "64M", "--legs", &legs.join(",")].iter().map(|s| s.to_string()).collect();
    args.extend(["--nbd".to_string(), format!("127.0.0.1:{port}"), "--tls-certificates".into(), certs.display().to_string()]);
    args.extend(tls.iter().map(|s| s.to_string()));
    Served::spawn(dir.clone(), "serve", "dev", args)
}

fn nbdinfo(uri: &str) -> (bool, String) {
    run(Command::new("nbdinfo").arg(uri))
}

#[test]
fn nbdinfo_and_nbdcopy_speak_tls_and_plaintext_is_refused_under_require() {
    require("nbdinfo");
    require("nbdcopy");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let (alpha, beta) = (make_certs(dir.path(), "alpha"), make_certs(dir.path(), "beta"));
    let port = free_port();
    let s = serve_tls(&dir, &alpha, port, &["--tls", "require"]);
    let tls_uri = format!("nbds://localhost:{port}/dev?tls-certificates={}", alpha.display());

    let (ok, out) = nbdinfo(&tls_uri);
    assert!(ok && out.contains("with TLS") && out.contains("export=\"dev\""), "nbdinfo over TLS: {out}\n{}", s.log());
    let (ok, out) = run(Command::new("nbdinfo").arg("--list").arg(&tls_uri));
    assert!(ok && out.contains("export=\"dev\""), "nbdinfo --list over TLS: {out}");

    // Plaintext, over TCP and over the Unix socket: refused before any export is named.
    for plain in [format!("nbd://localhost:{port}/dev"), s.uri()] {
        let (ok, out) = nbdinfo(&plain);
        assert!(!ok, "a plaintext client must be refused under --tls require: {out}");
    }
    // A client that trusts another CA refuses the server's certificate.
    let (ok, out) = nbdinfo(&format!("nbds://localhost:{port}/dev?tls-certificates={}", beta.display()));
    assert!(!ok && out.to_lowercase().contains("certificate"), "a client trusting another CA must refuse: {out}");

    // Data both ways, through TLS.
    let src = dir.path().join("src");
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    std::fs::write(&src, &data).expect("source");
    let (ok, out) = run(Command::new("nbdcopy").arg(&src).arg(&tls_uri));
    assert!(ok, "nbdcopy to the TLS export: {out}\n{}", s.log());
    let back = dir.path().join("back");
    let (ok, out) = run(Command::new("nbdcopy").arg(&tls_uri).arg(&back));
    assert!(ok, "nbdcopy from the TLS export: {out}");
    let back = std::fs::read(&back).expect("copy back");
    assert!(back[..data.len()] == data[..], "what nbdcopy wrote over TLS must read back");
    let st = s.status();
    assert_eq!(st["nbd"]["tls"], "require", "{st:#}");
}

#[test]
fn qemu_img_reads_and_writes_through_tls_creds() {
    require("qemu-img");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let alpha = make_certs(dir.path(), "alpha");
    let port = free_port();
    let s = serve_tls(&dir, &alpha, port, &["--tls", "on"]);
    let creds = format!("tls-creds-x509,id=tls0,endpoint=client,dir={}", alpha.display());
    let image = |export: &str| format!("driver=nbd,server.type=inet,server.host=localhost,server.port={port},export={export},tls-creds=tls0");
    let src = dir.path().join("src.raw");
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect();
    std::fs::write(&src, &data).expect("source");
    let (ok, out) = run(Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "--object", &creds, "--target-image-opts"]).arg(&src).arg(image("dev")));
    assert!(ok, "qemu-img convert to the TLS export: {out}\n{}", s.log());
    let back = dir.path().join("back.raw");
    let (ok, out) = run(Command::new("qemu-img").args(["convert", "-O", "raw", "--object", &creds, "--image-opts", &image("dev")]).arg(&back));
    assert!(ok, "qemu-img convert from the TLS export: {out}");
    assert!(std::fs::read(&back).expect("back")[..data.len()] == data[..], "qemu-img's bytes must read back");
    // --tls on: a plaintext client still gets in.
    let (ok, out) = run(Command::new("qemu-img").args([
        "info",
        "--image-opts",
        &format!("driver=nbd,server.type=inet,server.host=localhost,server.port={port},export=dev"),
    ]));
    assert!(ok, "--tls on lets plaintext clients in: {out}");
}

#[test]
fn verify_peer_lets_in_only_clients_the_ca_signed_and_status_names_them() {
    require("nbdinfo");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let (alpha, beta) = (make_certs(dir.path(), "alpha"), make_certs(dir.path(), "beta"));
    let port = free_port();
    let s = serve_tls(&dir, &alpha, port, &["--tls", "require", "--tls-verify-peer"]);
    let uri = |certs: &Path| format!("nbds://localhost:{port}/dev?tls-certificates={}", certs.display());

    let (ok, out) = nbdinfo(&uri(&alpha));
    assert!(ok, "a client with alpha's client certificate gets in: {out}\n{}", s.log());
    // The CA but no client certificate; a client certificate from beta.
    let (bare, mixed) = (dir.path().join("bare"), dir.path().join("mixed"));
    for d in [&bare, &mixed] {
        std::fs::create_dir(d).expect("dir");
        std::fs::copy(alpha.join("ca-cert.pem"), d.join("ca-cert.pem")).expect("ca");
    }
    for f in ["client-cert.pem", "client-key.pem"] {
        std::fs::copy(beta.join(f), mixed.join(f)).expect("client cert");
    }
    for (what, d) in [("no client certificate", &bare), ("a client certificate from another CA", &mixed)] {
        let (ok, out) = nbdinfo(&uri(d));
        assert!(!ok, "{what} must be refused under --tls-verify-peer: {out}");
    }

    // Another wasmraid joins over TLS with alpha's client certificate:
    // each side's status names the other.
    let dir2 = Arc::new(tempfile::tempdir().expect("tempdir"));
    let leg = format!("nbds://localhost:{port}/dev?tls-certificates={}", alpha.display());
    let s2 = Served::spawn(dir2.clone(), "serve", "far", vec!["--layout".into(), "raid0".into(), "--legs".into(), leg]);
    let link = &s2.status()["arrays"][0]["legs"][0]["link"];
    assert!(link["tls"]["peer"].as_str().is_some_and(|p| p.contains("alpha server")), "the leg names the server it verified: {link:#}");
    assert!(link["tls"]["protocol"].as_str().is_some_and(|p| p.starts_with("TLSv1.")), "{link:#}");
    let clients = s.status()["nbd"]["clients"].clone();
    let found = clients.as_array().is_some_and(|c| c.iter().any(|c| c["tls"]["peer"].as_str().is_some_and(|p| p.contains("alpha client"))));
    assert!(found, "the export's status names its TLS client: {clients:#}");
    drop(s2);
}

#[test]
fn bad_certificate_directories_fail_the_start_naming_the_file() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    let (ok, out) = run(Command::new(wasmraid_tests::wasmraid_bin())
        .args(["serve", "x", "--layout", "raid0", "--create-legs", "8M", "--legs"])
        .arg(dir.path().join("l0"))
        .args(["--tls", "require", "--tls-certificates"])
        .arg(&empty)
        .arg("--run-dir")
        .arg(dir.path().join("run")));
    assert!(!ok && out.contains("server-cert.pem"), "a missing certificate must be named: {out}");
    // A leg that cannot set up TLS: one sentence naming the file.
    let (ok, out) = run(Command::new(wasmraid_tests::wasmraid_bin())
        .args(["serve", "y", "--layout", "raid0", "--legs"])
        .arg(format!("nbds://localhost:{}/leg?tls-certificates={}", free_port(), empty.display()))
        .arg("--run-dir")
        .arg(dir.path().join("run")));
    assert!(!ok && out.contains("ca-cert.pem"), "a leg without a CA must be refused naming ca-cert.pem: {out}");
}
