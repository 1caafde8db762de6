//! The array against a shadow copy: random writes and reads, legs failed
//! up to the layout's tolerance, parity checked by scrubbing.

use super::*;
use crate::device::file::FileLeg;
use crate::layout::Geometry;
use crate::sandbox::{Sandbox, SandboxConfig, component};
use proptest::prelude::*;
use std::sync::LazyLock;

static SANDBOX: LazyLock<Arc<Sandbox>> = LazyLock::new(|| Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::default() }).expect("sandbox"));

/// An array of `legs` sparse files of `leg_chunks` 4 KiB chunks.
pub(crate) fn array(dir: &std::path::Path, layout: &str, legs: usize, leg_chunks: u64, args: &str) -> Array {
    let chunk = 4096u64;
    let devices: Vec<(Arc<dyn BlockDevice>, u64)> = (0..legs)
        .map(|i| {
            let leg = FileLeg::create(&dir.join(format!("leg{i}")), leg_chunks * chunk + 8192).expect("leg");
            (Arc::new(leg) as Arc<dyn BlockDevice>, 8192)
        })
        .collect();
    let loaded = Arc::new(component::load(&SANDBOX, crate::builtins::find(layout).expect("built-in")).expect("load"));
    let g = Geometry { chunk_sectors: 8, leg_chunks: vec![leg_chunks; legs], args: args.into() };
    let proven = ProvenLayout::prove(loaded, g).expect("prove");
    Array::new(layout, devices, proven)
}

fn scrub_all(a: &Array) -> u64 {
    (0..a.layout().descriptor.stripes).map(|s| a.scrub_stripe(s, false).expect("scrub")).sum()
}

#[derive(Debug, Clone)]
enum Op {
    Write { at: u64, len: usize, byte: u8 },
    Read { at: u64, len: usize },
    Fail,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (any::<u64>(), 1usize..20_000, any::<u8>()).prop_map(|(at, len, byte)| Op::Write { at, len, byte }),
        3 => (any::<u64>(), 1usize..20_000).prop_map(|(at, len)| Op::Read { at, len }),
        1 => Just(Op::Fail),
    ];
    prop::collection::vec(op, 1..40)
}

fn run_ops(layout: &str, legs: usize, args: &str, ops: &[Op], seed: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), layout, legs, 24, args);
    let size = a.size();
    let ft = a.layout().descriptor.fault_tolerance as usize;
    let mut shadow = vec![0u8; size as usize];
    let mut failed = 0usize;
    let mut rng = seed;
    for op in ops {
        match *op {
            Op::Write { at, len, byte } => {
                let at = at % size;
                let len = len.min((size - at) as usize);
                let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add((i / 7) as u8)).collect();
                a.write(&data, at, false).map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
                shadow[at as usize..at as usize + len].copy_from_slice(&data);
            }
            Op::Read { at, len } => {
                let at = at % size;
                let len = len.min((size - at) as usize);
                let mut buf = vec![0u8; len];
                a.read(&mut buf, at).map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
                prop_assert!(buf == shadow[at as usize..at as usize + len], "read at {} of {} differs", at, len);
            }
            Op::Fail => {
                if failed < ft {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let leg = (rng >> 33) as usize % legs;
                    if a.legs()[leg].is_alive() {
                        a.fail_leg(leg, "test");
                        failed += 1;
                    }
                }
            }
        }
    }
    let mut all = vec![0u8; size as usize];
    a.read(&mut all, 0).map_err(|e| TestCaseError::fail(format!("final read: {e}")))?;
    prop_assert!(all == shadow, "final contents differ");
    if failed == 0 {
        prop_assert_eq!(scrub_all(&a), 0, "parity inconsistent");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn raid5_matches_a_shadow_copy(ops in ops(), seed: u64) { run_ops("raid5", 5, "", &ops, seed)?; }

    #[test]
    fn raid6_matches_a_shadow_copy(ops in ops(), seed: u64, args in prop::sample::select(vec!["la", "ls", "rotating-n-restart"])) { run_ops("raid6", 6, args, &ops, seed)?; }

    #[test]
    fn raid7_matches_a_shadow_copy(ops in ops(), seed: u64) { run_ops("raid7", 7, "", &ops, seed)?; }

    #[test]
    fn raid10_matches_a_shadow_copy(ops in ops(), seed: u64, args in prop::sample::select(vec!["n2", "f2", "o2"])) { run_ops("raid10", 4, args, &ops, seed)?; }

    #[test]
    fn raid1_matches_a_shadow_copy(ops in ops(), seed: u64) { run_ops("raid1", 3, "", &ops, seed)?; }

    #[test]
    fn pyramid_matches_a_shadow_copy(ops in ops(), seed: u64) { run_ops("pyramid", 14, "", &ops, seed)?; }

    #[test]
    fn draid_matches_a_shadow_copy(ops in ops(), seed: u64) { run_ops("draid", 8, "p=2,s=1,seed=3", &ops, seed)?; }

    #[test]
    fn raid0_and_linear_match(ops in ops().prop_filter("no failures", |o| o.iter().all(|x| !matches!(x, Op::Fail))), seed: u64) {
        run_ops("raid0", 3, "", &ops, seed)?;
        run_ops("linear", 3, "", &ops, seed)?;
    }
}

