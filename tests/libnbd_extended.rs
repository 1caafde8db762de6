//! libnbd 1.22 (trixie's nbdinfo, nbdcopy and nbdsh, unpacked by
//! scripts/setup.sh) against wasmraid's export, with NBD extended headers
//! and, where libnbd lets a client decline them (nbdsh), without. Debian
//! 12's libnbd 1.14 predates extended headers: the tests of clients.rs and
//! block_status.rs run it, so nbdinfo and nbdcopy without extended headers
//! are covered there (neither tool has a switch to decline them).

use std::process::Command;
use wasmraid_tests::{Served, assert_one_failed_leg, flags_at, libnbd_trixie, parse_map, run};

/// libnbd's debug line, once per connection, when the server accepted
/// NBD_OPT_EXTENDED_HEADERS.
const NEGOTIATED: &str = "negotiated extended headers on this connection";

/// Run `cmd`, returning (success, stdout, stderr) apart: JSON and maps are
/// on stdout, libnbd's debug lines on stderr.
fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `nbdinfo --map[=CONTEXT]` with libnbd's debug on: (offset, length,
/// flags) per extent, after checking the connection used extended headers
/// (so block status came as 64-bit extents).
fn map(uri: &str, context: Option<&str>) -> Vec<(u64, u64, u32)> {
    let arg = context.map_or("--map".to_string(), |c| format!("--map={c}"));
    let (ok, out, err) = output(libnbd_trixie("nbdinfo").env("LIBNBD_DEBUG", "1").arg(arg).arg(uri));
    assert!(ok, "nbdinfo --map: {out}{err}");
    assert!(err.contains(NEGOTIATED), "nbdinfo --map did not settle on extended headers: {err}");
    parse_map(&out)
}

/// Bytes that are never zero and never repeat within a stripe.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8 | 1
        })
        .collect()
}

/// `nbdcopy -v SRC DST` (-v turns libnbd's debug on: nbdcopy turns it off
/// otherwise, whatever LIBNBD_DEBUG says); every NBD connection it opened
/// must have settled on extended headers.
fn nbdcopy(src: &str, dst: &str) {
    let (ok, out, err) = output(libnbd_trixie("nbdcopy").arg("-v").arg(src).arg(dst));
    assert!(ok, "nbdcopy {src} {dst}: {out}{err}");
    let connected = err.matches("nbd_connect_uri: leave: ret=0").count();
    let negotiated = err.matches(NEGOTIATED).count();
    assert!(connected > 0 && negotiated == connected, "nbdcopy {src} {dst}: {negotiated} of {connected} connections on extended headers: {err}");
}

