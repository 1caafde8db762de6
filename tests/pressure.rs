//! The NBD server and the daemon under pressure from clients and servers
//! that do not behave: a thousand idle connections and stalled handshakes,
//! a client over the connection limit, a client that never finishes its
//! handshake, `stop` with clients connected, a remote leg whose server
//! stops reading, and a control directory someone else could write.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmraid::frontend::nbd::proto::*;
use wasmraid_tests::{Served, require, run, wasmraid_bin};

/// A raid1 of two 64 MiB files served on the Unix socket and `extra`.
fn serve(extra: &[&str]) -> Served {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let legs = format!("{0}/a,{0}/b", dir.path().display());
    let mut args: Vec<String> = ["--layout", "raid1", "--legs", &legs, "--create-legs", "64M", "--chunk", "64K"].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Served::spawn(dir, "serve", "dev", args)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Raise this process's open-files limit (a thousand clients need more
/// than the usual 1024).
fn raise_nofile(want: u64) {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        assert!(l.rlim_max >= want, "the hard open-files limit {} is below {want}", l.rlim_max);
        l.rlim_cur = l.rlim_cur.max(want);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
}

/// A field of /proc/PID/status ("Threads", "VmRSS"), as a number.
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

trait Wire: Read + Write {}
impl Wire for TcpStream {}
impl Wire for UnixStream {}

/// A minimal NBD client: wasmraid's own handshake, then simple requests.
struct Client<S: Wire> {
    s: S,
    cookie: u64,
}

impl<S: Wire> Client<S> {
    fn new(mut s: S) -> Client<S> {
        wasmraid::device::nbd::handshake::negotiate(&mut s, "dev", wasmraid::device::nbd::handshake::Ask::SimpleOnly).expect("handshake");
        Client { s, cookie: 1 }
    }

    fn request(&mut self, command: u16, offset: u64, len: u32, payload: &[u8]) -> Vec<u8> {
        self.cookie += 1;
        let mut h = Vec::with_capacity(28 + payload.len());
        h.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        h.extend_from_slice(&command.to_be_bytes());
        h.extend_from_slice(&self.cookie.to_be_bytes());
        h.extend_from_slice(&offset.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(payload);
        self.s.write_all(&h).expect("send a request");
        let mut reply = [0u8; 16];
        self.s.read_exact(&mut reply).expect("read a reply");
        assert_eq!(u32::from_be_bytes(reply[..4].try_into().unwrap()), SIMPLE_REPLY_MAGIC);
        assert_eq!(u32::from_be_bytes(reply[4..8].try_into().unwrap()), 0, "the request failed");
        assert_eq!(u64::from_be_bytes(reply[8..16].try_into().unwrap()), self.cookie);
        let mut data = vec![0u8; if command == CMD_READ { len as usize } else { 0 }];
        self.s.read_exact(&mut data).expect("read the data");
        data
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.request(CMD_WRITE, offset, data.len() as u32, data);
    }

    fn read(&mut self, offset: u64, len: u32) -> Vec<u8> {
        self.request(CMD_READ, offset, len, &[])
    }

    /// Write a pattern and read it back.
    fn round_trip(&mut self, offset: u64, byte: u8) {
        let data = vec![byte; 64 << 10];
        self.write(offset, &data);
        assert!(self.read(offset, data.len() as u32) == data, "read back differs at {offset}");
    }
}

fn tcp_client(port: u16) -> Client<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    Client::new(s)
}

fn unix_client(path: &Path) -> Client<UnixStream> {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    Client::new(s)
}

/// True once the peer has closed `s` (EOF or reset), false if it is still
/// open after `limit`.
fn closed_within<S: Read>(s: &mut S, limit: Duration) -> bool {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => return true,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
    false
}

/// `wasmraid stop`, then the server must be gone; returns how long it took.
fn stop_and_wait(s: &mut Served, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut stop = Command::new("timeout");
    stop.arg(limit.as_secs().to_string()).arg(wasmraid_bin()).args(["stop", &s.name, "--run-dir"]).arg(&s.run_dir);
    let (ok, out) = run(&mut stop);
    loop {
        if s.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(started.elapsed() < limit, "the server still runs {:?} after `stop` (stop said: {out}):\n{}", started.elapsed(), s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok && out.contains("stopped"), "`wasmraid stop` failed or did not see the server go: {out}\n{}", s.log());
    started.elapsed()
}

#[test]
fn a_new_client_is_served_past_1000_idle_connections_and_50_stalled_handshakes_and_stop_is_prompt() {
    require("qemu-io");
    raise_nofile(4096);
    let port = free_port();
    let mut s = serve(&["--nbd", &format!("127.0.0.1:{port}")]);
    let pid = s.child.id();
    let threads_idle = proc_status(pid, "Threads");
    // 1000 clients that finished their handshake and then say nothing.
    let started = Instant::now();
    let idle: Vec<_> = (0..1000).map(|_| tcp_client(port)).collect();
    // 50 that stop halfway through their handshake: flags, then nothing.
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut greeting = [0u8; 18];
            c.read_exact(&mut greeting).unwrap();
            c.write_all(&(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).to_be_bytes()).unwrap();
            c
        })
        .collect();
    let held = started.elapsed();
    let threads = proc_status(pid, "Threads");
    let rss_kib = proc_status(pid, "VmRSS");
    eprintln!("1000 idle + 50 stalled held after {held:?}: {threads} threads (idle server: {threads_idle}), RSS {} MiB", rss_kib >> 10);
    // One thread per connection would be thousands.
    assert!(threads < threads_idle + 16, "{threads} threads with idle clients (idle server: {threads_idle})");
    // A new client writes and reads, over TCP and over the Unix socket.
    let mut fresh = tcp_client(port);
    fresh.round_trip(1 << 20, 0x5a);
    let (ok, out) = run(Command::new("timeout").args(["60", "qemu-io", "-f", "raw", "-c", "write -P 0xc3 4M 1M", "-c", "read -P 0xc3 4M 1M"]).arg(s.uri()));
    assert!(ok && !out.contains("failed"), "qemu-io with 1050 clients held: {out}\n{}", s.log());
    // An idle client is still served too.
    let mut idle = idle;
    idle[500].round_trip(8 << 20, 0x11);
    // Stop with all of them connected.
    let took = stop_and_wait(&mut s, Duration::from_secs(10));
    eprintln!("stop with 1051 clients connected took {took:?}");
    assert!(closed_within(&mut idle[0].s, Duration::from_secs(2)), "an idle client was not disconnected by stop");
    drop(stalled);
}

