//! How legs do I/O, decided by measurement: positioned reads on a pool of
//! threads (what `FileLeg` does, called from the frontends' worker threads)
//! against one thread driving io_uring at the same queue depth. 4 KiB
//! random reads, on tmpfs and with O_DIRECT on the machine's disk.

mod harness;

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::time::Instant;

const DEPTH: usize = 32;
const OPS: u64 = 200_000;

fn thread_pool(file: &std::fs::File, size: u64, threads: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut buf = AlignedBuf::new(4096);
                for i in 0..OPS / threads as u64 {
                    let block = harness::walk(i * threads as u64 + t as u64, size / 4096);
                    file.read_exact_at(buf.as_mut(), block * 4096).expect("pread");
                }
            });
        }
    });
    OPS as f64 / started.elapsed().as_secs_f64()
}

fn uring(file: &std::fs::File, size: u64) -> f64 {
    let mut ring = io_uring::IoUring::new(DEPTH as u32 * 2).expect("io_uring");
    let mut bufs: Vec<AlignedBuf> = (0..DEPTH).map(|_| AlignedBuf::new(4096)).collect();
    let fd = io_uring::types::Fd(file.as_raw_fd());
    let started = Instant::now();
    let (mut issued, mut done) = (0u64, 0u64);
    let submit = |ring: &mut io_uring::IoUring, slot: usize, i: u64, bufs: &mut Vec<AlignedBuf>| {
        let block = harness::walk(i, size / 4096);
        let entry = io_uring::opcode::Read::new(fd, bufs[slot].as_mut().as_mut_ptr(), 4096).offset(block * 4096).build().user_data(slot as u64);
        // SAFETY: the buffer lives in `bufs` until its completion is reaped.
        unsafe { ring.submission().push(&entry).expect("queue full") };
    };
    for slot in 0..DEPTH {
        submit(&mut ring, slot, issued, &mut bufs);
        issued += 1;
    }
    while done < OPS {
        ring.submit_and_wait(1).expect("submit");
        let completed: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (slot, result) in completed {
            assert_eq!(result, 4096, "read failed: {result}");
            done += 1;
            if issued < OPS {
                submit(&mut ring, slot as usize, issued, &mut bufs);
                issued += 1;
            }
        }
    }
    OPS as f64 / started.elapsed().as_secs_f64()
}

struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + 4096];
        let start = storage.as_ptr().align_offset(4096);
        AlignedBuf { storage, start, len }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

fn main() {
    let size: u64 = 512 << 20;
    let shm = tempfile::Builder::new().prefix("wasmraid-legio").tempdir_in("/dev/shm").expect("tmpfs");
    let disk = tempfile::Builder::new()
        .prefix("wasmraid-legio")
        .tempdir_in(std::env::var("WASMRAID_BENCH_DISK").unwrap_or_else(|_| "/var/tmp".into()))
        .expect("disk dir");
    println!("== 4 KiB random reads, {OPS} per run, queue depth {DEPTH}");
    for (what, dir, direct) in [("tmpfs (page cache)", shm.path(), false), ("disk, O_DIRECT", disk.path(), true)] {
        let path = dir.join("leg");
        peers_fill(&path, size);
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let file = opts.open(&path).expect("open");
        let pool4 = thread_pool(&file, size, 4);
        let pool32 = thread_pool(&file, size, DEPTH);
        let ring = uring(&file, size);
        println!("{what}");
        harness::row("  io_uring, one thread, depth 32", ring, "IOPS", None);
        harness::row("  pread on 4 threads", pool4, "IOPS", Some((pool4 / ring, "of io_uring")));
        harness::row("  pread on 32 threads", pool32, "IOPS", Some((pool32 / ring, "of io_uring")));
    }
}

fn peers_fill(path: &std::path::Path, size: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create");
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..size >> 20 {
        f.write_all(&block).expect("fill");
    }
    f.sync_all().expect("sync");
}
