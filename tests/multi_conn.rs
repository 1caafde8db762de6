//! NBD multi-conn is advertised (`NBD_FLAG_CAN_MULTI_CONN`), so it must be
//! true: a FLUSH on one connection makes every write completed on every
//! other connection durable. Four clients write, a fifth flushes, and the
//! legs are then cut to what a power loss at that instant leaves (the
//! write log's model: only what a completed flush covered; nothing else
//! survives). Every block the four wrote must read back from that.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use wasmraid::array::create::{AssembleOptions, CreateOptions, assemble, create};
use wasmraid::device::BlockDevice;
use wasmraid::device::log_writes::{LoggedLeg, Persist, WriteLog, crash_image};
use wasmraid::device::mem::{Image, MemLeg};
use wasmraid::device::nbd::{NbdUri, handshake};
use wasmraid::frontend::nbd::{Exports, Listen, NbdLimits, NbdServer};
use wasmraid_tests::sandbox;

const LEGS: usize = 4;
const LEG_BYTES: u64 = 16 << 20;
const WRITERS: u64 = 4;
const BLOCKS_EACH: u64 = 8;
const BLOCK: u64 = 64 << 10;

fn block(writer: u64, i: u64) -> Vec<u8> {
    (0..BLOCK).map(|b| (writer * 131 + i * 17 + b / 7) as u8 | 1).collect()
}

/// One request on a connection, waiting for its simple reply: the error.
fn call(s: &mut handshake::Stream, command: u16, cookie: u64, offset: u64, data: &[u8], len: u32) -> u32 {
    let mut h = Vec::with_capacity(28 + data.len());
    h.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&command.to_be_bytes());
    h.extend_from_slice(&cookie.to_be_bytes());
    h.extend_from_slice(&offset.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(data);
    s.write_all(&h).expect("send");
    let mut reply = [0u8; 16];
    s.read_exact(&mut reply).expect("reply");
    assert_eq!(u64::from_be_bytes(reply[8..16].try_into().unwrap()), cookie);
    u32::from_be_bytes(reply[4..8].try_into().unwrap())
}

#[test]
fn a_flush_on_one_connection_makes_every_connections_writes_durable() {
    let log = WriteLog::new();
    let legs: Vec<Arc<dyn BlockDevice>> =
        (0..LEGS).map(|i| Arc::new(LoggedLeg::new(Arc::new(MemLeg::new(format!("m{i}"), LEG_BYTES)), i as u32, log.clone())) as Arc<dyn BlockDevice>).collect();
    let options = CreateOptions {
        name: "mc".into(),
        component: wasmraid::builtins::find("raid5").expect("raid5").to_vec(),
        chunk_sectors: 128,
        args: String::new(),
        assume_clean: true,
        force: false,
        bitmap_chunk: None,
    };
    create(&legs, &sandbox(), &options).expect("create");
    let assemble_options = AssembleOptions { name: None, force: false, daemon_sleep: Duration::from_millis(50) };
    let array = assemble(legs.clone(), &sandbox(), &assemble_options).expect("assemble").array;

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nbd.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let exports = Exports::new(vec![("mc".into(), array.clone() as Arc<dyn BlockDevice>)]);
    let _server = runtime.block_on(async {
        let mut server = NbdServer::new(exports, NbdLimits::default(), None).expect("server");
        server.listen(&Listen::Unix(socket.clone())).await.expect("listen");
        server
    });
    let uri = NbdUri::parse(&format!("nbd+unix:///mc?socket={}", socket.display())).expect("uri");
    let connect = || {
        let (stream, export, _) = handshake::connect_asking(&uri, Duration::from_secs(5), handshake::Ask::SimpleOnly).expect("connect");
        assert_ne!(export.flags & (1 << 8), 0, "multi-conn is advertised");
        stream
    };
    // Four connections write their blocks, each waiting for its replies.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut s = connect();
            std::thread::spawn(move || {
                for i in 0..BLOCKS_EACH {
                    let offset = (w * BLOCKS_EACH + i) * BLOCK;
                    assert_eq!(call(&mut s, 1, i, offset, &block(w, i), BLOCK as u32), 0, "write");
                }
                s
            })
        })
        .collect();
    let writers: Vec<_> = writers.into_iter().map(|t| t.join().expect("writer")).collect();
    // A fifth connection flushes; the crash comes right after its reply.
    let mut flusher = connect();
    assert_eq!(call(&mut flusher, 3, 99, 0, &[], 0), 0, "flush");
    // A clock value after everything the flush covered completed.
    let crash_at = log.tick() + 1;
    drop(writers);

    let entries = log.entries();
    let images: Vec<Arc<dyn BlockDevice>> = (0..LEGS)
        .map(|i| {
            let (image, _) = crash_image(&Image::new(LEG_BYTES), &entries, i as u32, crash_at, Persist::Nothing);
            Arc::new(MemLeg::from_image(format!("m{i}"), image)) as Arc<dyn BlockDevice>
        })
        .collect();
    let after = assemble(images, &sandbox(), &assemble_options).expect("assemble after the crash").array;
    let mut lost = Vec::new();
    for w in 0..WRITERS {
        for i in 0..BLOCKS_EACH {
            let mut got = vec![0u8; BLOCK as usize];
            after.read(&mut got, (w * BLOCKS_EACH + i) * BLOCK).expect("read");
            if got != block(w, i) {
                lost.push((w, i, got.iter().filter(|&&b| b == 0).count()));
            }
        }
    }
    if !lost.is_empty() {
        for e in entries.iter().filter(|e| !matches!(e.op, wasmraid::device::log_writes::Op::Write { .. }) || e.completed.is_none_or(|c| c + 50 > crash_at)) {
            eprintln!("{e:?}");
        }
    }
    assert!(lost.is_empty(), "acknowledged before another connection's FLUSH, and lost (writer, block, zero bytes): {lost:?}; crash at {crash_at}");
}