#[test]
fn one_failure_too_many_is_an_error_not_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid5", 4, 16, "");
    a.write(&vec![0x5a; 3 * 4096 * 4], 0, false).unwrap();
    a.fail_leg(0, "test");
    a.fail_leg(1, "test");
    let mut buf = vec![0u8; 3 * 4096 * 4];
    let e = a.read(&mut buf, 0).unwrap_err();
    assert!(e.to_string().contains("lost"), "{e}");
}

#[test]
fn io_errors_fail_the_leg_and_reads_go_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid6", 5, 16, "");
    let data: Vec<u8> = (0..a.size()).map(|i| (i * 13 % 251) as u8).collect();
    a.write(&data, 0, false).unwrap();
    // Shrink leg 2 underneath the array: its reads now fail with EOF.
    std::fs::OpenOptions::new().write(true).open(dir.path().join("leg2")).unwrap().set_len(0).unwrap();
    let mut back = vec![0u8; data.len()];
    a.read(&mut back, 0).unwrap();
    assert_eq!(back, data);
    assert_eq!(a.health_chars(), "AADAA");
    assert!(a.legs()[2].last_error().unwrap().contains("read error"));
}

#[test]
fn a_leg_failing_under_batched_leg_io_is_failed_and_the_data_stays_right() {
    // Reads and writes of one stripe go out together on the thread's ring;
    // a short read there is done again the plain way, which fails the leg.
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid6", 5, 16, "");
    let mut shadow: Vec<u8> = (0..a.size()).map(|i| (i * 7 % 253) as u8).collect();
    a.write(&shadow, 0, false).unwrap();
    std::fs::OpenOptions::new().write(true).open(dir.path().join("leg2")).unwrap().set_len(0).unwrap();
    // One 4 KiB piece of every chunk rewritten: read-modify-writes whose
    // old values sit on leg 2 for a third of the stripes.
    for (n, at) in (0..a.size()).step_by(4096).enumerate() {
        let piece = vec![n as u8; 1024];
        a.write(&piece, at + 1024, false).unwrap();
        shadow[(at + 1024) as usize..(at + 2048) as usize].copy_from_slice(&piece);
    }
    assert_eq!(a.health_chars(), "AADAA");
    let mut back = vec![0u8; shadow.len()];
    a.read(&mut back, 0).unwrap();
    assert_eq!(back, shadow);
}

#[test]
fn whole_stripes_written_together_keep_data_and_parity_right_degraded_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid6", 6, 32, "");
    let stripe = 4 * 4096;
    let mut shadow = vec![0u8; a.size() as usize];
    let mut write = |a: &Array, at: usize, len: usize, seed: usize| {
        let data: Vec<u8> = (0..len).map(|i| ((i + seed) * 31 % 251) as u8).collect();
        a.write(&data, at as u64, false).unwrap();
        shadow[at..at + len].copy_from_slice(&data);
    };
    // A partial head, five whole stripes together, a partial tail.
    write(&a, 1000, 5 * stripe + 7000, 1);
    assert_eq!(a.counters.full_stripe.load(Ordering::Relaxed), 5);
    assert_eq!(scrub_all(&a), 0);
    // Degraded: leg 3 gone; whole stripes still carry their data.
    a.fail_leg(3, "test");
    write(&a, 2 * stripe, 20 * stripe, 2);
    let mut back = vec![0u8; shadow.len()];
    a.read(&mut back, 0).unwrap();
    assert!(back == shadow, "degraded whole-stripe writes read back wrong");
}

