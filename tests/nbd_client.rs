//! The NBD client of remote legs (`device::nbd`) against real servers:
//! wasmraid's own, which offers extended headers, structured replies and
//! `base:allocation`, and nbdkit, which on this Debian 12 host (1.32)
//! offers structured replies and `base:allocation` but predates extended
//! headers: the extended form is tested against wasmraid's own server
//! and qemu-nbd 10 (bookworm-backports, unpacked by `scripts/setup.sh`),
//! a real server that offers them (and byte by byte against the document
//! in `extended_headers.rs`).
//! nbdkit `--no-sr` refuses structured replies: simple ones it is.
//! Then a raid5 of nbdkit legs rebuilds a new leg sparsely: the sources'
//! block status says where they are holes, and those stripes are zeroed
//! on the new leg, not computed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmraid::array::create::{AssembleOptions, CreateOptions, assemble, create};
use wasmraid::device::BlockDevice;
use wasmraid::device::mem::MemLeg;
use wasmraid::device::nbd::{NbdLeg, NbdOptions, NbdUri};
use wasmraid::device::status::ZERO;
use wasmraid::frontend::nbd::{Exports, Listen, NbdLimits, NbdServer};
use wasmraid_tests::{qemu_bpo, require, sandbox};

fn leg(uri: &str) -> NbdLeg {
    let options = NbdOptions { timeout: Duration::from_secs(20), ..NbdOptions::default() };
    NbdLeg::open(NbdUri::parse(uri).expect("uri"), options).expect("open the leg")
}

