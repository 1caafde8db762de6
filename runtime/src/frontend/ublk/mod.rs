//! The ublk frontend: a device served to the kernel as `/dev/ublkbN`.
//!
//! libublk runs one thread per hardware queue, each with its own io_uring
//! and a single-threaded executor (`queue.rs`), which reads plain reads
//! straight from the legs; other requests go to a pool of worker threads
//! that call the synchronous device (`pool.rs`). The server moves request
//! data itself (`UBLK_F_USER_COPY`, `user_copy.rs`), from buffers of its
//! own (`buffers.rs`). The
//! device is created with `UBLK_F_USER_RECOVERY` and `..._REISSUE`: if the
//! server dies, `/dev/ublkbN` stays, requests queue up in the kernel, and
//! a new server started with `--recover N` takes the device back and gets
//! the requests the dead one had in hand reissued, so users see no error.
//! (The server must really die for that: the binary aborts on panic.)

mod buffers;
pub mod gather;
mod pool;
mod queue;
mod turns;
mod user_copy;

use crate::device::BlockDevice;
use libublk::ctrl::{UblkCtrl, UblkCtrlBuilder};
use libublk::io::UblkDev;
use libublk::{UblkError, UblkFlags, sys};
use std::path::Path;
use std::sync::Arc;

pub use pool::{Request, serve as serve_request};

const CONTROL: &str = "/dev/ublk-control";

/// How the device is created.
#[derive(Debug, Clone)]
pub struct UblkConfig {
    /// The device number N of `/dev/ublkbN`; None lets the kernel choose.
    pub id: Option<u32>,
    pub queues: u16,
    pub depth: u16,
    /// Largest request, in bytes (the I/O buffer of each tag).
    pub max_io_bytes: u32,
    /// Worker threads serving requests for all queues.
    pub workers: usize,
    /// Take over device N left by a server that died.
    pub recover: Option<u32>,
    /// Keep libublk's pinning of each queue thread to the CPUs mapped to its
    /// queue. Pinned, a single submitter (one fio job, one database thread)
    /// shares its CPU with its queue thread; unpinned, the scheduler
    /// spreads them. Measured in the VM (2 vCPUs, TCG, user copy, three A/B
    /// rounds): unpinned, 1 MiB sequential reads +6-17% and 4k random reads
    /// +12-50%, hence unpinned by default.
    pub pin_queues: bool,
}

impl Default for UblkConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        UblkConfig { id: None, queues: cpus.clamp(1, 4) as u16, depth: 64, max_io_bytes: 512 << 10, workers: 32, recover: None, pin_queues: false }
    }
}

/// What the block layer is told about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub size: u64,
    /// Smallest efficient I/O (a chunk for striped arrays).
    pub io_min: u32,
    /// Preferred I/O (a full stripe's data).
    pub io_opt: u32,
    /// Discards are whole multiples of this (the chunk).
    pub discard_granularity: u32,
}

impl Limits {
    /// Limits for a plain device of `size` bytes.
    pub fn plain(size: u64) -> Limits {
        Limits { size, io_min: 4096, io_opt: 4096, discard_granularity: 4096 }
    }

