//! Shared helpers for wasmraid's integration tests.

#[path = "generated.rs"]
pub mod generated;

use std::sync::Arc;
use std::time::Duration;
use wasmraid::layout::Geometry;
use wasmraid::sandbox::{LoadedComponent, Sandbox, SandboxConfig, SandboxError, component};

/// A sandbox with a short guest deadline and no disk cache, so hostile
/// cases are quick and tests do not share state.
pub fn sandbox() -> Arc<Sandbox> {
    sandbox_with_timeout(Duration::from_millis(300))
}

/// A sandbox whose guest calls may run `timeout`.
pub fn sandbox_with_timeout(timeout: Duration) -> Arc<Sandbox> {
    Sandbox::new(SandboxConfig { call_timeout: timeout, cache_dir: None, ..SandboxConfig::default() }).expect("sandbox")
}

/// The bytes of hostile component `name` (built by build.rs).
pub fn hostile_bytes(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("WASMRAID_HOSTILE_DIR")).join(format!("hostile_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Load hostile component `name`.
pub fn hostile(sandbox: &Arc<Sandbox>, name: &str) -> Result<Arc<LoadedComponent>, SandboxError> {
    component::load(sandbox, &hostile_bytes(name)).map(Arc::new)
}

/// Load a built-in layout.
pub fn builtin(sandbox: &Arc<Sandbox>, name: &str) -> Arc<LoadedComponent> {
    let bytes = wasmraid::builtins::find(name).unwrap_or_else(|| panic!("no built-in {name}"));
    Arc::new(component::load(sandbox, bytes).expect("built-in loads"))
}

/// `legs` equal legs of `leg_chunks` chunks of 64 KiB.
pub fn geometry(legs: usize, leg_chunks: u64, args: &str) -> Geometry {
    Geometry { chunk_sectors: 128, leg_chunks: vec![leg_chunks; legs], args: args.into() }
}

/// The `wasmraid` binary built alongside the tests (target/<profile>/).
pub fn wasmraid_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("WASMRAID_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let bin = dir.join("wasmraid");
    assert!(bin.exists(), "{} is missing: build it first (cargo build --release -p wasmraid, or ./scripts/test.sh)", bin.display());
    bin
}

/// Fail loudly (never skip) when a client tool is missing.
pub fn require(tool: &str) {
    let found = std::process::Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found, "{tool} is not installed: run ./scripts/setup.sh (it installs qemu-utils, libnbd-bin, nbdkit, fio)");
}

/// A tool of qemu-utils from bookworm-backports (qemu 10: NBD extended
/// headers as client and server), which `scripts/setup.sh` unpacks into
/// `target/peers/qemu-bpo`. Fails loudly (never skips) when it is missing.
pub fn qemu_bpo(tool: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let bin = root.join("target/peers/qemu-bpo/usr/bin").join(tool);
    assert!(bin.exists(), "{} is missing: run ./scripts/setup.sh (it unpacks qemu-utils from bookworm-backports there)", bin.display());
    bin
}

/// A tool of trixie's libnbd 1.22 (`nbdinfo`, `nbdcopy`, `nbddump`, or
/// `nbdsh`: NBD extended headers as a client), which `scripts/setup.sh`
/// unpacks with the libraries it needs into `target/peers/libnbd-trixie`.
/// It needs trixie's glibc, so it runs through trixie's own loader with
/// `--library-path`: the programs it starts (nbdinfo runs `file` to name
/// the content) get the host's libraries, as LD_LIBRARY_PATH would not
/// let them. Fails loudly (never skips) when it is missing.
pub fn libnbd_trixie(tool: &str) -> std::process::Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").join("target/peers/libnbd-trixie");
    let libs = root.join("usr/lib/x86_64-linux-gnu");
    let loader = libs.join("ld-linux-x86-64.so.2");
    // nbdsh is a shell script running `python3 -mnbd`: trixie's python3,
    // which finds its library (and libnbd's module) from PYTHONHOME.
    let bin = root.join("usr/bin").join(if tool == "nbdsh" { "python3" } else { tool });
    for path in [&loader, &bin] {
        assert!(path.exists(), "{} is missing: run ./scripts/setup.sh (it unpacks libnbd 1.22 from trixie there)", path.display());
    }
    let mut cmd = std::process::Command::new(loader);
    cmd.arg("--library-path").arg(&libs).arg("--argv0").arg(tool).arg(bin);
    if tool == "nbdsh" {
        cmd.args(["-m", "nbd"]).env("PYTHONHOME", root.join("usr")).env("PYTHONNOUSERSITE", "1").env_remove("PYTHONPATH");
    }
    cmd
}