#[test]
fn full_stripe_writes_read_nothing_and_partial_ones_choose_the_cheaper_way() {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid6", 8, 16, "");
    let stripe = 6 * 4096;
    a.write(&vec![1u8; stripe], 0, false).unwrap();
    assert_eq!(a.counters.full_stripe.load(Ordering::Relaxed), 1);
    let reads_before: u64 = a.legs().iter().map(|l| l.reads.load(Ordering::Relaxed)).sum();
    assert_eq!(reads_before, 0, "a full-stripe write reads nothing");
    // One 4 KiB chunk of six: RMW reads 1 data + 2 parity < RCW's 5.
    a.write(&vec![2u8; 4096], 4096, false).unwrap();
    assert_eq!(a.counters.rmw.load(Ordering::Relaxed), 1);
    // Five chunks of six: RCW reads 1 < RMW's 7.
    a.write(&vec![3u8; 5 * 4096], stripe as u64, false).unwrap();
    assert_eq!(a.counters.rcw.load(Ordering::Relaxed), 1);
    assert_eq!(scrub_all(&a), 0);
}

#[test]
fn discard_and_write_zeroes_keep_parity() {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid5", 4, 16, "");
    a.write(&vec![9u8; a.size() as usize], 0, false).unwrap();
    a.zero_range(1000, 50_000, false).unwrap();
    a.discard_range(0, 3 * 4096 * 3).unwrap();
    assert_eq!(scrub_all(&a), 0);
    let mut buf = vec![0u8; 50_000];
    a.read(&mut buf, 1000).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

/// Write `data` at `at` staged when the array offers it (driven with plain
/// system calls), else the plain way; true when it was staged.
fn write_maybe_staged(a: &Array, data: &[u8], at: u64) -> bool {
    use crate::device::staged::run_blocking;
    if let Some(mut w) = a.stage_write(at, data.len() as u64, false) {
        if run_blocking(|r| w.advance(data, r), |_| None) {
            return true;
        }
    }
    a.write(data, at, false).expect("plain write");
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Staged writes (the ublk queue thread's) leave data and parity
    /// exactly as plain writes do, for every layout kind: what reads back
    /// matches, scrubbing finds nothing, and a leg failed afterwards still
    /// leaves every byte readable.
    #[test]
    fn staged_writes_keep_data_and_parity_as_plain_writes_do(
        layout in prop_oneof![Just(("raid0", 3, "")), Just(("raid1", 2, "")), Just(("raid5", 4, "left-symmetric")), Just(("raid6", 6, "")), Just(("raid10", 4, ""))],
        writes in prop::collection::vec((any::<u64>(), prop_oneof![Just(512usize), Just(4096), Just(8192), Just(12288), Just(1000)], any::<u8>()), 1..40),
        fail in any::<usize>(),
    ) {
        let (name, legs, args) = layout;
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), name, legs, 24, args);
        let size = a.size();
        let mut shadow = vec![0u8; size as usize];
        // One write certain to qualify (a whole chunk), then the rest.
        let mut staged = 0;
        for (at, len, byte) in std::iter::once((4096, 4096, 7)).chain(writes) {
            let at = at % size / 512 * 512;
            let len = len.min((size - at) as usize);
            let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add((i / 5) as u8)).collect();
            staged += usize::from(write_maybe_staged(&a, &data, at));
            shadow[at as usize..at as usize + len].copy_from_slice(&data);
        }
        prop_assert!(staged > 0, "no write was staged");
        let mut back = vec![0u8; size as usize];
        a.read(&mut back, 0).unwrap();
        prop_assert!(back == shadow, "staged writes read back wrong");
        if name != "raid0" {
            prop_assert_eq!(scrub_all(&a), 0);
            a.fail_leg(fail % legs, "test");
            a.read(&mut back, 0).unwrap();
            prop_assert!(back == shadow, "degraded reads after staged writes differ");
        }
    }
}

