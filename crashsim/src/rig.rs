//! An array with metadata on logged memory legs, as a workload drives it:
//! every device it ever uses (first legs, added legs, replacements) is a
//! memory leg under the write log, under a fault wrapper.

use crate::faults::FaultLeg;
use crate::history::{BLOCK, History, Request, pattern};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmraid::array::Array;
use wasmraid::array::create::{AssembleOptions, CreateOptions, assemble, create};
use wasmraid::device::BlockDevice;
use wasmraid::device::log_writes::{LoggedLeg, WriteLog};
use wasmraid::device::mem::{Image, MemLeg};
use wasmraid::sandbox::Sandbox;

/// A layout as the simulator runs it.
#[derive(Clone, Copy, Debug)]
pub struct LayoutSpec {
    pub name: &'static str,
    pub legs: usize,
    pub args: &'static str,
}

/// The six layouts of the campaign, each on a handful of small legs.
pub const LAYOUTS: [LayoutSpec; 6] = [
    LayoutSpec { name: "raid1", legs: 2, args: "" },
    LayoutSpec { name: "raid5", legs: 4, args: "" },
    LayoutSpec { name: "raid6", legs: 5, args: "" },
    LayoutSpec { name: "raid10", legs: 4, args: "" },
    LayoutSpec { name: "pyramid", legs: 8, args: "scheme=11s122s2ge" },
    LayoutSpec { name: "draid", legs: 6, args: "p=2,s=1,seed=3" },
];

pub fn layout(name: &str) -> Option<LayoutSpec> {
    LAYOUTS.iter().copied().find(|l| l.name == name)
}

/// Chunk of 8 KiB: two oracle blocks, so writes cover parts of chunks.
pub const CHUNK_SECTORS: u32 = 16;
/// Data chunks per leg.
pub const LEG_CHUNKS: u64 = 24;
/// Data covered by one bitmap region: a few stripes, so a run touches
/// several regions.
pub const BITMAP_CHUNK: u64 = 32 << 10;
/// Metadata area (superblocks, bitmap, component) before the data.
const META_BYTES: u64 = 1 << 20;

pub fn leg_bytes() -> u64 {
    META_BYTES + LEG_CHUNKS * u64::from(CHUNK_SECTORS) * 512
}

/// One device: what it held when the log began, and its stack.
pub struct Dev {
    pub base: Image,
    pub fault: Arc<FaultLeg>,
}

pub struct Rig {
    pub log: Arc<WriteLog>,
    pub devices: Mutex<Vec<Dev>>,
    pub array: Arc<Array>,
    /// The array as a daemon serves it: writes go through it, and a
    /// served reshape swaps what it holds.
    pub table: Arc<wasmraid::table::Table>,
    /// The array's size in oracle blocks.
    pub blocks: u64,
    pub history: History,
    next_id: AtomicU64,
}

/// Options for a rig.
pub struct RigOptions {
    /// Start in sync (zeroed legs) rather than with every region Unwritten.
    pub assume_clean: bool,
    /// This leg behaves as a remote one (its link can go down).
    pub remote: Option<usize>,
}

impl Rig {
    pub fn new(spec: LayoutSpec, sandbox: &Arc<Sandbox>, options: RigOptions) -> anyhow::Result<Rig> {
        let mems: Vec<Arc<MemLeg>> = (0..spec.legs).map(|i| Arc::new(MemLeg::new(format!("dev{i}"), leg_bytes()))).collect();
        let plain: Vec<Arc<dyn BlockDevice>> = mems.iter().map(|m| m.clone() as Arc<dyn BlockDevice>).collect();
        let component = wasmraid::builtins::find(spec.name).ok_or_else(|| anyhow::anyhow!("no built-in layout {}", spec.name))?.to_vec();
        let o = CreateOptions {
            name: "sim".into(),
            component,
            chunk_sectors: CHUNK_SECTORS,
            args: spec.args.into(),
            assume_clean: options.assume_clean,
            force: false,
            bitmap_chunk: Some(BITMAP_CHUNK),
        };
        create(&plain, sandbox, &o)?;
        let log = WriteLog::new();
        let devices: Vec<Dev> = mems
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let logged: Arc<dyn BlockDevice> = Arc::new(LoggedLeg::new(m.clone(), i as u32, log.clone()));
                Dev { base: m.image(), fault: Arc::new(FaultLeg::new(logged, options.remote == Some(i))) }
            })
            .collect();
        let stack: Vec<Arc<dyn BlockDevice>> = devices.iter().map(|d| d.fault.clone() as Arc<dyn BlockDevice>).collect();
        let assembled = assemble(stack, sandbox, &assemble_options(false))?;
        let blocks = assembled.array.size() / BLOCK as u64;
        let table = Arc::new(wasmraid::table::Table::single("sim", assembled.array.clone()));
        Ok(Rig { log, devices: Mutex::new(devices), array: assembled.array, table, blocks, history: History::default(), next_id: AtomicU64::new(1) })
    }

    /// A new empty device under the log (for `leg add` and `replace`).
    pub fn new_device(&self) -> Arc<FaultLeg> {
        let mut devices = self.devices.lock();
        let i = devices.len();
        let mem = Arc::new(MemLeg::new(format!("dev{i}"), leg_bytes()));
        let logged: Arc<dyn BlockDevice> = Arc::new(LoggedLeg::new(mem.clone(), i as u32, self.log.clone()));
        let fault = Arc::new(FaultLeg::new(logged, false));
        devices.push(Dev { base: mem.image(), fault: fault.clone() });
        fault
    }

    pub fn fault(&self, i: usize) -> Arc<FaultLeg> {
        self.devices.lock()[i].fault.clone()
    }

    /// Write blocks `first..first + blocks` with a new write's pattern.
    pub fn write(&self, first: u64, blocks: u64, fua: bool) -> bool {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut data = vec![0u8; blocks as usize * BLOCK];
        for (k, block) in data.chunks_exact_mut(BLOCK).enumerate() {
            pattern(id, first + k as u64, block);
        }
        let op = self.history.issue(Request::Write { first, blocks, id, fua }, self.log.tick());
        let ok = self.table.write_at(&data, first * BLOCK as u64, fua).is_ok();
        if ok {
            self.history.ack(op, self.log.tick());
        }
        ok
    }

    pub fn zero(&self, first: u64, blocks: u64, fua: bool) -> bool {
        let op = self.history.issue(Request::Zero { first, blocks, fua }, self.log.tick());
        let ok = self.table.write_zeroes(first * BLOCK as u64, blocks * BLOCK as u64, fua).is_ok();
        if ok {
            self.history.ack(op, self.log.tick());
        }
        ok
    }

    pub fn flush(&self) -> bool {
        let op = self.history.issue(Request::Flush, self.log.tick());
        let ok = self.table.flush().is_ok();
        if ok {
            self.history.ack(op, self.log.tick());
        }
        ok
    }
}

pub fn assemble_options(force: bool) -> AssembleOptions {
    AssembleOptions { name: None, force, daemon_sleep: Duration::ZERO }
}