#[test]
fn stop_returns_promptly_with_a_client_connected() {
    let mut s = serve(&[]);
    let mut client = unix_client(&s.socket);
    client.round_trip(0, 0x42);
    let took = stop_and_wait(&mut s, Duration::from_secs(10));
    eprintln!("stop with a client connected took {took:?}");
    client.s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(closed_within(&mut client.s, Duration::from_secs(2)), "the client was not disconnected");
    // What it wrote was flushed to the legs.
    let leg = std::fs::read(s.dir.path().join("a")).unwrap();
    assert!(leg[..64 << 10].iter().all(|&b| b == 0x42));
}

#[test]
fn a_client_over_the_connection_limit_is_refused_while_the_others_work() {
    let s = serve(&["--nbd-max-connections", "2"]);
    let mut a = unix_client(&s.socket);
    let mut b = unix_client(&s.socket);
    // The third gets no greeting: closed at once, not queued.
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)), "a third client was not refused");
    a.round_trip(0, 1);
    b.round_trip(1 << 20, 2);
    assert!(s.log_says("refused a client: 2 connections already"), "{}", s.log());
    // A slot freed is a slot for the next client.
    drop(a);
    let started = Instant::now();
    loop {
        let mut c = UnixStream::connect(&s.socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 18];
        if c.read_exact(&mut greeting).is_ok() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the slot of a closed client was not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.round_trip(2 << 20, 3);
}

#[test]
fn a_client_that_does_not_finish_its_handshake_is_closed_in_time() {
    let s = serve(&["--nbd-handshake-timeout", "1"]);
    let mut served = unix_client(&s.socket);
    let mut stalled = UnixStream::connect(&s.socket).unwrap();
    let mut greeting = [0u8; 18];
    stalled.read_exact(&mut greeting).unwrap();
    stalled.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stalled, Duration::from_secs(5)), "a stalled handshake was not closed");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800), "closed after {took:?}, before its timeout");
    assert!(s.log_says("did not finish its handshake within 1s"), "{}", s.log());
    // The timeout is for handshakes: a client past its handshake stays.
    served.round_trip(0, 7);
}