#[test]
fn a_staged_write_that_fails_on_a_leg_fails_the_leg_and_the_plain_write_finishes_it() {
    use crate::device::staged::run_blocking;
    // The data leg's write fails, then (another array) the parity leg's.
    for victim in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), "raid5", 4, 16, "left-symmetric");
        let mut shadow: Vec<u8> = (0..a.size()).map(|i| (i * 13 % 251) as u8).collect();
        a.write(&shadow, 0, false).unwrap();
        let at = 3 * 4096 + 4096;
        let data = vec![0xa0 + victim as u8; 4096];
        let mut w = a.stage_write(at, 4096, false).expect("a healthy raid5 stages a 4 KiB write");
        let mut writes = 0;
        let done = run_blocking(
            |r| w.advance(&data, r),
            |op| {
                if op.write {
                    writes += 1;
                    (writes == 1 + victim).then_some(-libc::EIO)
                } else {
                    None
                }
            },
        );
        drop(w);
        assert!(!done, "a failed leg write abandons the staged write");
        assert_eq!(a.dead_legs(), 1, "the leg that failed the write is failed at once");
        assert!(a.stage_write(at, 4096, false).is_none(), "a degraded array stages nothing");
        a.write(&data, at, false).unwrap();
        shadow[at as usize..at as usize + 4096].copy_from_slice(&data);
        let mut back = vec![0u8; shadow.len()];
        a.read(&mut back, 0).unwrap();
        assert!(back == shadow, "degraded data after the abandoned staged write is wrong (victim {victim})");
    }
}

#[test]
fn a_staged_write_is_refused_while_its_stripe_is_held_and_across_chunk_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "raid5", 4, 16, "left-symmetric");
    let held = a.stage_write(0, 4096, false).expect("staged");
    assert!(a.stage_write(512, 512, false).is_none(), "the stripe is held by the first");
    drop(held);
    assert!(a.stage_write(512, 512, false).is_some());
    // Two chunks' different columns: the plain path.
    assert!(a.stage_write(2048, 4096, false).is_none());
    // Two whole chunks side by side: one run.
    assert!(a.stage_write(0, 8192, false).is_some());
}

#[test]
fn staged_degraded_reads_rebuild_what_plain_reads_do() {
    use crate::device::staged::run_blocking;
    for (layout, legs, args, dead) in [("raid5", 4, "left-symmetric", vec![1]), ("raid6", 6, "", vec![0, 4])] {
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), layout, legs, 16, args);
        let shadow: Vec<u8> = (0..a.size()).map(|i| (i * 29 % 241) as u8).collect();
        a.write(&shadow, 0, false).unwrap();
        assert!(a.stage_read(0, 4096).is_none(), "nothing to rebuild while every leg lives");
        for &leg in &dead {
            a.fail_leg(leg, "test");
        }
        let mut staged = 0;
        for at in (0..a.size()).step_by(1024) {
            let mut buf = vec![0u8; 1024];
            let Some(mut r) = a.stage_read(at, 1024) else { continue };
            assert!(run_blocking(|res| r.advance(&mut buf, res), |_| None));
            assert!(buf[..] == shadow[at as usize..at as usize + 1024], "{layout}: staged degraded read at {at} differs");
            staged += 1;
        }
        assert!(staged > 0, "{layout}: no degraded read was staged");
        // A source that fails to read abandons it; the plain read answers.
        let lost = (0..a.size()).step_by(4096).find(|&at| a.stage_read(at, 4096).is_some()).unwrap();
        let mut r = a.stage_read(lost, 4096).unwrap();
        let mut buf = vec![0u8; 4096];
        assert!(!run_blocking(|res| r.advance(&mut buf, res), |_| Some(-libc::EIO)));
        drop(r);
        a.read(&mut buf, lost).unwrap();
        assert!(buf[..] == shadow[lost as usize..lost as usize + 4096]);
    }
}