/// A server process on a Unix socket of its own (never a TCP port),
/// killed when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `command(dir, socket)`: the server's command line, given a folder of
    /// its own and the Unix socket it must create; waited for until it has.
    fn start(what: &str, command: impl FnOnce(&Path, &Path) -> Command) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("server.sock");
        let child = command(dir.path(), &socket).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "{what} did not create its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, socket, _dir: dir }
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nbdkit memory SIZE`.
struct Nbdkit;

impl Nbdkit {
    fn memory(size: &str) -> Server {
        Nbdkit::start(&[], size)
    }

    /// `flags` before the plugin (`--no-sr`: no structured replies, a
    /// `--filter`), `memory` and its words (`args`: the size first).
    fn start(flags: &[&str], args: &str) -> Server {
        require("nbdkit");
        Server::start("nbdkit", |_, socket| {
            let mut c = Command::new("nbdkit");
            c.args(["-f", "--exit-with-parent"]).args(flags).arg("-U").arg(socket).arg("memory").args(args.split(' '));
            c
        })
    }
}

/// Bytes that differ at every offset.
fn pattern(at: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((at + i) % 251) as u8 | 1).collect()
}

/// Writes, reads across holes and data (one request per piece, several
/// chunks each), an unaligned small read and block status (without
/// `base:allocation`: all allocated, as any device that cannot tell).
fn exercise(leg: &NbdLeg, base_allocation: bool) {
    let size = leg.size();
    assert!(size >= 16 << 20);
    let data = pattern(1 << 20, 256 << 10);
    leg.write_at(&data, 1 << 20, false).expect("write");
    leg.write_at(&pattern(9 << 20, 4096), 9 << 20, true).expect("write FUA");
    leg.flush().expect("flush");

    // 12 MiB from 0: holes, data, holes, data, holes; several pieces.
    let mut all = vec![0xaau8; 12 << 20];
    leg.read_at(&mut all, 0).expect("read across holes");
    let mut expected = vec![0u8; 12 << 20];
    expected[1 << 20..(1 << 20) + (256 << 10)].copy_from_slice(&data);
    expected[9 << 20..(9 << 20) + 4096].copy_from_slice(&pattern(9 << 20, 4096));
    assert!(all == expected, "a read across holes and data gives the data and zeroes");
    let mut small = [0u8; 100];
    leg.read_at(&mut small, (1 << 20) + 7).expect("small read");
    assert_eq!(&small[..], &data[7..107]);

    let mut status = Vec::new();
    leg.block_status(0, 16 << 20, &mut status).expect("block status");
    assert_eq!(status.iter().map(|e| e.len).sum::<u64>(), 16 << 20, "block status covers the range: {status:?}");
    if !base_allocation {
        assert!(status.iter().all(|e| e.allocation == 0), "{status:?}");
        return;
    }
    let zero_at = |at: u64| {
        let mut start = 0;
        for e in &status {
            if at < start + e.len {
                return e.allocation & ZERO != 0;
            }
            start += e.len;
        }
        panic!("{at} not covered");
    };
    assert!(zero_at(0) && zero_at(4 << 20) && zero_at(15 << 20), "unwritten ranges read as zeroes: {status:?}");
    assert!(!zero_at(1 << 20) && !zero_at((1 << 20) + (200 << 10)) && !zero_at(9 << 20), "written ranges are data: {status:?}");
    write_zeroes_and_trim(leg);
}

fn write_zeroes_and_trim(leg: &NbdLeg) {
    leg.write_zeroes(1 << 20, 64 << 10, false).expect("write zeroes");
    let mut back = vec![1u8; 64 << 10];
    leg.read_at(&mut back, 1 << 20).expect("read zeroed");
    assert!(back.iter().all(|&b| b == 0));
    leg.discard(2 << 20, 1 << 20).expect("trim");
}

#[test]
fn our_own_server_gives_extended_headers_and_block_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nbd.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let device = Arc::new(MemLeg::new("m", 64 << 20)) as Arc<dyn BlockDevice>;
    let _server = runtime.block_on(async {
        let mut server = NbdServer::new(Exports::new(vec![("m".into(), device)]), NbdLimits::default(), None).expect("server");
        server.listen(&Listen::Unix(socket.clone())).await.expect("listen");
        server
    });
    let leg = leg(&format!("nbd+unix:///m?socket={}", socket.display()));
    let link = leg.link();
    assert!(link.connected);
    assert_eq!(link.features, "extended-headers, structured-replies, base:allocation");
    exercise(&leg, true);
}

#[test]
fn nbdkit_gives_structured_replies_and_block_status() {
    let server = Nbdkit::memory("64M");
    let leg = leg(&server.uri());
    // nbdkit 1.32 refuses NBD_OPT_EXTENDED_HEADERS; a newer one takes it.
    let features = leg.link().features;
    assert!(features.ends_with("structured-replies, base:allocation"), "{features}");
    exercise(&leg, true);
}

#[test]
fn qemu_nbd_10_gives_extended_headers_and_block_status() {
    let server = Server::start("qemu-nbd", |dir, socket| {
        let image = dir.join("image.raw");
        std::fs::File::create(&image).and_then(|f| f.set_len(64 << 20)).expect("a sparse 64 MiB image");
        let mut c = Command::new(qemu_bpo("qemu-nbd"));
        c.args(["-f", "raw", "--discard=unmap", "-k"]).arg(socket).arg(image);
        c
    });
    let leg = leg(&server.uri());
    assert_eq!(leg.link().features, "extended-headers, structured-replies, base:allocation");
    exercise(&leg, true);
}

#[test]
fn nbdkit_without_structured_replies_gets_simple_ones() {
    let server = Nbdkit::start(&["--no-sr"], "64M");
    let leg = leg(&server.uri());
    assert_eq!(leg.link().features, "simple-replies");
    exercise(&leg, false);
    write_zeroes_and_trim(&leg);
}

#[test]
fn a_new_remote_leg_of_a_mostly_empty_array_is_rebuilt_sparsely() {
    let servers: Vec<Server> = (0..5).map(|_| Nbdkit::memory("64M")).collect();
    let open = |s: &Server| Arc::new(leg(&s.uri())) as Arc<dyn BlockDevice>;
    let legs: Vec<Arc<dyn BlockDevice>> = servers[..4].iter().map(open).collect();
    let o = CreateOptions {
        name: "remote".into(),
        component: wasmraid::builtins::find("raid5").expect("raid5").to_vec(),
        chunk_sectors: 8,
        args: String::new(),
        assume_clean: true,
        force: false,
        bitmap_chunk: None,
    };
    create(&legs, &sandbox(), &o).expect("create");
    let options = AssembleOptions { name: None, force: false, daemon_sleep: Duration::from_millis(50) };
    let a = assemble(legs, &sandbox(), &options).expect("assemble").array;
    let size = a.size();
    let written = pattern(8 << 20, 6 << 20);
    a.write(&written, 8 << 20, false).expect("write");
    a.fail_leg(2, "test: gone for good");
    a.leg_remove(2).expect("remove");
    a.leg_add(Some(2), open(&servers[4])).expect("add a new remote leg");
    a.sync.wait();
    assert_eq!(a.health_chars(), "AAAA");
    let moved = a.sync.last_bytes.load(Ordering::Relaxed);
    println!("rebuild of a remote leg of a {size}-byte array with 6 MiB written moved {moved} bytes");
    assert!(moved < size / 10, "stripes whose remote sources are holes are zeroed in place, not computed: moved {moved} of {size}");
    // The new leg alone (another one failed) gives the data back.
    a.fail_leg(0, "test");
    let mut all = vec![0u8; size as usize];
    a.read(&mut all, 0).expect("read");
    let mut expected = vec![0u8; size as usize];
    expected[8 << 20..14 << 20].copy_from_slice(&written);
    assert!(all == expected, "the rebuilt leg holds its share");
}

#[test]
fn requests_not_aligned_to_the_servers_minimum_are_widened_to_its_blocks() {
    // nbdkit refusing any request not aligned to 4 KiB, or over 256 KiB.
    let policy = ["--filter=blocksize-policy"];
    let server = Nbdkit::start(&policy, "64M blocksize-minimum=4096 blocksize-maximum=262144 blocksize-error-policy=error");
    let leg = leg(&server.uri());
    let data = pattern(8192, 1 << 20);
    leg.write_at(&data, 8192, false).expect("an aligned write of 1 MiB, split at the maximum");
    let mut small = [0u8; 100];
    leg.read_at(&mut small, 8192 + 4000).expect("an unaligned read");
    assert_eq!(&small[..], &data[4000..4100]);
    let mut across = vec![0u8; 300 << 10];
    leg.read_at(&mut across, 8192 + 5).expect("an unaligned read over the maximum");
    assert!(across[..] == data[5..5 + (300 << 10)]);
    // Writes, zeroes and discards not aligned to its blocks: whole blocks
    // read, patched and written back (zeroes: requests for the whole
    // blocks inside), each served by a server that refuses anything else.
    let mut expected = vec![0u8; 2 << 20];
    expected[8192..8192 + (1 << 20)].copy_from_slice(&data);
    let odd = pattern(7, 10_000);
    leg.write_at(&odd, 8192 + 3, true).expect("an unaligned FUA write");
    expected[8192 + 3..8192 + 3 + odd.len()].copy_from_slice(&odd);
    leg.write_zeroes(8192 + 20_000, 30_000, false).expect("unaligned zeroes over whole blocks");
    expected[8192 + 20_000..8192 + 50_000].fill(0);
    leg.write_zeroes(8192 + 60_000, 100, false).expect("unaligned zeroes inside one block");
    expected[8192 + 60_000..8192 + 60_100].fill(0);
    leg.discard(8192 + 70_001, 9_000).expect("an unaligned discard (a hint: its whole blocks only)");
    let mut back = vec![0u8; 2 << 20];
    leg.read_at(&mut back[..70_000 + 8192], 0).expect("read back");
    assert!(back[..78_192] == expected[..78_192], "unaligned writes and zeroes landed, and nothing around them moved");
    // Two threads writing 512-byte pieces that share the server's blocks:
    // the read-modify-writes must not undo each other.
    std::thread::scope(|t| {
        for half in 0..2u8 {
            let leg = &leg;
            t.spawn(move || {
                for i in 0..32u64 {
                    let sector = 2 * i + u64::from(half);
                    leg.write_at(&[half + 1; 512], (1 << 20) + sector * 512, false).expect("a 512-byte write");
                }
            });
        }
    });
    let mut shared = vec![0u8; 32 << 10];
    leg.read_at(&mut shared, 1 << 20).expect("read back");
    for (sector, bytes) in shared.chunks(512).enumerate() {
        assert!(bytes.iter().all(|&b| b == 1 + (sector % 2) as u8), "sector {sector} lost a concurrent neighbour's write");
    }
}