    fn params(&self, max_io_bytes: u32) -> sys::ublk_params {
        // The kernel takes powers of two as shifts; round down so a hint is
        // never larger than the truth.
        let shift = |v: u32| (31 - v.max(512).leading_zeros()) as u8;
        sys::ublk_params {
            types: sys::UBLK_PARAM_TYPE_BASIC | sys::UBLK_PARAM_TYPE_DISCARD,
            basic: sys::ublk_param_basic {
                // A volatile cache, so the kernel sends FLUSH; FUA so a
                // write that must be durable says so instead of a flush.
                attrs: sys::UBLK_ATTR_VOLATILE_CACHE | sys::UBLK_ATTR_FUA,
                logical_bs_shift: 9,
                physical_bs_shift: 12,
                io_min_shift: shift(self.io_min).max(9),
                io_opt_shift: shift(self.io_opt).max(9),
                max_sectors: max_io_bytes >> 9,
                dev_sectors: self.size >> 9,
                ..Default::default()
            },
            discard: sys::ublk_param_discard {
                discard_alignment: 0,
                discard_granularity: self.discard_granularity.max(512),
                max_discard_sectors: u32::MAX >> 9,
                max_write_zeroes_sectors: u32::MAX >> 9,
                max_discard_segments: 1,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// A running device.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: u32,
    pub path: String,
    pub queues: u16,
    pub depth: u16,
    pub recovered: bool,
    /// Plain reads go into the request's pages with no copy (AUTO_BUF_REG).
    pub zero_copy: bool,
    /// Requests served together with others (`gather.rs`), every queue's.
    pub gathered: Arc<gather::Counts>,
}

#[derive(Debug, thiserror::Error)]
pub enum UblkFrontendError {
    #[error("ublk is not available: {CONTROL} is missing; load the kernel module (modprobe ublk_drv), or serve over NBD with --nbd")]
    Unavailable,
    #[error("ublk: {what}: {detail}")]
    Driver { what: String, detail: String },
    #[error("ublk device {id} is {state}: {why}")]
    State { id: u32, state: String, why: &'static str },
    #[error("ublk device {id} holds {device_bytes} bytes but this table holds {table_bytes}; recover it with the same table")]
    SizeMismatch { id: u32, device_bytes: u64, table_bytes: u64 },
    #[error("ublk: {0}")]
    Io(#[from] std::io::Error),
}

fn driver(what: impl Into<String>) -> impl FnOnce(UblkError) -> UblkFrontendError {
    let what = what.into();
    move |e| UblkFrontendError::Driver { what, detail: describe(&e) }
}

/// libublk's errors carry a bare errno; say what it means.
pub fn describe(e: &UblkError) -> String {
    match e {
        UblkError::OtherError(n) | UblkError::UringIOError(n) => std::io::Error::from_raw_os_error(n.abs()).to_string(),
        UblkError::IOError(e) => e.to_string(),
        other => other.to_string(),
    }
}

fn state_name(state: u16) -> String {
    match u32::from(state) {
        sys::UBLK_S_DEV_DEAD => "DEAD".into(),
        sys::UBLK_S_DEV_LIVE => "LIVE".into(),
        sys::UBLK_S_DEV_QUIESCED => "QUIESCED".into(),
        s => format!("in state {s}"),
    }
}

/// Create (or recover) the device and serve `device` through it until the
/// device is stopped. `ready` is called once `/dev/ublkbN` is live.
pub fn serve(
    device: Arc<dyn BlockDevice>,
    limits: Limits,
    config: &UblkConfig,
    ready: impl FnOnce(Started) + Send + Sync + 'static,
) -> Result<(), UblkFrontendError> {
    if !Path::new(CONTROL).exists() {
        return Err(UblkFrontendError::Unavailable);
    }
    let recovering = config.recover.is_some();
    let id = config.recover.or(config.id).map(|n| n as i32).unwrap_or(-1);
    let flags = if recovering { UblkFlags::UBLK_DEV_F_RECOVER_DEV } else { UblkFlags::UBLK_DEV_F_ADD_DEV };
    let ctrl = UblkCtrlBuilder::default()
        .name("wasmraid")
        .id(id)
        .nr_queues(config.queues.max(1))
        .depth(config.depth.max(1))
        .io_buf_bytes(config.max_io_bytes)
        .ctrl_flags(u64::from(sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE | sys::UBLK_F_USER_COPY) | zero_copy_flag())
        .dev_flags(flags)
        .build()
        .map_err(|e| {
            let needs = matches!(e, UblkError::OtherError(n) | UblkError::UringIOError(n) if n.abs() == libc::EINVAL);
            let what = if recovering { format!("cannot open device {id} to recover it") } else { "cannot create the device".into() };
            // The kernel refuses flags it does not know with EINVAL.
            driver(if needs { format!("{what} (it needs user copy and user recovery with reissue: Linux 6.5 or newer)") } else { what })(e)
        })?;
    if let Some(n) = config.recover {
        prepare_recovery(&ctrl, n, limits.size)?;
    }
    let info = ctrl.dev_info();
    let params = limits.params(info.max_io_buf_bytes);
    let pool = pool::Pool::new(device.clone(), config.workers)?;
    let jobs = pool.submit();
    let started = Started {
        id: info.dev_id,
        path: ctrl.get_bdev_path(),
        queues: info.nr_hw_queues,
        depth: info.queue_depth,
        recovered: recovering,
        zero_copy: info.flags & u64::from(sys::UBLK_F_AUTO_BUF_REG) != 0,
        gathered: Arc::default(),
    };
    let gathered = started.gathered.clone();
    let queue_threads = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let threads = queue_threads.clone();
    let unpin_queues = !config.pin_queues;
    let result = ctrl.run_target(
        move |dev: &mut UblkDev| {
            dev.tgt.dev_size = limits.size;
            dev.tgt.params = params;
            Ok(())
        },
        move |qid, dev: &UblkDev| {
            // SAFETY: gettid has no preconditions.
            threads.lock().push(unsafe { libc::gettid() });
            queue::run(qid, dev, device, jobs, gathered.clone())
        },
        move |_ctrl: &UblkCtrl| {
            // libublk pinned every queue thread before the device started;
            // every queue thread recorded itself before it could start.
            if unpin_queues {
                unpin(&queue_threads.lock());
            }
            ready(started)
        },
    );
    pool.join();
    // A clean stop deletes the device (a recovered server does not own it
    // in libublk's eyes, so delete it explicitly either way).
    let _ = ctrl.del_dev();
    result.map(|_| ()).map_err(driver("serving the device"))
}

/// `UBLK_F_AUTO_BUF_REG` when the kernel has it (6.16+) and
/// `WASMRAID_UBLK_ZERO_COPY=0` does not turn it off: plain reads then go
/// from the legs into the request's pages with no copy (`queue.rs`);
/// everything else keeps user copy, which the kernel allows beside it. A
/// recovered device keeps the flags it was made with.
fn zero_copy_flag() -> u64 {
    if std::env::var_os("WASMRAID_UBLK_ZERO_COPY").is_some_and(|v| v == "0") {
        return 0;
    }
    let wanted = u64::from(sys::UBLK_F_AUTO_BUF_REG);
    UblkCtrl::get_features().map_or(0, |features| features & wanted)
}

/// Let the scheduler place `threads` on any CPU this process may use.
fn unpin(threads: &[libc::pid_t]) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) } != 0 {
        tracing::warn!("ublk: cannot read this process's CPU set; queue threads stay pinned: {}", std::io::Error::last_os_error());
        return;
    }
    for &tid in threads {
        // SAFETY: `allowed` is a valid cpu_set_t; a stale tid only fails.
        if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &allowed) } != 0 {
            tracing::warn!(tid, "ublk: cannot unpin a queue thread: {}", std::io::Error::last_os_error());
        }
    }
}