#[test]
fn nbdinfo_1_22_negotiates_extended_headers_with_a_raid6() {
    // raid6 over 6 legs: 4 data chunks of 64 KiB per stripe.
    let s = Served::layout("raid6", 6, "32M", "", "64K");
    let uri = s.uri();
    let (ok, version, _) = output(libnbd_trixie("nbdinfo").arg("--version"));
    assert!(ok && version.contains("nbdinfo 1.22"), "trixie's nbdinfo: {version}");

    let (ok, out, err) = output(libnbd_trixie("nbdinfo").env("LIBNBD_DEBUG", "1").arg(&uri));
    assert!(ok, "{out}{err}");
    assert!(out.contains("protocol: newstyle-fixed without TLS, using extended packets"), "{out}");
    assert!(err.contains(NEGOTIATED), "{err}");
    for line in [
        "export=\"dev\":",
        "export-size: 134217728 (128M)",
        "block_size_preferred: 262144",
        "can_flush: true",
        "can_fua: true",
        "can_multi_conn: true",
        "can_trim: true",
        "can_zero: true",
        "is_read_only: false",
    ] {
        assert!(out.contains(line), "nbdinfo does not say {line:?}: {out}");
    }

    let (ok, out, err) = output(libnbd_trixie("nbdinfo").arg("--json").arg(&uri));
    assert!(ok, "{out}{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("nbdinfo --json: {e}: {out}"));
    assert_eq!(info["protocol"], "newstyle-fixed", "{out}");
    assert_eq!(info["structured"], true, "{out}");
    assert_eq!(info["extended"], true, "{out}");
    let export = &info["exports"][0];
    assert_eq!(export["export-name"], "dev", "{out}");
    assert_eq!(export["export-size"].as_u64(), Some(128 << 20), "{out}");
    for flag in ["can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero"] {
        assert_eq!(export[flag], true, "{flag}: {out}");
    }
    assert_eq!(export["block_size_preferred"].as_u64(), Some(256 << 10), "the preferred block size is the stripe: {out}");
    let (min, max) = (export["block_size_minimum"].as_u64(), export["block_size_maximum"].as_u64());
    assert!(matches!((min, max), (Some(min), Some(max)) if (1..=4096).contains(&min) && max >= 256 << 10), "block sizes: {out}");

    // The server advertises extended headers (libnbd asks with NBD_OPT_EXTENDED_HEADERS).
    let (ok, out, err) = output(libnbd_trixie("nbdinfo").args(["--has", "extended-headers"]).arg(&uri));
    assert!(ok, "nbdinfo --has extended-headers: {out}{err}");
}

#[test]
fn nbdcopy_1_22_copies_in_and_out_over_extended_headers() {
    let s = Served::layout("raid6", 6, "32M", "", "64K");
    let uri = s.uri();
    let size = 128 << 20;
    let dir = s.dir.path();
    // 16 MiB of data first, so that the holes of the next copy must be
    // written as zeroes over it.
    let first = dir.join("first");
    std::fs::write(&first, pattern(16 << 20, 7)).expect("write first");
    nbdcopy(&first.display().to_string(), &uri);
    // The whole export from a sparse file: data at 0 for 5 MiB and an odd
    // tail (not a whole stripe, nor a whole sector), a hole over the rest
    // of the first copy, data again at 100 MiB.
    let image = dir.join("image");
    let mut bytes = vec![0u8; size];
    let head = (5 << 20) + 12345;
    bytes[..head].copy_from_slice(&pattern(head, 11));
    bytes[100 << 20..101 << 20].copy_from_slice(&pattern(1 << 20, 13));
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&image).expect("create image");
        f.set_len(size as u64).expect("size image");
        f.write_all(&bytes[..head]).expect("write head");
        f.seek(SeekFrom::Start(100 << 20)).expect("seek");
        f.write_all(&bytes[100 << 20..101 << 20]).expect("write 100M");
    }
    nbdcopy(&image.display().to_string(), &uri);
    let back = dir.join("back");
    nbdcopy(&uri, &back.display().to_string());
    let read = std::fs::read(&back).expect("read back");
    assert_eq!(read.len(), size, "nbdcopy reads the whole export");
    if let Some(at) = read.iter().zip(&bytes).position(|(a, b)| a != b) {
        panic!("nbdcopy read back different bytes from byte {at}: {:#04x}, expected {:#04x}\n{}", read[at], bytes[at], s.log());
    }
}

#[test]
fn nbdinfo_1_22_maps_allocation_and_health_over_extended_headers() {
    let s = Served::layout("raid6", 6, "32M", "", "64K");
    let uri = s.uri();
    let fresh = map(&uri, None);
    assert!(fresh.iter().all(|e| e.2 == 3), "a never-written array is all hole,zero: {fresh:?}");
    assert_eq!(fresh.iter().map(|e| e.1).sum::<u64>(), 128 << 20, "the extents cover the export: {fresh:?}");
    // 8 MiB of data, then 1 MiB of it (whole stripes: 256 KiB each)
    // discarded by nbdsh 1.22, on extended headers too.
    let data = s.dir.path().join("data");
    std::fs::write(&data, pattern(8 << 20, 3)).expect("data");
    nbdcopy(&data.display().to_string(), &uri);
    let script = format!("h.connect_uri({uri:?})\nassert h.get_extended_headers_negotiated()\nh.trim(1 << 20, 2 << 20)\nh.flush()\nprint('trimmed')\n");
    let (ok, out) = run(libnbd_trixie("nbdsh").args(["-c", &script]));
    assert!(ok && out.contains("trimmed"), "nbdsh trim: {out}");

    let m = map(&uri, None);
    assert_eq!(flags_at(&m, 0), Some(0), "written: data: {m:?}");
    assert_eq!(flags_at(&m, 2 << 20), Some(3), "discarded: hole,zero: {m:?}");
    assert_eq!(flags_at(&m, 3 << 20), Some(0), "written after the discard: data: {m:?}");
    assert_eq!(flags_at(&m, 16 << 20), Some(3), "never written: hole,zero: {m:?}");
    assert_eq!(m.iter().map(|e| e.1).sum::<u64>(), 128 << 20, "the extents cover the export: {m:?}");
    let health = map(&uri, Some("wasmraid:health"));
    assert!(health.iter().all(|e| e.2 == 0), "every leg in sync: {health:?}");

    let out = s.ctl(&["leg", "fail", "dev", "2"]);
    assert!(out.status.success(), "leg fail: {}", String::from_utf8_lossy(&out.stderr));
    let size = assert_one_failed_leg(&map(&uri, Some("wasmraid:health")), &map(&uri, None));
    assert_eq!(size, 128 << 20, "the health extents cover the export");
}

