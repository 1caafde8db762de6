//! The NBD export with real clients: qemu-io, qemu-img, nbdcopy, nbdinfo and
//! fio's nbd engine with verify=crc32c, over every kind of layout, with legs
//! failed mid-workload, a table with an error segment, hostile protocol
//! bytes, and hot reload under load.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;
use wasmraid_tests::{Served, fio, qemu_bpo, require, run, verify_with_failures};

fn qemu_io(uri: &str, commands: &[&str]) -> (bool, String) {
    require("qemu-io");
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri);
    let (ok, text) = run(&mut cmd);
    // qemu-io reports failed commands on its output but may exit 0.
    (ok && !text.contains("failed") && !text.contains("Pattern verification failed"), text)
}

#[test]
fn nbdinfo_sees_the_export() {
    require("nbdinfo");
    let s = Served::layout("raid5", 4, "64M", "", "64K");
    let (ok, text) = run(Command::new("nbdinfo").arg("--json").arg(s.uri()));
    assert!(ok, "{text}");
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    let export = &info["exports"][0];
    assert_eq!(export["export-size"].as_u64(), Some(3 * 64 << 20));
    assert_eq!(export["can_flush"], true);
    assert_eq!(export["can_fua"], true);
    assert_eq!(export["can_multi_conn"], true);
    assert_eq!(export["can_cache"], true);
    let (ok, text) = run(Command::new("nbdinfo").arg("--list").arg(format!("nbd+unix://?socket={}", s.socket.display())));
    assert!(ok && text.contains("export=\"dev\""), "{text}");
}

#[test]
fn qemu_io_patterns_on_linear_striped_and_raid0() {
    // linear over legs of unequal size, the dm striped target, raid0.
    let linear = Served::table(|d| {
        for (i, size) in [(0, 3 << 20), (1, 5 << 20)] {
            std::fs::File::create(d.join(format!("l{i}"))).unwrap().set_len(size).unwrap();
        }
        format!("0 8192 wasm linear 8 2 {0}/l0 0 {0}/l1 0\n", d.display())
    });
    let striped = Served::table(|d| {
        for i in 0..3 {
            std::fs::File::create(d.join(format!("s{i}"))).unwrap().set_len(8 << 20).unwrap();
        }
        format!("0 24576 striped 3 128 {0}/s0 0 {0}/s1 0 {0}/s2 0\n", d.display())
    });
    let raid0 = Served::layout("raid0", 4, "16M", "", "64K");
    for s in [&linear, &striped, &raid0] {
        let (ok, text) = qemu_io(&s.uri(), &["write -P 0xab 0 1M", "write -P 0x17 3000k 999k", "read -P 0xab 0 1M", "read -P 0x17 3000k 999k"]);
        assert!(ok, "{text}\n{}", s.log());
    }
    // striped puts chunk 1 on the second leg at its start (dm semantics).
    let mut second = vec![0u8; 65536];
    std::fs::File::open(striped.dir.path().join("s1")).unwrap().read_exact(&mut second).unwrap();
    assert!(second.iter().all(|&b| b == 0xab));
}

#[test]
fn qemu_img_convert_compare_and_nbdcopy() {
    require("qemu-img");
    require("nbdcopy");
    let s = Served::layout("raid6", 6, "16M", "left-asymmetric", "64K");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.raw");
    let mut data = vec![0u8; 64 << 20];
    let mut x = 0x1234_5678u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&image, &data).unwrap();
    let (ok, text) = run(Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw"]).arg(&image).arg(s.uri()));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw"]).arg(&image).arg(s.uri()));
    assert!(ok && text.contains("identical"), "{text}");
    let back = dir.path().join("back.raw");
    let (ok, text) = run(Command::new("nbdcopy").arg(s.uri()).arg(&back));
    assert!(ok, "{text}");
    assert!(std::fs::read(&back).unwrap() == data, "nbdcopy read back different bytes");
}

/// qemu 10 (bookworm-backports) asks for extended headers; its trace
/// shows what the server answered.
const EXTENDED_ACK: &str = "Received option reply 11 (extended headers), type 1 (ack)";