fn prepare_recovery(ctrl: &UblkCtrl, id: u32, table_bytes: u64) -> Result<(), UblkFrontendError> {
    let state = ctrl.dev_info().state;
    if u32::from(state) == sys::UBLK_S_DEV_LIVE {
        return Err(UblkFrontendError::State { id, state: state_name(state), why: "a server still serves it; recover only a device whose server died" });
    }
    let mut params = sys::ublk_params::default();
    ctrl.get_params(&mut params).map_err(driver(format!("reading the parameters of device {id}")))?;
    let device_bytes = params.basic.dev_sectors << 9;
    if device_bytes != table_bytes {
        return Err(UblkFrontendError::SizeMismatch { id, device_bytes, table_bytes });
    }
    ctrl.start_user_recover().map_err(driver(format!("starting the recovery of device {id}")))?;
    Ok(())
}

/// Stop device `id`: the kernel fails nothing in flight, drains the queues,
/// and the serving thread returns.
pub fn stop(id: u32) -> Result<(), UblkFrontendError> {
    on_control_thread(id, "stopping", move |ctrl| ctrl.kill_dev().map(|_| ()).map_err(driver(format!("cannot stop device {id}"))))
}

/// Resize live device `id` to `bytes` (a reshape grew the array), on
/// kernels whose driver has UBLK_F_UPDATE_SIZE (6.16+). False: this
/// kernel cannot; the size applies at the device's next start.
pub fn resize(id: u32, bytes: u64) -> Result<bool, UblkFrontendError> {
    let wanted = u64::from(sys::UBLK_F_UPDATE_SIZE);
    if UblkCtrl::get_features().map_or(0, |features| features & wanted) == 0 {
        return Ok(false);
    }
    // The driver takes sectors' worth of bytes; an array's size is whole
    // sectors already.
    let bytes = bytes / 512 * 512;
    on_control_thread(id, "resizing", move |ctrl| ctrl.update_size(bytes).map(|_| ()).map_err(driver(format!("cannot resize device {id}"))))?;
    Ok(true)
}

