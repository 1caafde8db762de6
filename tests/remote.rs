//! Remote legs across "hosts" on one machine: NBD servers (qemu-nbd,
//! nbdkit, wasmraid itself) run in network namespaces these tests create,
//! joined to the host by veth pairs; nothing leaves the machine. The array
//! is served over NBD and checked with fio verify while links are cut,
//! servers stopped, killed, failing or slow.
//!
//! Needs root (ip netns); run as root, never skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use wasmraid_tests::{Served, fio, make_certs, require, run, wasmraid_bin};

static NEXT_NET: AtomicU8 = AtomicU8::new(1);

/// A network namespace joined to the host by a veth pair: the host side is
/// 10.213.N.1, the namespace side 10.213.N.2.
struct Netns {
    name: String,
    host_if: String,
    ip: String,
}

fn sh(cmd: &str) {
    let (ok, out) = run(Command::new("sh").arg("-c").arg(cmd));
    assert!(ok, "`{cmd}` failed: {out}");
}

impl Netns {
    fn new() -> Netns {
        let is_root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
        assert!(is_root, "the remote-leg tests create network namespaces: run them as root");
        let n = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id() % 10000);
        let (name, host_if, peer_if) = (format!("wr{tag}"), format!("wrh{tag}"), format!("wrn{tag}"));
        sh(&format!(
            "ip netns add {name} && ip link add {host_if} type veth peer name {peer_if} && ip link set {peer_if} netns {name} \
             && ip addr add 10.213.{n}.1/24 dev {host_if} && ip link set {host_if} up \
             && ip netns exec {name} ip addr add 10.213.{n}.2/24 dev {peer_if} && ip netns exec {name} ip link set {peer_if} up \
             && ip netns exec {name} ip link set lo up"
        ));
        Netns { name, host_if, ip: format!("10.213.{n}.2") }
    }

    /// Take the link down (or back up): packets stop, connections stay.
    fn link(&self, up: bool) {
        sh(&format!("ip link set {} {}", self.host_if, if up { "up" } else { "down" }));
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
    }
}

/// An NBD server of one file, in a namespace, on port 10809.
struct Remote {
    child: Child,
    net: Arc<Netns>,
    file: PathBuf,
    kind: &'static str,
    filters: Vec<String>,
    /// Serve with TLS required, certificates from this directory.
    tls: Option<PathBuf>,
}

impl Remote {
    fn qemu_nbd(net: &Arc<Netns>, file: &Path) -> Remote {
        Remote::start(net, file, "qemu-nbd", Vec::new(), None)
    }

    fn nbdkit(net: &Arc<Netns>, file: &Path, filters: &[&str]) -> Remote {
        Remote::start(net, file, "nbdkit", filters.iter().map(|s| s.to_string()).collect(), None)
    }

    /// `kind` serving `file` with TLS required (`certs` made for the namespace's address).
    fn with_tls(net: &Arc<Netns>, file: &Path, kind: &'static str, certs: &Path) -> Remote {
        Remote::start(net, file, kind, Vec::new(), Some(certs.to_path_buf()))
    }