#[test]
fn gather_units_are_the_full_stripe_for_writes_and_the_chunk_for_rebuilds() {
    use crate::device::Gather;
    let dir = tempfile::tempdir().unwrap();
    // raid5 over 5 legs of 4 KiB chunks: a stripe holds 16 KiB of data.
    let a = Arc::new(array(dir.path(), "raid5", 5, 24, ""));
    assert_eq!(a.gather_unit(20_000, Gather::Write), Some(16_384..32_768));
    assert_eq!(a.gather_unit(20_000, Gather::Rebuild), Some(16_384..20_480));
    assert_eq!(a.gather_unit(a.size(), Gather::Write), None);
    // Through the table a served array sits in: the same units.
    let table = crate::table::Table::single("t", a.clone());
    assert_eq!(table.gather_unit(20_000, Gather::Write), Some(16_384..32_768));
    // A whole unit written as one staged write reads nothing.
    let data: Vec<u8> = (0..16_384u32).map(|i| (i * 7) as u8).collect();
    let mut staged = a.stage_write(16_384, 16_384, false).expect("a full stripe stages");
    assert!(crate::device::staged::run_blocking(|r| staged.advance(&data, r), |_| None));
    drop(staged);
    assert_eq!((a.counters.full_stripe.load(Ordering::Relaxed), a.counters.rmw.load(Ordering::Relaxed)), (1, 0));
    let mut back = vec![0u8; 16_384];
    a.read_at(&mut back, 16_384).unwrap();
    assert_eq!(back, data);
    assert_eq!(scrub_all(&a), 0);
    // No parity, no read to save: raid0 writes are not gathered.
    let dir0 = tempfile::tempdir().unwrap();
    let r0 = array(dir0.path(), "raid0", 4, 24, "");
    assert_eq!(r0.gather_unit(0, Gather::Write), None);
}

/// A leg that counts the write and read requests it is given, as a
/// remote leg's round trips.
struct CountingLeg {
    inner: crate::device::mem::MemLeg,
    requests: std::sync::atomic::AtomicUsize,
    reads: std::sync::atomic::AtomicUsize,
    status_questions: std::sync::atomic::AtomicUsize,
}

impl BlockDevice for CountingLeg {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_at(buf, offset)
    }
    fn read_scattered(&self, bufs: &mut [&mut [u8]], offset: u64) -> std::io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        crate::device::read_each(&self.inner, bufs, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> std::io::Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.write_at(buf, offset, fua)
    }
    fn write_gathered(&self, bufs: &[&[u8]], offset: u64, fua: bool) -> std::io::Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::device::write_each(&self.inner, bufs, offset, fua)
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
        self.inner.describe()
    }
    fn block_status(&self, offset: u64, len: u64, out: &mut Vec<crate::device::status::StatusExtent>) -> std::io::Result<()> {
        self.status_questions.fetch_add(1, Ordering::Relaxed);
        self.inner.block_status(offset, len, out)
    }
}