#[test]
fn bad_limits_are_refused_with_a_clear_error() {
    for (flag, value, says) in [
        ("--nbd-max-connections", "0", "--nbd-max-connections must be"),
        ("--nbd-handshake-timeout", "0", "--nbd-handshake-timeout must be"),
        ("--nbd-threads", "0", "--nbd-threads must be"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let legs = format!("{0}/a,{0}/b", dir.path().display());
        let (ok, out) = run(Command::new("timeout")
            .arg("60")
            .arg(wasmraid_bin())
            .args(["--no-cache", "serve", "dev", "--layout", "raid1", "--legs", &legs, "--create-legs", "16M", flag, value, "--nbd-unix"])
            .arg(dir.path().join("sock"))
            .arg("--run-dir")
            .arg(dir.path().join("run")));
        assert!(!ok && out.contains(says), "{flag} {value}: {out}");
    }
}

/// An NBD server that answers the handshake of its first two clients
/// (`serve --layout` opens its legs twice: a probe, then for good), then
/// never reads again, and accepts no one else.
fn server_that_stops_reading(size: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // A tiny receive window (inherited by accepted sockets): a write of a
    // few MiB cannot fit in the buffers and must block.
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt reads one c_int we own, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = (0..2).map(|_| handshake_then_hold(listener.accept().unwrap().0, size)).collect();
        drop(listener);
        // Hold the connections and read nothing more.
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    port
}

fn handshake_then_hold(mut s: TcpStream, size: u64) -> TcpStream {
    let mut hello = NBDMAGIC.to_be_bytes().to_vec();
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello).unwrap();
    let mut flags = [0u8; 4];
    s.read_exact(&mut flags).unwrap();
    let reply_to = |option: u32, kind: u32, payload: &[u8]| {
        let mut r = REPLY_MAGIC.to_be_bytes().to_vec();
        r.extend_from_slice(&option.to_be_bytes());
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        r.extend_from_slice(payload);
        r
    };
    // The client haggles for extensions first: refuse them all, as an
    // old server would.
    loop {
        let mut head = [0u8; 16];
        s.read_exact(&mut head).unwrap();
        let option = u32::from_be_bytes(head[8..12].try_into().unwrap());
        let mut data = vec![0u8; u32::from_be_bytes(head[12..16].try_into().unwrap()) as usize];
        s.read_exact(&mut data).unwrap();
        if option == OPT_GO {
            break;
        }
        s.write_all(&reply_to(option, REP_ERR_UNSUP, &[])).unwrap();
    }
    let reply = |kind: u32, payload: &[u8]| {
        let mut r = REPLY_MAGIC.to_be_bytes().to_vec();
        r.extend_from_slice(&OPT_GO.to_be_bytes());
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        r.extend_from_slice(payload);
        r
    };
    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
    info.extend_from_slice(&size.to_be_bytes());
    info.extend_from_slice(&(TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH).to_be_bytes());
    s.write_all(&reply(REP_INFO, &info)).unwrap();
    s.write_all(&reply(REP_ACK, &[])).unwrap();
    s
}