    fn start(net: &Arc<Netns>, file: &Path, kind: &'static str, filters: Vec<String>, tls: Option<PathBuf>) -> Remote {
        let mut c = net.command(kind);
        match kind {
            "qemu-nbd" => {
                if let Some(dir) = &tls {
                    c.args(["--object", &format!("tls-creds-x509,id=tls0,endpoint=server,dir={}", dir.display()), "--tls-creds", "tls0"]);
                }
                c.args(["-t", "-f", "raw", "-x", "leg", "-e", "8", "--cache=none", "-b", &net.ip, "-p", "10809"]).arg(file);
            }
            _ => {
                c.args(["-f", "--exit-with-parent", "-i", &net.ip, "-p", "10809", "-e", "leg"]);
                if let Some(dir) = &tls {
                    c.arg("--tls=require").arg(format!("--tls-certificates={}", dir.display()));
                }
                // Filters come first (--filter=NAME), then the plugin and the parameters.
                let (names, params): (Vec<&String>, Vec<&String>) = filters.iter().partition(|f| f.starts_with("--filter"));
                c.args(names).arg("file").arg(file).args(params);
            }
        }
        let child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("cannot start {kind}: {e}"));
        let r = Remote { child, net: net.clone(), file: file.to_path_buf(), kind, filters, tls };
        r.wait_listening();
        r
    }

    fn wait_listening(&self) {
        let addr = format!("{}:10809", self.net.ip);
        for _ in 0..200 {
            if std::net::TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{} did not listen on {addr}", self.kind);
    }

    fn uri(&self) -> String {
        match &self.tls {
            Some(dir) => format!("nbds://{}:10809/leg?tls-certificates={}", self.net.ip, dir.display()),
            None => format!("nbd://{}:10809/leg", self.net.ip),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A graceful stop, as a service manager does it: SIGTERM, then wait.
    fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Remote::start(&self.net, &self.file.clone(), self.kind, self.filters.clone(), self.tls.clone());
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.kill();
    }
}

fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).and_then(|f| f.set_len(size)).expect("sparse leg");
}

/// `wasmraid create` over the given legs (paths or URIs).
fn create(name: &str, layout: &str, legs: &[String]) {
    let (ok, out) =
        run(Command::new(wasmraid_bin()).args(["--no-cache", "create", name, "--layout", layout, "--legs", &legs.join(","), "--force", "--assume-clean"]));
    assert!(ok, "create failed: {out}");
}

fn assemble(dir: &Arc<tempfile::TempDir>, name: &str, legs: &[String], extra: &[&str]) -> Served {
    let mut args = vec!["--legs".to_string(), legs.join(",")];
    args.extend(extra.iter().map(|s| s.to_string()));
    Served::spawn(dir.clone(), "assemble", name, args)
}

fn leg(status: &serde_json::Value, i: usize) -> serde_json::Value {
    status["arrays"][0]["legs"][i].clone()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `wait_for`, showing the array's status and log when it times out.
fn wait_for_or_show(what: &str, limit: Duration, s: &Served, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}: {:#}\n{}", s.status(), s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn idle(s: &Served) -> bool {
    let st = s.status();
    st["arrays"][0]["sync_action"] == "idle" && st["arrays"][0]["health"].as_str().is_some_and(|h| h.chars().all(|c| c == 'A'))
}

/// fio writing in a thread while the test breaks things.
fn fio_in_background(uri: String, extra: &'static [&'static str]) -> std::thread::JoinHandle<(bool, String)> {
    std::thread::spawn(move || fio(&uri, extra))
}

/// A raid1 "r" of a local file and a qemu-nbd export of another file from a
/// network namespace, both of `leg_bytes`, assembled with `extra`. Fields
/// drop in order: the server first, the namespace and files last.
struct RemoteMirror {
    served: Served,
    remote: Remote,
    net: Arc<Netns>,
    dir: Arc<tempfile::TempDir>,
}

fn remote_mirror(leg_bytes: u64, extra: &[&str]) -> RemoteMirror {
    require("qemu-nbd");
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let net = Arc::new(Netns::new());
    let (local, far) = (dir.path().join("local"), dir.path().join("far"));
    sparse(&local, leg_bytes);
    sparse(&far, leg_bytes);
    let remote = Remote::qemu_nbd(&net, &far);
    let legs = vec![local.display().to_string(), remote.uri()];
    create("r", "raid1", &legs);
    let served = assemble(&dir, "r", &legs, extra);
    RemoteMirror { served, remote, net, dir }
}

