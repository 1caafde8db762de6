//! Servers and clients the benches run: the wasmraid binary, nbdkit,
//! qemu-nbd and fio with its nbd engine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// target/<profile>/wasmraid, next to the bench executable's deps folder,
/// or `WASMRAID_BIN` (to measure another build against the same peers).
pub fn wasmraid_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMRAID_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("bench executable");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("wasmraid");
    assert!(bin.exists(), "{} is missing: run `cargo build --release -p wasmraid` first (scripts/bench.sh does)", bin.display());
    bin
}

pub fn require(tool: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{tool} is not installed: run ./scripts/setup.sh");
}

/// A server process, killed on drop.
pub struct Server {
    pub name: &'static str,
    child: Child,
    pub uri: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A socket path, with any stale socket of an earlier run removed.
fn fresh(path: PathBuf) -> PathBuf {
    let _ = std::fs::remove_file(&path);
    path
}

fn wait_for(path: &Path, child: &mut Child, what: &str) {
    // Generous: a server may compile an 18 MB (Python) component first.
    for _ in 0..4500 {
        if path.exists() {
            std::thread::sleep(Duration::from_millis(50));
            return;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("{what} exited early: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not create {}", path.display());
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the server cleanly (`wasmraid stop`), so that an array with a
    /// bitmap is left clean rather than resynced at the next start.
    pub fn stop(mut self, dir: &Path) {
        let ok =
            Command::new(wasmraid_bin()).args(["stop", "bench", "--run-dir"]).arg(dir.join("run")).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        assert!(ok, "wasmraid stop failed");
        let _ = self.child.wait();
    }
}

/// `wasmraid serve` with the given serve arguments, on a Unix socket.
pub fn wasmraid(dir: &Path, args: &[String]) -> Server {
    wasmraid_verb(dir, "serve", args)
}

/// `wasmraid VERB bench ARGS... --nbd-unix SOCK` (`serve` or `assemble`).
pub fn wasmraid_verb(dir: &Path, verb: &str, args: &[String]) -> Server {
    let sock = fresh(dir.join("wasmraid.sock"));
    let mut child = Command::new(wasmraid_bin())
        .arg(verb)
        .arg("bench")
        .args(args)
        .arg("--nbd-unix")
        .arg(&sock)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wasmraid");
    wait_for(&sock, &mut child, "wasmraid serve");
    Server { name: "wasmraid", child, uri: format!("nbd+unix:///bench?socket={}", sock.display()) }
}

/// nbdkit's file plugin serving `file`.
pub fn nbdkit(dir: &Path, file: &Path) -> Server {
    require("nbdkit");
    let sock = fresh(dir.join("nbdkit.sock"));
    let mut child = Command::new("nbdkit")
        .args(["--foreground", "--exit-with-parent", "--unix"])
        .arg(&sock)
        .arg("file")
        .arg(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nbdkit");
    wait_for(&sock, &mut child, "nbdkit");
    Server { name: "nbdkit file", child, uri: format!("nbd+unix:///?socket={}", sock.display()) }
}

/// qemu-nbd serving `file` (raw).
pub fn qemu_nbd(dir: &Path, file: &Path) -> Server {
    require("qemu-nbd");
    let sock = fresh(dir.join("qemu-nbd.sock"));
    let mut child = Command::new("qemu-nbd")
        .args(["-f", "raw", "--persistent", "--shared=16", "-k"])
        .arg(&sock)
        .arg(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn qemu-nbd");
    wait_for(&sock, &mut child, "qemu-nbd");
    Server { name: "qemu-nbd", child, uri: format!("nbd+unix:///?socket={}", sock.display()) }
}

/// Run fio's nbd engine; returns (IOPS, bytes/s) of the job's reads or
/// writes.
pub fn fio(uri: &str, args: &[&str], write: bool) -> (f64, f64) {
    let job = fio_job(uri, args, write);
    (job["iops"].as_f64().unwrap_or(0.0), job["bw_bytes"].as_f64().unwrap_or(0.0))
}

/// Run fio's nbd engine; returns its JSON report of the job's reads or
/// writes (`iops`, `bw_bytes`, `io_bytes`, latencies).
pub fn fio_job(uri: &str, args: &[&str], write: bool) -> serde_json::Value {
    require("fio");
    let out =
        Command::new("fio").args(["--name=bench", "--ioengine=nbd", &format!("--uri={uri}"), "--output-format=json"]).args(args).output().expect("run fio");
    assert!(out.status.success(), "fio failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // fio's nbd engine prints a line before the JSON document.
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap_or(0)..]).expect("fio json");
    assert_eq!(json["jobs"][0]["error"].as_i64(), Some(0), "fio reported an error");
    json["jobs"][0][if write { "write" } else { "read" }].clone()
}

/// CPU time (user + system, seconds) a process has used so far, from
/// /proc/PID/stat; 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks / if hz > 0 { hz as f64 } else { 100.0 }
}

/// A file of `size` bytes filled with non-zero data.
pub fn filled_file(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create");
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8 | 1).collect();
    for _ in 0..size >> 20 {
        f.write_all(&block).expect("fill");
    }
}

/// The median of a benchmark's rounds (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wait until something listens on 127.0.0.1:`port`.
pub fn wait_port(port: u16, what: &str) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on port {port}");
}

/// nbdkit's file plugin serving `file` as export `leg` on 127.0.0.1:`port`,
/// with TLS required when `certs` names a certificates directory; the
/// caller kills it.
pub fn nbdkit_tcp(file: &Path, port: u16, certs: Option<&Path>) -> Child {
    require("nbdkit");
    let mut c = Command::new("nbdkit");
    c.args(["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", &port.to_string(), "-e", "leg"]);
    if let Some(dir) = certs {
        c.arg("--tls=require").arg(format!("--tls-certificates={}", dir.display()));
    }
    let child = c.arg("file").arg(file).stderr(Stdio::null()).spawn().expect("spawn nbdkit");
    wait_port(port, "nbdkit");
    child
}