/// A `wasmraid serve` process on a Unix socket, in its own folder.
pub struct Served {
    pub child: std::process::Child,
    /// Shared, so that a test can stop a server and start another on the
    /// same legs (`assemble` after a crash).
    pub dir: Arc<tempfile::TempDir>,
    pub name: String,
    pub socket: std::path::PathBuf,
    pub run_dir: std::path::PathBuf,
}

impl Served {
    /// Serve `layout` over `legs` sparse files of `leg_size`.
    pub fn layout(layout: &str, legs: usize, leg_size: &str, args: &str, chunk: &str) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let leg_list: Vec<String> = (0..legs).map(|i| dir.path().join(format!("leg{i}")).display().to_string()).collect();
        let mut extra = vec![
            "--layout".to_string(),
            layout.to_string(),
            "--legs".into(),
            leg_list.join(","),
            "--create-legs".into(),
            leg_size.into(),
            "--chunk".into(),
            chunk.into(),
            format!("--args={args}"),
        ];
        if layout.ends_with(".wasm") {
            // A component of the project's own (an 18 MB Python one takes
            // 20 s of CPU to compile) served while other tests load both
            // cores: the default deadline is for untrusted components and
            // is tested in bounded.rs.
            extra.extend(["--compile-timeout".to_string(), "120".to_string()]);
        }
        Served::spawn(Arc::new(dir), "serve", "dev", extra)
    }

    /// `wasmraid assemble NAME --legs ...` in `dir` (legs made by `wasmraid create`).
    pub fn assemble(dir: &Arc<tempfile::TempDir>, name: &str, legs: &[std::path::PathBuf], extra: &[&str]) -> Served {
        let list: Vec<String> = legs.iter().map(|p| p.display().to_string()).collect();
        let mut args = vec!["--legs".to_string(), list.join(",")];
        args.extend(extra.iter().map(|s| s.to_string()));
        Served::spawn(dir.clone(), "assemble", name, args)
    }

    /// Serve a table written by `make(dir)`.
    pub fn table(make: impl FnOnce(&std::path::Path) -> String) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = make(dir.path());
        let path = dir.path().join("table");
        std::fs::write(&path, text).expect("write table");
        Served::spawn(Arc::new(dir), "serve", "dev", vec!["--table".into(), path.display().to_string()])
    }

    /// Run `wasmraid VERB NAME EXTRA... --nbd-unix SOCK --run-dir RUN` and
    /// wait for its sockets; the log goes (appended) to `serve.log`.
    pub fn spawn(dir: Arc<tempfile::TempDir>, verb: &str, name: &str, extra: Vec<String>) -> Served {
        let name = name.to_string();
        let socket = dir.path().join("nbd.sock");
        let run_dir = dir.path().join("run");
        // A socket left by a killed server must not look like a live one.
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(run_dir.join(format!("{name}.sock")));
        let log = std::fs::File::options().create(true).append(true).open(dir.path().join("serve.log")).expect("log");
        let child = std::process::Command::new(wasmraid_bin())
            .arg("--no-cache")
            .arg(verb)
            .arg(&name)
            .args(&extra)
            .arg("--nbd-unix")
            .arg(&socket)
            .arg("--run-dir")
            .arg(&run_dir)
            .env("WASMRAID_LOG", "info")
            .stderr(log)
            .spawn()
            .expect("spawn wasmraid serve");
        let mut served = Served { child, dir, name, socket, run_dir };
        let control = served.run_dir.join(format!("{}.sock", served.name));
        // Generous: compiling an 18 MB Python component takes seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < deadline {
            if control.exists() && served.socket.exists() {
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("wasmraid serve exited ({status}): {}", served.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("wasmraid serve did not come up: {}", served.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Whether the log says `needle` within five seconds. A client sees
    /// its connection closed before the daemon's warning about it reaches
    /// the log (the close comes first), so a test that reads the log once
    /// right after the close races the daemon.
    pub fn log_says(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The NBD URI of the export.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///{}?socket={}", self.name, self.socket.display())
    }

    /// Run a control command (`status`, `leg fail`, ...) against this server.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(wasmraid_bin());
        cmd.args(args);
        // --run-dir belongs to the subcommand, after its positional words.
        cmd.arg("--run-dir").arg(&self.run_dir);
        cmd.output().expect("run wasmraid")
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.ctl(&["status", &self.name, "--json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status json")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA named `name` in `dir`/`name` and the server and client
/// certificates it signs, the server's for `server_names` (host names or
/// IP addresses), with nbdkit's file names (`scripts/make-certs.sh`).
pub fn make_certs(dir: &std::path::Path, name: &str, server_names: &[&str]) -> std::path::PathBuf {
    require("openssl");
    let out = dir.join(name);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh");
    let (ok, text) = run(std::process::Command::new(script).arg(&out).arg(name).args(server_names));
    assert!(ok, "make-certs.sh: {text}");
    out
}

/// Run a command, returning (success, stdout + stderr).
pub fn run(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// fio with the nbd engine against `uri`, verify=crc32c; extra options
/// override. Returns (no error, output).
pub fn fio(uri: &str, extra: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new("fio");
    cmd.args([
        "--name=job",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randwrite",
        "--bs=8k",
        "--iodepth=32",
        "--size=32M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--exitall_on_error=1",
        "--verify_state_save=0",
    ]);
    cmd.args(extra);
    let (ok, text) = run(&mut cmd);
    let clean = ok
        && text.contains("err= 0")
        && !text.contains("io_u error")
        && !text.contains("verify failed")
        && !text.contains("bad magic")
        && !text.contains("bad header");
    (clean, text)
}

/// fio verify through NBD while the legs of each set are failed mid-run, one
/// served array per set; `layout` is a built-in name or a component file.
pub fn verify_with_failures(layout: &str, legs: usize, args: &str, sets: &[Vec<usize>]) {
    require("fio");
    for set in sets {
        let s = Served::layout(layout, legs, "24M", args, "64K");
        let uri = s.uri();
        let job = std::thread::spawn(move || fio(&uri, &["--size=48M"]));
        std::thread::sleep(Duration::from_millis(150));
        for leg in set {
            let out = s.ctl(&["leg", "fail", &s.name, &leg.to_string()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let (clean, text) = job.join().unwrap();
        assert!(clean, "{layout} {args} with legs {set:?} failed:\n{text}\n{}", s.log());
        let status = s.status();
        let health = status["arrays"][0]["health"].as_str().unwrap().to_string();
        assert_eq!(health.matches('D').count(), set.len(), "{health}");
    }
}

/// A leg that fails reads (or every I/O) in a byte range: fault injection
/// in the manner of dm-error and dm-flakey, for the reliability tests.
pub struct BadRange {
    pub inner: std::sync::Arc<dyn wasmraid::device::BlockDevice>,
    pub range: std::ops::Range<u64>,
    pub writes_too: bool,
}

impl BadRange {
    fn hits(&self, offset: u64, len: u64) -> bool {
        offset < self.range.end && offset + len > self.range.start
    }
}

impl wasmraid::device::BlockDevice for BadRange {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if self.hits(offset, buf.len() as u64) {
            return Err(std::io::Error::other("injected medium error"));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> std::io::Result<()> {
        if self.writes_too && self.hits(offset, buf.len() as u64) {
            return Err(std::io::Error::other("injected write error"));
        }
        self.inner.write_at(buf, offset, fua)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> std::io::Result<()> {
        self.inner.write_zeroes(offset, len, fua)
    }
    fn describe(&self) -> String {
        format!("{} (bad {:?})", self.inner.describe(), self.range)
    }
}

/// `nbdinfo --map` output: (offset, length, flags) per extent line.
pub fn parse_map(out: &str) -> Vec<(u64, u64, u32)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// The flags covering byte `at` of a map.
pub fn flags_at(m: &[(u64, u64, u32)], at: u64) -> Option<u32> {
    m.iter().find(|(o, l, _)| *o <= at && at < o + l).map(|e| e.2)
}

/// A parity array with one leg failed, as block status shows it:
/// `wasmraid:health` says every stripe has less redundancy and a part of
/// the data (that leg's data chunks, under a quarter here) needs decoding;
/// `base:allocation` (`allocation`) calls what is decoded data, never a
/// hole. Returns the array's size as the health extents cover it.
pub fn assert_one_failed_leg(health: &[(u64, u64, u32)], allocation: &[(u64, u64, u32)]) -> u64 {
    let decoded: u64 = health.iter().filter(|e| e.2 & 2 != 0).map(|e| e.1).sum();
    let reduced: u64 = health.iter().filter(|e| e.2 & 4 != 0).map(|e| e.1).sum();
    let size: u64 = health.iter().map(|e| e.1).sum();
    assert_eq!(reduced, size, "a failed leg lessens every stripe's redundancy: {health:?}");
    assert!(decoded > 0 && decoded * 4 < size, "a failed leg's data chunks, and only those, need decoding: {decoded} of {size}");
    for e in health.iter().filter(|e| e.2 & 2 != 0) {
        assert_eq!(flags_at(allocation, e.0), Some(0), "a decoded range is data: {e:?}");
    }
    size
}