#[test]
fn twenty_link_cuts_and_server_restarts_under_fio_verify() {
    let mut m = remote_mirror(256 << 20, &["--leg-timeout", "30"]);
    let job = fio_in_background(m.served.uri(), &["--size=96M", "--rate=3m"]);
    // 20 cycles: even ones cut the link (TCP waits it out), odd ones restart
    // the server (the connection breaks; the leg reconnects and resends,
    // and the next cycle starts once it has).
    let reconnects = || leg(&m.served.status(), 1)["link"]["reconnects"].as_u64().unwrap_or(0);
    for cycle in 0..20 {
        if cycle % 2 == 0 {
            m.net.link(false);
            std::thread::sleep(Duration::from_millis(1200));
            m.net.link(true);
            std::thread::sleep(Duration::from_millis(500));
        } else {
            let before = reconnects();
            m.remote.kill();
            std::thread::sleep(Duration::from_millis(800));
            m.remote.restart();
            wait_for("the leg to reconnect", Duration::from_secs(20), || reconnects() > before);
        }
    }
    let (ok, out) = job.join().expect("fio thread");
    assert!(ok, "fio saw an error across 20 disconnect/reconnect cycles: {out}\n{}", m.served.log());
    let st = m.served.status();
    let far_leg = leg(&st, 1);
    assert_eq!(far_leg["health_char"], "A", "the remote leg must ride out short breaks: {st:#}");
    let reconnects = far_leg["link"]["reconnects"].as_u64().unwrap_or(0);
    assert!(reconnects >= 10, "10 server restarts should mean 10 reconnects, saw {reconnects}: {far_leg:#}\n{}", m.served.log());
    println!("20 cycles: fio verify clean, {reconnects} reconnects, leg {}", far_leg["health"]);
}

#[test]
fn a_server_away_past_the_timeout_degrades_then_resyncs_only_what_was_written() {
    let mut m = remote_mirror(1 << 30, &["--leg-timeout", "2", "--daemon-sleep", "0.5"]);
    m.remote.kill();
    // Written while the remote is away: 24 MiB at 128 MiB, within one bitmap region.
    let (ok, out) = fio(&m.served.uri(), &["--offset=128M", "--size=24M", "--randseed=7"]);
    assert!(ok, "writes must go on degraded: {out}");
    let st = m.served.status();
    assert_eq!(leg(&st, 1)["health_char"], "D", "past the timeout the leg is failed: {st:#}");
    assert_eq!(leg(&st, 1)["link"]["connected"], false);
    m.remote.restart();
    wait_for_or_show("the re-add and its recovery", Duration::from_secs(60), &m.served, || idle(&m.served));
    let st = m.served.status();
    let last = st["arrays"][0]["sync_last"].as_str().unwrap_or("").to_string();
    let moved: u64 = last.split_whitespace().find_map(|w| w.parse().ok()).unwrap_or(u64::MAX);
    let size = st["size_bytes"].as_u64().expect("size");
    println!("written while away: 24 MiB; recovery moved {moved} bytes (reads + writes) of a {size}-byte array: {last}");
    assert!(moved > 0 && moved <= 2 * 128 << 20, "the recovery must move only the dirty regions (24 MiB written): {last}");
    // The remote leg alone must now hold what was written while it was away.
    let out = m.served.ctl(&["leg", "fail", "r", "0"]);
    assert!(out.status.success());
    let (ok, out) = fio(&m.served.uri(), &["--offset=128M", "--size=24M", "--randseed=7", "--verify_only"]);
    assert!(ok, "the re-added remote leg does not hold the data written while it was away: {out}");
}