#[test]
fn qemu_10_speaks_extended_headers_to_wasmraid() {
    let s = Served::layout("raid6", 6, "16M", "", "64K");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.raw");
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&image, &data).unwrap();
    let qemu_img = qemu_bpo("qemu-img");
    let traced = |cmd: &mut Command| {
        let (ok, text) = run(cmd);
        assert!(ok, "{text}");
        assert!(text.contains(EXTENDED_ACK), "qemu did not settle on extended headers: {text}");
        text
    };
    traced(Command::new(&qemu_img).args(["--trace", "nbd_*", "convert", "-n", "-f", "raw", "-O", "raw"]).arg(&image).arg(s.uri()));
    let text = traced(Command::new(&qemu_img).args(["--trace", "nbd_*", "compare", "-f", "raw", "-F", "raw"]).arg(&image).arg(s.uri()));
    assert!(text.contains("identical"), "{text}");
    // qemu-io: a pattern written and read back at an unaligned offset,
    // then write-zeroes and discard, over extended headers.
    let text = traced(
        Command::new(qemu_bpo("qemu-io"))
            .args(["--trace", "nbd_*", "-f", "raw"])
            .args(["-c", "write -P 0x5a 1000448 3M", "-c", "read -P 0x5a 1000448 3M", "-c", "write -z 8M 1M", "-c", "read -P 0 8M 1M", "-c", "discard 12M 1M"])
            .arg(s.uri()),
    );
    assert!(!text.contains("Pattern verification failed"), "{text}");
    // qemu-img map reads base:allocation: the discarded range (whole
    // stripes: 256 KiB each) is zero.
    let (ok, map) = run(Command::new(&qemu_img).args(["map", "--output=json", "-f", "raw"]).arg(s.uri()));
    assert!(ok && map.contains("\"zero\": true"), "{map}");
}

/// nbdsh (libnbd's Python shell): structured replies, base:allocation,
/// writes, reads, zeroes, flush and block status through libnbd's API.
#[test]
fn nbdsh_writes_reads_zeroes_and_maps_a_raid5() {
    require("nbdsh");
    let s = Served::layout("raid5", 4, "16M", "", "64K");
    let script = format!(
        r#"
h.add_meta_context("base:allocation")
h.connect_uri("{uri}")
assert h.get_structured_replies_negotiated()
assert h.can_meta_context("base:allocation")
data = bytes(range(256)) * 256
h.pwrite(data, 1048576)
assert h.pread(65536, 1048576) == data
h.zero(65536, 1048576)
assert h.pread(65536, 1048576) == bytes(65536)
h.pwrite(data, 2097152, nbd.CMD_FLAG_FUA)
h.flush()
assert h.can_cache()
h.cache(8 << 20, 0)
h.cache(1 << 20, (48 << 20) - (1 << 20))
found = []
def extents(meta, offset, entries, err):
    found.append((meta, offset, list(entries)))
    return 0
h.block_status(4 << 20, 0, extents)
assert found and found[0][0] == "base:allocation", found
flags = found[0][2][1::2]
assert 0 in flags, found
print("nbdsh ok", found[0][2][:8])
"#,
        uri = s.uri()
    );
    // nbdsh runs the `python3` it finds first; Debian's has libnbd's module
    // (python3-libnbd), a pyenv one before it on PATH does not.
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let (ok, out) = run(Command::new("nbdsh").env("PATH", path).args(["-c", &script]));
    assert!(ok && out.contains("nbdsh ok"), "{out}");
}

fn each_leg(n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|i| vec![i]).collect()
}

fn each_pair(n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|i| vec![i, (i + 1) % n]).collect()
}

#[test]
fn raid5_each_leg_failed_in_turn() {
    verify_with_failures("raid5", 4, "", &each_leg(4));
}

#[test]
fn raid6_two_legs_at_once_in_turn() {
    verify_with_failures("raid6", 6, "", &each_pair(6));
}

#[test]
fn raid7_three_legs_at_once() {
    verify_with_failures("raid7", 7, "", &[vec![0, 1, 2], vec![3, 5, 6]]);
}

#[test]
fn raid10_pyramid_draid_raid1_with_a_failed_leg() {
    verify_with_failures("raid10", 4, "n2", &each_leg(4));
    verify_with_failures("raid10", 3, "f2", &[vec![1]]);
    verify_with_failures("pyramid", 14, "", &[vec![3], vec![5, 11]]);
    verify_with_failures("draid", 8, "p=2,s=1,seed=9", &[vec![2], vec![0, 7]]);
    verify_with_failures("raid1", 3, "", &[vec![0, 1]]);
}

#[test]
fn raid0_and_linear_verify_clean() {
    require("fio");
    for layout in ["raid0", "linear"] {
        let s = Served::layout(layout, 3, "24M", "", "64K");
        let (clean, text) = fio(&s.uri(), &["--size=48M"]);
        assert!(clean, "{layout}: {text}");
    }
}

#[test]
fn an_error_segment_fails_exactly_there() {
    let s = Served::table(|d| {
        std::fs::File::create(d.join("f")).unwrap().set_len(4 << 20).unwrap();
        format!("0 2048 zero\n2048 2048 error\n4096 2048 linear {}/f 0\n", d.display())
    });
    let uri = s.uri();
    assert!(qemu_io(&uri, &["read -P 0 0 1M"]).0);
    assert!(qemu_io(&uri, &["write -P 0x5 2M 1M", "read -P 0x5 2M 1M"]).0);
    for range in ["read 1M 4k", "read 1536k 4k", "write 1020k 8k", "read 2044k 8k"] {
        let (ok, text) = qemu_io(&uri, &[range]);
        assert!(!ok, "{range} should fail in the error segment: {text}");
    }
}