/// nbdsh 1.22 with extended headers requested and declined (the one
/// libnbd 1.22 tool that can decline them): the same writes, reads,
/// zeroes, trims, flushes and block status over one export, each
/// connection checked for what it settled on.
#[test]
fn nbdsh_1_22_with_and_without_extended_headers() {
    let s = Served::layout("raid5", 4, "16M", "", "64K");
    let uri = s.uri();
    for (extended, seed) in [(true, 1), (false, 2)] {
        let python_bool = if extended { "True" } else { "False" };
        let script = format!(
            r#"
h.set_request_extended_headers({python_bool})
h.add_meta_context("base:allocation")
h.connect_uri({uri:?})
assert h.get_extended_headers_negotiated() == {python_bool}, h.get_extended_headers_negotiated()
assert h.get_structured_replies_negotiated()
assert h.can_meta_context("base:allocation")
# An odd offset and length, across chunks and stripes.
data = bytes((({seed} * 7 + i * 13) % 255) + 1 for i in range(3 * 65536 + 777))
off = 5 * 65536 + 333
h.pwrite(data, off, nbd.CMD_FLAG_FUA)
assert h.pread(len(data), off) == data
h.zero(4096, off + 8192)
assert h.pread(4096, off + 8192) == bytes(4096)
h.flush()
# Whole stripes (192 KiB on 4 legs) from 6 MiB: trimmed, then holes.
h.pwrite(bytes([0xa5]) * (1 << 20), 6 << 20)
h.trim(3 * 65536 * 2, 6 << 20)
assert h.pread(3 * 65536 * 2, 6 << 20) == bytes(3 * 65536 * 2)
def query(count, offset):
    """(length, flags) of base:allocation from offset, through the
    64-bit call on extended headers and the 32-bit one without."""
    found = []
    def extent(context, start, entries, err):
        if context == "base:allocation":
            found.append(list(entries))
        return 0
    if {python_bool}:
        h.block_status_64(count, offset, extent)
        pairs = [tuple(e) for es in found for e in es]
    else:
        h.block_status(count, offset, extent)
        pairs = [(es[i], es[i + 1]) for es in found for i in range(0, len(es), 2)]
    assert pairs and all(length > 0 for (length, flags) in pairs), pairs
    return pairs
written = query(len(data), off)
assert written[0][1] & 1 == 0, ("written: not a hole", written)
trimmed = query(3 * 65536 * 2, 6 << 20)
holes = 0
for (length, flags) in trimmed:
    if flags != 3:
        break
    holes += length
assert holes >= 3 * 65536 * 2, ("trimmed: hole,zero", trimmed)
print("nbdsh ok", h.get_extended_headers_negotiated(), written[:2], trimmed[:2])
"#,
        );
        let (ok, out) = run(libnbd_trixie("nbdsh").env("LIBNBD_DEBUG", "1").args(["-c", &script]));
        assert!(ok && out.contains("nbdsh ok"), "nbdsh (extended headers {python_bool}): {out}\n{}", s.log());
        assert_eq!(out.contains(NEGOTIATED), extended, "nbdsh (extended headers {python_bool}): {out}");
    }
}