/// A raid1 of a local leg and an nbdkit export whose server is stopped
/// (gracefully or not) under writes, then started again: the leg is failed
/// only past --leg-timeout, re-added by itself when the server is back, and
/// then the remote copy alone holds every write.
fn server_stopped_and_back(kind: &'static str, graceful: bool) {
    require(kind);
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let net = Arc::new(Netns::new());
    let (local, far) = (dir.path().join("local"), dir.path().join("far"));
    sparse(&local, 256 << 20);
    sparse(&far, 256 << 20);
    let mut remote = if kind == "nbdkit" { Remote::nbdkit(&net, &far, &[]) } else { Remote::qemu_nbd(&net, &far) };
    let legs = vec![local.display().to_string(), remote.uri()];
    create("r", "raid1", &legs);
    let served = assemble(&dir, "r", &legs, &["--leg-timeout", "2", "--daemon-sleep", "0.5"]);
    let (ok, out) = fio(&served.uri(), &["--size=16M", "--randseed=11"]);
    assert!(ok, "{out}");
    let job = fio_in_background(served.uri(), &["--offset=64M", "--size=48M", "--randseed=12", "--rate=6m"]);
    std::thread::sleep(Duration::from_millis(1500));
    if graceful {
        remote.terminate()
    } else {
        remote.kill()
    }
    std::thread::sleep(Duration::from_secs(4));
    remote.restart();
    let (ok, out) = job.join().expect("fio thread");
    assert!(ok, "writes must go on while the server is away: {out}\n{}", served.log());
    wait_for("the re-add and its recovery", Duration::from_secs(90), || idle(&served));
    let st = served.status();
    let far_leg = leg(&st, 1);
    println!("{kind} stopped ({}) and back: remote leg {far_leg}", if graceful { "SIGTERM" } else { "SIGKILL" });
    assert_eq!(far_leg["health_char"], "A", "the leg comes back by itself: {st:#}\n{}", served.log());
    let out = served.ctl(&["leg", "fail", "r", "0"]);
    assert!(out.status.success());
    for (offset, size, seed) in [("0", "16M", "11"), ("64M", "48M", "12")] {
        let (ok, out) = fio(&served.uri(), &[&format!("--offset={offset}"), &format!("--size={size}"), &format!("--randseed={seed}"), "--verify_only"]);
        assert!(ok, "the remote copy alone must hold every write: {out}");
    }
}

#[test]
fn nbdkit_stopped_with_sigterm_is_a_lost_link_readded_when_back() {
    server_stopped_and_back("nbdkit", true);
}

#[test]
fn nbdkit_killed_is_a_lost_link_readded_when_back() {
    server_stopped_and_back("nbdkit", false);
}

#[test]
fn qemu_nbd_stopped_with_sigterm_is_a_lost_link_readded_when_back() {
    server_stopped_and_back("qemu-nbd", true);
}