#[test]
fn chunks_that_follow_one_another_on_a_leg_without_the_ring_go_as_one_request() {
    // raid1 over two legs the ring cannot take (no file behind them, as a
    // remote leg), 4 KiB chunks: a 64 KiB write is 16 chunks on each leg,
    // which used to be 16 requests per leg, one round trip after another.
    let counting = |name: String| {
        Arc::new(CountingLeg {
            inner: crate::device::mem::MemLeg::new(name, 1 << 20),
            requests: Default::default(),
            reads: Default::default(),
            status_questions: Default::default(),
        })
    };
    let legs: Vec<Arc<CountingLeg>> = (0..2).map(|i| counting(format!("m{i}"))).collect();
    let devices: Vec<(Arc<dyn BlockDevice>, u64)> = legs.iter().map(|l| (l.clone() as Arc<dyn BlockDevice>, 0)).collect();
    let loaded = Arc::new(component::load(&SANDBOX, crate::builtins::find("raid1").expect("built-in")).expect("load"));
    let g = Geometry { chunk_sectors: 8, leg_chunks: vec![256; 2], args: String::new() };
    let a = Array::new("raid1", devices, ProvenLayout::prove(loaded, g).expect("prove"));
    let data: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    a.write_at(&data, 8192, false).unwrap();
    for l in &legs {
        assert_eq!(l.requests.load(Ordering::Relaxed), 1, "one request per leg for a write that is one run on each");
        let mut back = vec![0u8; data.len()];
        l.read_at(&mut back, 8192).unwrap();
        assert_eq!(back, data);
    }
    // Runs are cut where the leg's bytes stop following one another: a
    // raid0 write of two whole stripes over two legs is two runs of two
    // chunks, one per leg.
    let r0: Vec<Arc<CountingLeg>> = (0..2).map(|i| counting(format!("r{i}"))).collect();
    let devices: Vec<(Arc<dyn BlockDevice>, u64)> = r0.iter().map(|l| (l.clone() as Arc<dyn BlockDevice>, 0)).collect();
    let loaded = Arc::new(component::load(&SANDBOX, crate::builtins::find("raid0").expect("built-in")).expect("load"));
    let g = Geometry { chunk_sectors: 8, leg_chunks: vec![256; 2], args: String::new() };
    let b = Array::new("raid0", devices, ProvenLayout::prove(loaded, g).expect("prove"));
    b.write_at(&data[..16_384], 0, false).unwrap();
    assert_eq!(r0.iter().map(|l| l.requests.load(Ordering::Relaxed)).collect::<Vec<_>>(), vec![1, 1]);
    // Reads the same way: the four chunks are two runs, one request a leg.
    let mut back = vec![0u8; 16_384];
    b.read_at(&mut back, 0).unwrap();
    assert_eq!(back, data[..16_384]);
    assert_eq!(r0.iter().map(|l| l.reads.load(Ordering::Relaxed)).collect::<Vec<_>>(), vec![1, 1]);
    // Block status too: 96 KiB of the raid1, whose 24 chunks follow one
    // another on the copy read, is one question to that leg, and says
    // what asking chunk by chunk says: data where written, holes after.
    let mut extents = Vec::new();
    a.block_status(0, 98_304, &mut extents).unwrap();
    let asked: usize = legs.iter().map(|l| l.status_questions.load(Ordering::Relaxed)).sum();
    assert_eq!(asked, 1, "one block status question for a run on one leg");
    let mut chunk_by_chunk = Vec::new();
    for c in 0..24u64 {
        legs[0].inner.block_status(c * 4096, 4096, &mut chunk_by_chunk).unwrap();
    }
    assert_eq!(extents, chunk_by_chunk);
    assert!(extents.iter().any(|e| e.allocation == 0) && extents.iter().any(|e| e.allocation != 0), "{extents:?}");
    // A raid0's chunks take turns between its legs: each leg is still
    // asked once, over the span of its chunks.
    let mut extents = Vec::new();
    b.block_status(0, 65_536, &mut extents).unwrap();
    assert_eq!(r0.iter().map(|l| l.status_questions.load(Ordering::Relaxed)).collect::<Vec<_>>(), vec![1, 1]);
    assert_eq!(extents.iter().map(|e| e.len).sum::<u64>(), 65_536);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Block status asked of a whole range (each leg once, over the span of
    /// its chunks) says what asking chunk by chunk says, covers the range,
    /// and calls nothing a hole that reads as data: over every kind of
    /// layout, with sparse writes and a leg failed or not.
    #[test]
    fn block_status_of_a_range_is_what_its_chunks_say(
        spec in prop::sample::select(vec![("raid0", 3, ""), ("raid5", 4, ""), ("raid6", 5, ""), ("raid10", 4, "n2"), ("raid10", 4, "f2"), ("raid1", 2, "")]),
        writes in prop::collection::vec((any::<u64>(), 1usize..12_000), 0..8),
        fail in any::<bool>(),
        queries in prop::collection::vec((any::<u64>(), 1u64..70_000), 1..8),
    ) {
        let (layout, legs, args) = spec;
        let dir = tempfile::tempdir().unwrap();
        let a = array(dir.path(), layout, legs, 24, args);
        let size = a.size();
        for (at, len) in writes {
            let at = at % size;
            let len = len.min((size - at) as usize);
            a.write(&vec![0xa5u8; len], at, false).map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
        }
        if fail && layout != "raid0" {
            a.fail_leg(1, "test");
        }
        let cb = a.chunk_bytes;
        for (at, len) in queries {
            let at = at % size;
            let len = len.min(size - at);
            let mut whole = Vec::new();
            a.block_status(at, len, &mut whole).map_err(|e| TestCaseError::fail(format!("block status: {e}")))?;
            let mut by_chunk = Vec::new();
            let mut done = 0u64;
            while done < len {
                let n = (cb - (at + done) % cb).min(len - done);
                a.block_status(at + done, n, &mut by_chunk).map_err(|e| TestCaseError::fail(format!("block status: {e}")))?;
                done += n;
            }
            prop_assert_eq!(&whole, &by_chunk, "{} over {} legs, {} bytes at {}", layout, legs, len, at);
            prop_assert_eq!(whole.iter().map(|e| e.len).sum::<u64>(), len);
            let mut back = vec![0u8; len as usize];
            a.read(&mut back, at).map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
            let mut pos = 0usize;
            for e in &whole {
                if e.allocation & crate::device::status::ZERO != 0 {
                    prop_assert!(back[pos..pos + e.len as usize].iter().all(|&b| b == 0), "data reported as zeroes at {}", at + pos as u64);
                }
                pos += e.len as usize;
            }
        }
    }
}