/// Delete device `id` (one whose server is gone; a live one is stopped
/// first by the kernel).
pub fn delete(id: u32) -> Result<(), UblkFrontendError> {
    if !Path::new(CONTROL).exists() {
        return Err(UblkFrontendError::Unavailable);
    }
    on_control_thread(id, "deleting", move |ctrl| ctrl.del_dev().map(|_| ()).map_err(driver(format!("cannot delete device {id}"))))
}

/// Run `act` on device `id` from a thread of its own: libublk's control
/// ring belongs to the thread that made it, so the caller's must not be used.
fn on_control_thread(id: u32, doing: &str, act: impl FnOnce(&UblkCtrl) -> Result<(), UblkFrontendError> + Send + 'static) -> Result<(), UblkFrontendError> {
    std::thread::spawn(move || act(&UblkCtrl::new_simple(id as i32).map_err(driver(format!("cannot open device {id}")))?))
        .join()
        .map_err(|_| UblkFrontendError::Driver { what: format!("{doing} device {id}"), detail: "the control thread died".into() })?
}

/// Every ublk device with its state.
pub fn list() -> Vec<(u32, String)> {
    let mut ids: Vec<u32> = std::fs::read_dir("/sys/class/ublk-char")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("ublkc")).and_then(|n| n.parse().ok()))
        .collect();
    ids.sort_unstable();
    ids.into_iter().map(|id| (id, state(id).unwrap_or_else(|| "unknown".into()))).collect()
}

/// The kernel's view of device `id`, for status.
pub fn state(id: u32) -> Option<String> {
    std::thread::spawn(move || {
        let ctrl = UblkCtrl::new_simple(id as i32).ok()?;
        ctrl.read_dev_info().ok()?;
        Some(state_name(ctrl.dev_info().state))
    })
    .join()
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_hints_down_to_powers_of_two() {
        let l = Limits { size: 3 << 30, io_min: 65536, io_opt: 3 * 65536, discard_granularity: 65536 };
        let p = l.params(512 << 10);
        assert_eq!(p.basic.io_min_shift, 16);
        assert_eq!(p.basic.io_opt_shift, 17);
        assert_eq!(p.basic.max_sectors, 1024);
        assert_eq!(p.basic.dev_sectors, (3 << 30) >> 9);
        assert_eq!(p.discard.discard_granularity, 65536);
        assert_ne!(p.basic.attrs & sys::UBLK_ATTR_FUA, 0);
    }

    #[test]
    fn a_missing_driver_is_one_clear_sentence() {
        if Path::new(CONTROL).exists() {
            return; // this host has ublk; the VM suite covers the real device
        }
        let dir = tempfile::tempdir().unwrap();
        let dev = crate::device::file::FileLeg::create(&dir.path().join("leg"), 1 << 20).unwrap();
        let e = serve(Arc::new(dev), Limits::plain(1 << 20), &UblkConfig::default(), |_| {}).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("modprobe ublk_drv") && text.contains("--nbd"), "{text}");
    }
}