#[test]
fn a_server_gone_for_good_is_replaced_by_a_new_leg() {
    let mut m = remote_mirror(128 << 20, &["--leg-timeout", "1"]);
    let spare = m.dir.path().join("spare");
    sparse(&spare, 128 << 20);
    let (ok, out) = fio(&m.served.uri(), &["--size=32M", "--randseed=3"]);
    assert!(ok, "{out}");
    m.remote.kill();
    let (ok, out) = fio(&m.served.uri(), &["--offset=48M", "--size=16M", "--randseed=4"]);
    assert!(ok, "degraded writes: {out}");
    let out = m.served.ctl(&["leg", "remove", "r", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = m.served.ctl(&["leg", "add", "r", &spare.display().to_string(), "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the rebuild", Duration::from_secs(60), || idle(&m.served));
    let out = m.served.ctl(&["leg", "fail", "r", "0"]);
    assert!(out.status.success());
    for (offset, size, seed) in [("0", "32M", "3"), ("48M", "16M", "4")] {
        let (ok, out) = fio(&m.served.uri(), &[&format!("--offset={offset}"), &format!("--size={size}"), &format!("--randseed={seed}"), "--verify_only"]);
        assert!(ok, "the new leg alone must hold everything: {out}");
    }
}

#[test]
fn nbdkit_error_filter_fails_the_leg_cleanly() {
    require("nbdkit");
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let net = Arc::new(Netns::new());
    let (local, far, trigger) = (dir.path().join("local"), dir.path().join("far"), dir.path().join("trigger"));
    sparse(&local, 128 << 20);
    sparse(&far, 128 << 20);
    let error_file = format!("error-file={}", trigger.display());
    let remote = Remote::nbdkit(&net, &far, &["--filter=error", "error-rate=100%", &error_file]);
    let legs = vec![local.display().to_string(), remote.uri()];
    create("r", "raid1", &legs);
    let served = assemble(&dir, "r", &legs, &["--leg-timeout", "5"]);
    let job = fio_in_background(served.uri(), &["--size=48M", "--rate=8m"]);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&trigger, b"").expect("trigger");
    let (ok, out) = job.join().expect("fio thread");
    assert!(ok, "the array must hide a failing leg: {out}");
    let st = served.status();
    let l = leg(&st, 1);
    assert_eq!(l["health_char"], "D", "{st:#}");
    assert!(l["last_error"].as_str().unwrap_or("").contains("Input/output error"), "the error names the cause: {l:#}");
    assert_eq!(l["link"]["connected"], true, "an erroring server is not a lost link (no automatic re-add): {l:#}");
}

#[test]
fn a_slow_mirror_is_read_less_with_lowest_latency() {
    require("nbdkit");
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let net = Arc::new(Netns::new());
    let (local, far) = (dir.path().join("local"), dir.path().join("far"));
    sparse(&local, 64 << 20);
    sparse(&far, 64 << 20);
    let remote = Remote::nbdkit(&net, &far, &["--filter=delay", "rdelay=20ms"]);
    let legs = vec![local.display().to_string(), remote.uri()];
    create("r", "raid1", &legs);
    let served = assemble(&dir, "r", &legs, &["--read-policy", "lowest-latency"]);
    let (ok, out) = fio(&served.uri(), &["--rw=randread", "--bs=4k", "--size=32M", "--time_based", "--runtime=4", "--verify=0", "--do_verify=0"]);
    assert!(ok, "{out}");
    let st = served.status();
    let (near, slow) = (leg(&st, 0)["reads"].as_u64().unwrap_or(0), leg(&st, 1)["reads"].as_u64().unwrap_or(0));
    println!("reads: local {near}, remote with 20 ms delay {slow}");
    assert!(near > 20 * slow.max(1), "the slow leg should get few reads: local {near}, slow {slow}");
    assert!(slow > 0, "the slow leg is still probed");
}

#[test]
fn a_wasmraid_export_is_a_remote_leg_of_another_wasmraid() {
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    // The inner array: a raid0 of two files, exported over NBD on a Unix socket.
    let inner = Served::layout("raid0", 2, "64M", "", "64K");
    let local = dir.path().join("local");
    sparse(&local, 128 << 20);
    let legs = vec![local.display().to_string(), inner.uri()];
    create("outer", "raid1", &legs);
    let outer = assemble(&dir, "outer", &legs, &[]);
    let (ok, out) = fio(&outer.uri(), &["--size=48M"]);
    assert!(ok, "{out}");
    let st = outer.status();
    assert_eq!(leg(&st, 1)["device"], inner.uri(), "status names the remote leg: {st:#}");
    assert!(leg(&st, 1)["writes"].as_u64().unwrap_or(0) > 0);
    let out = outer.ctl(&["leg", "fail", "outer", "0"]);
    assert!(out.status.success());
    let (ok, out) = fio(&outer.uri(), &["--size=48M", "--verify_only"]);
    assert!(ok, "the stacked export alone holds the data: {out}");
    let inner_status = inner.status();
    assert!(inner_status["arrays"][0]["counters"]["writes"].as_u64().unwrap_or(0) > 0, "the inner array was written through the outer one");
}

#[test]
fn a_mirror_of_two_stripes_is_one_table_and_status_shows_the_tree() {
    require("fio");
    let served = Served::table(|dir| {
        for side in ["left", "right"] {
            for i in 0..2 {
                sparse(&dir.join(format!("{side}{i}")), 32 << 20);
            }
            // Each stripe: a raid0 over two files (65536 sectors = 32 MiB of each leg).
            let text = format!("0 131072 wasm raid0 128 2 {d}/{side}0 0 {d}/{side}1 0\n", d = dir.display());
            std::fs::write(dir.join(format!("{side}.table")), text).expect("inner table");
        }
        format!("0 131072 wasm raid1 128 2 table:{d}/left.table 0 table:{d}/right.table 0\n", d = dir.display())
    });
    let (ok, out) = fio(&served.uri(), &["--size=48M"]);
    assert!(ok, "{out}");
    let st = served.status();
    let top = &st["arrays"][0];
    for side in [0, 1] {
        let nested = &top["legs"][side]["arrays"][0];
        assert_eq!(nested["layout"], "raid0", "status shows the stripe under the mirror's leg {side}: {st:#}");
        assert!(nested["counters"]["writes"].as_u64().unwrap_or(0) > 0, "the stripe was written: {nested:#}");
    }
    let text = served.ctl(&["status", "dev"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().filter(|l| l.trim_start().starts_with("array dev/")).count() == 2, "the text status draws the tree:\n{text}");
    println!("{text}");
    // Either side alone holds everything.
    let out = served.ctl(&["leg", "fail", "dev", "0"]);
    assert!(out.status.success());
    let (ok, out) = fio(&served.uri(), &["--size=48M", "--verify_only"]);
    assert!(ok, "{out}");
}

#[test]
fn a_raid1_of_two_nbdkit_tls_exports_rides_out_link_cuts_and_restarts_under_fio_verify() {
    require("nbdkit");
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let nets = [Arc::new(Netns::new()), Arc::new(Netns::new())];
    let certs = make_certs(dir.path(), "alpha", &[&nets[0].ip, &nets[1].ip]);
    let files = [dir.path().join("far0"), dir.path().join("far1")];
    let mut remotes: Vec<Remote> = (0..2)
        .map(|i| {
            sparse(&files[i], 256 << 20);
            Remote::with_tls(&nets[i], &files[i], "nbdkit", &certs)
        })
        .collect();
    let legs: Vec<String> = remotes.iter().map(Remote::uri).collect();
    create("r", "raid1", &legs);
    let served = assemble(&dir, "r", &legs, &["--leg-timeout", "30"]);
    let job = fio_in_background(served.uri(), &["--size=64M", "--rate=3m"]);
    let reconnects = |i: usize| leg(&served.status(), i)["link"]["reconnects"].as_u64().unwrap_or(0);
    // Each leg in turn: its link cut and restored, then its server
    // restarted (a new TLS handshake on the reconnect).
    for cycle in 0..8 {
        let i = cycle % 2;
        if cycle % 4 < 2 {
            nets[i].link(false);
            std::thread::sleep(Duration::from_millis(1500));
            nets[i].link(true);
            std::thread::sleep(Duration::from_millis(500));
        } else {
            let before = reconnects(i);
            remotes[i].kill();
            std::thread::sleep(Duration::from_millis(800));
            remotes[i].restart();
            wait_for_or_show("the TLS leg to reconnect", Duration::from_secs(20), &served, || reconnects(i) > before);
        }
    }
    let (ok, out) = job.join().expect("fio thread");
    assert!(ok, "fio verify on a raid1 of TLS legs across link cuts and restarts: {out}\n{}", served.log());
    let st = served.status();
    for i in 0..2 {
        let l = leg(&st, i);
        assert_eq!(l["health_char"], "A", "{st:#}");
        let peer = l["link"]["tls"]["peer"].as_str().unwrap_or("");
        assert!(peer.contains("alpha server") && peer.contains(&nets[i].ip), "status names the server each leg verified: {l:#}");
        assert!(l["link"]["reconnects"].as_u64().unwrap_or(0) >= 2, "each leg reconnected (TLS again) after its restarts: {l:#}");
    }
    // Either leg alone holds every write.
    let out = served.ctl(&["leg", "fail", "r", "0"]);
    assert!(out.status.success());
    let (ok, out) = fio(&served.uri(), &["--size=64M", "--verify_only"]);
    assert!(ok, "the second TLS leg alone holds everything: {out}");
}

#[test]
fn a_qemu_nbd_tls_export_is_a_remote_leg() {
    require("qemu-nbd");
    require("fio");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let net = Arc::new(Netns::new());
    let certs = make_certs(dir.path(), "alpha", &[&net.ip]);
    let (local, far) = (dir.path().join("local"), dir.path().join("far"));
    sparse(&local, 128 << 20);
    sparse(&far, 128 << 20);
    let remote = Remote::with_tls(&net, &far, "qemu-nbd", &certs);
    let legs = vec![local.display().to_string(), remote.uri()];
    create("r", "raid1", &legs);
    let served = assemble(&dir, "r", &legs, &[]);
    let (ok, out) = fio(&served.uri(), &["--size=48M"]);
    assert!(ok, "{out}\n{}", served.log());
    assert!(leg(&served.status(), 1)["link"]["tls"]["protocol"].as_str().is_some_and(|p| p.starts_with("TLSv1.")));
    let out = served.ctl(&["leg", "fail", "r", "0"]);
    assert!(out.status.success());
    let (ok, out) = fio(&served.uri(), &["--size=48M", "--verify_only"]);
    assert!(ok, "qemu-nbd's TLS copy alone holds everything: {out}");
}

#[test]
fn a_tls_leg_that_cannot_be_trusted_is_refused_in_one_sentence() {
    require("nbdkit");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let net = Arc::new(Netns::new());
    let alpha = make_certs(dir.path(), "alpha", &[&net.ip]);
    let beta = make_certs(dir.path(), "beta", &[&net.ip]);
    let far = dir.path().join("far");
    sparse(&far, 64 << 20);
    let try_create = |leg: String| {
        let local = dir.path().join("local");
        sparse(&local, 64 << 20);
        run(Command::new(wasmraid_bin())
            .args(["--no-cache", "create", "r", "--layout", "raid1", "--force", "--assume-clean", "--legs"])
            .arg(format!("{},{leg}", local.display())))
    };
    let tls = Remote::with_tls(&net, &far, "nbdkit", &alpha);
    let at = format!("{}:10809/leg", net.ip);
    for (leg, says) in [
        (format!("nbds://{at}?tls-certificates={}", beta.display()), "UnknownIssuer"),
        (format!("nbds://{at}?tls-certificates={}&tls-hostname=db9.example", alpha.display()), "not valid for name"),
        (format!("nbd://{at}"), "requires TLS"),
    ] {
        let (ok, out) = try_create(leg.clone());
        assert!(!ok && out.contains(says), "{leg}: expected a refusal saying {says:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    drop(tls);
    let _plain = Remote::nbdkit(&net, &far, &[]);
    let (ok, out) = try_create(format!("nbds://{at}?tls-certificates={}", alpha.display()));
    assert!(!ok && out.contains("does not offer TLS"), "TLS asked of a plaintext server: {out}");
}

#[test]
fn a_remote_legs_block_sizes_are_honoured_and_passed_on() {
    require("nbdkit");
    require("nbdinfo");
    require("fio");
    let dir = tempfile::tempdir().expect("tempdir");
    let (far, socket) = (dir.path().join("far"), dir.path().join("far.sock"));
    sparse(&far, 64 << 20);
    // A server that refuses requests over 256 KiB and wants 4 KiB blocks.
    let mut server = Command::new("nbdkit")
        .args(["-f", "--exit-with-parent", "-U"])
        .arg(&socket)
        .args(["--filter=blocksize-policy", "file"])
        .arg(&far)
        .args(["blocksize-minimum=4096", "blocksize-preferred=65536", "blocksize-maximum=262144", "blocksize-error-policy=error"])
        .stderr(Stdio::null())
        .spawn()
        .expect("nbdkit");
    wait_for("nbdkit's socket", Duration::from_secs(10), || socket.exists());
    let leg = format!("nbd+unix:///?socket={}", socket.display());
    let served = Served::table(|_| format!("0 131072 linear {leg} 0\n"));
    // 1 MiB requests through a linear target: split to the server's maximum.
    let (ok, out) = fio(&served.uri(), &["--rw=write", "--bs=1M", "--iodepth=4", "--size=32M"]);
    assert!(ok, "requests must be split to the server's 256 KiB maximum: {out}\n{}", served.log());
    let (ok, info) = run(Command::new("nbdinfo").arg(served.uri()));
    assert!(ok && info.contains("block_size_minimum: 4096"), "the export passes the leg's minimum on: {info}");
    let _ = server.kill();
    let _ = server.wait();
}