#[test]
fn a_remote_leg_whose_server_stops_reading_loses_its_link_within_the_leg_timeout() {
    let port = server_that_stops_reading(64 << 20);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let legs = format!("{}/a,nbd://127.0.0.1:{port}/leg", dir.path().display());
    // 4 MiB chunks: each leg write is one 4 MiB NBD request, sent whole
    // before its reply is awaited.
    let args: Vec<String> =
        ["--layout", "raid1", "--legs", &legs, "--create-legs", "64M", "--chunk", "4M", "--leg-timeout", "2"].iter().map(|s| s.to_string()).collect();
    let s = Served::spawn(dir, "serve", "dev", args);
    let health = |s: &Served| s.status()["arrays"][0]["health"].as_str().unwrap().to_string();
    assert_eq!(health(&s), "AA", "{}", s.log());
    // Far more than the socket buffers hold: without a send timeout the
    // first write blocks for good, and every writer behind it.
    let mut client = unix_client(&s.socket);
    let started = Instant::now();
    let chunk = vec![0x77u8; 8 << 20];
    for i in 0..8u64 {
        client.write(i * (8 << 20), &chunk);
    }
    let took = started.elapsed();
    eprintln!("64 MiB written past a server that stopped reading in {took:?}");
    assert!(took < Duration::from_secs(15), "writes took {took:?} with --leg-timeout 2");
    assert_eq!(health(&s), "AD", "{}", s.log());
    let log = s.log();
    assert!(log.contains("it stopped reading") || log.contains("took the request too slowly"), "{log}");
    assert!(client.read(0, 4096).iter().all(|&b| b == 0x77));
}

/// `serve` with `--run-dir DIR` must refuse DIR and say why.
fn refused_run_dir(dir: &Path, says: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let legs = format!("{0}/a,{0}/b", tmp.path().display());
    let (ok, out) = run(Command::new("timeout")
        .arg("60")
        .arg(wasmraid_bin())
        .args(["--no-cache", "serve", "dev", "--layout", "raid1", "--legs", &legs, "--create-legs", "16M", "--nbd-unix"])
        .arg(tmp.path().join("sock"))
        .arg("--run-dir")
        .arg(dir));
    assert!(!ok, "served with control directory {}: {out}", dir.display());
    assert!(out.contains(&dir.display().to_string()) && out.contains(says), "{out}");
    assert!(!dir.join("dev.sock").exists());
}

#[test]
fn a_control_directory_others_can_write_or_own_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused_run_dir(&open, "others can write to it");
    // Still 0777: refused, not silently changed.
    assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o777);

    // Owned by someone else (root can make that; the suite runs as root).
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown (run the tests as root)");
    refused_run_dir(&theirs, "belongs to uid 65534");

    // One we create is 0700.
    let s = serve(&[]);
    assert_eq!(std::fs::metadata(&s.run_dir).unwrap().permissions().mode() & 0o777, 0o700);
}

/// `wasmraid serve` under a hard open-files limit (the daemon raises its
/// soft limit to the hard one); returns the child and its Unix socket.
/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_with_nofile(dir: &Path, nofile: Option<usize>) -> (Killed, std::path::PathBuf) {
    let legs = format!("{0}/a,{0}/b", dir.display());
    let socket = dir.join("nbd.sock");
    let _ = std::fs::remove_file(&socket);
    let log = std::fs::File::options().create(true).append(true).open(dir.join("serve.log")).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={0}:{0}", nofile.unwrap_or(4096)))
        .arg(wasmraid_bin())
        .args(["--no-cache", "serve", "dev", "--layout", "raid1", "--legs", &legs, "--create-legs", "16M", "--nbd-unix"])
        .arg(&socket)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .env("WASMRAID_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let child = Killed(cmd.spawn().unwrap());
    let started = Instant::now();
    while !(socket.exists() && dir.join("run/dev.sock").exists()) {
        assert!(started.elapsed() < Duration::from_secs(60), "serve did not come up: {}", std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The listeners are up; let the daemon settle its descriptors.
    std::thread::sleep(Duration::from_millis(300));
    (child, socket)
}

#[test]
fn the_listener_survives_running_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    // How many descriptors a serving daemon holds.
    let (probe, _) = serve_with_nofile(dir.path(), None);
    let baseline = std::fs::read_dir(format!("/proc/{}/fd", probe.0.id())).unwrap().count();
    drop(probe);
    // Now with only a few more than that: the crowd makes accept fail.
    let (_child, socket) = serve_with_nofile(dir.path(), Some(baseline + 4));
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let crowd: Vec<UnixStream> = (0..20).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    let started = Instant::now();
    while !log().contains("accept failed") {
        assert!(started.elapsed() < Duration::from_secs(10), "no accept failed ({baseline} descriptors at start):\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The descriptors come back: the listener goes on.
    drop(crowd);
    let mut client = unix_client(&socket);
    client.round_trip(0, 9);
    assert!(log().contains("accepting again"), "{}", log());
}