#[test]
fn hostile_bytes_close_one_connection_only() {
    let s = Served::layout("raid5", 3, "8M", "", "64K");
    // A steady client keeps working through every hostile connection.
    let uri = s.uri();
    let steady =
        std::thread::spawn(move || (0..20).all(|i| qemu_io(&uri, &[&format!("write -P {i} {}k 64k", i * 64), &format!("read -P {i} {}k 64k", i * 64)]).0));
    let hostile: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        [0u8, 0, 0, 3].iter().chain(&[0xffu8; 64]).copied().collect(),
        // Fixed newstyle, then an option of 4 GiB.
        [&[0u8, 0, 0, 3][..], &0x4948_4156_454f_5054u64.to_be_bytes(), &7u32.to_be_bytes(), &u32::MAX.to_be_bytes()].concat(),
        // A proper handshake, then a request with a bad magic.
        [&[0u8, 0, 0, 3][..], &0x4948_4156_454f_5054u64.to_be_bytes(), &1u32.to_be_bytes(), &3u32.to_be_bytes(), b"dev", &[0xde; 28]].concat(),
        // A proper handshake, then a 1 GiB write.
        [
            &[0u8, 0, 0, 3][..],
            &0x4948_4156_454f_5054u64.to_be_bytes(),
            &1u32.to_be_bytes(),
            &3u32.to_be_bytes(),
            b"dev",
            &0x2560_9513u32.to_be_bytes(),
            &[0, 0, 0, 1],
            &[0; 16],
            &(1u32 << 30).to_be_bytes(),
        ]
        .concat(),
    ];
    for bytes in hostile {
        let mut c = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(&bytes);
        let mut sink = Vec::new();
        // The server must close the connection (read reaches EOF).
        let r = c.read_to_end(&mut sink);
        let closed = r.is_ok() || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset);
        assert!(closed, "connection not closed after hostile bytes: {r:?}");
    }
    assert!(steady.join().unwrap(), "the steady client failed: {}", s.log());
    assert!(s.log_says("protocol violation") || s.log_says("bad request magic"), "{}", s.log());
}

#[test]
fn hot_reload_under_fio_load() {
    require("fio");
    // raid5 with parity-n is the same layout as raid4: reload across
    // components, several times, while fio verifies.
    let s = Served::layout("raid5", 5, "32M", "parity-n", "64K");
    let uri = s.uri();
    let job = std::thread::spawn(move || fio(&uri, &["--size=96M", "--rw=randrw"]));
    for component in ["raid4", "raid5", "raid4", "raid5"] {
        std::thread::sleep(Duration::from_millis(100));
        let out = s.ctl(&["reload", &s.name, component]);
        assert!(out.status.success(), "reload to {component}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (clean, text) = job.join().unwrap();
    assert!(clean, "{text}");
    // A layout that differs is refused, naming the first stripe that differs
    // (left-symmetric and parity-n agree on stripe 0).
    let out = s.ctl(&["reload", &s.name, "raid5", "--args", "left-symmetric"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("stripe 1 differs"), "{err}");
}

#[test]
fn table_check_names_the_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    std::fs::write(&path, "0 100 zero\n100 50 striped 2 x a 0 b 0\n").unwrap();
    let (ok, text) = run(Command::new(wasmraid_tests::wasmraid_bin()).args(["table", "check"]).arg(&path));
    assert!(!ok && text.contains("line 2, field 5 (<chunk_sectors>): 'x' is not a whole number"), "{text}");
}

#[test]
fn large_reads_spliced_from_the_legs_fall_back_when_a_leg_cannot_be_read() {
    // Reads of 64 KiB and more go from the legs' files to the socket by
    // splice, each pipe-full moved in whole before its header is sent.
    let s = Served::layout("raid5", 4, "16M", "", "64K");
    let (ok, text) = qemu_io(&s.uri(), &["write -P 0x5a 0 40M", "read -P 0x5a 0 40M", "read -P 0x5a 1000k 3000k"]);
    assert!(ok, "healthy, spliced: {text}\n{}", s.log());
    // Leg 1 (raw, 16 MiB: the array's 48 MiB in thirds) loses its second half behind the server's back: a splice from
    // it comes up short. Nothing short may reach the client: the rest of
    // the read is served the plain way, which fails the leg and decodes.
    let leg1 = s.dir.path().join("leg1");
    std::fs::OpenOptions::new().write(true).open(&leg1).unwrap().set_len(8 << 20).unwrap();
    let (ok, text) = qemu_io(&s.uri(), &["read -P 0x5a 0 40M"]);
    assert!(ok, "a leg cut short under a spliced read: {text}\n{}", s.log());
    let health = s.status()["arrays"][0]["health"].as_str().unwrap().to_string();
    assert_eq!(health.matches('D').count(), 1, "the cut leg is failed: {health}");
    let (ok, text) = qemu_io(&s.uri(), &["read -P 0x5a 0 40M"]);
    assert!(ok, "degraded reads decode: {text}");
}
