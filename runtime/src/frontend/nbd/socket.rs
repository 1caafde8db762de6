//! A worker's own I/O on a plain client socket (TCP or Unix): non-blocking
//! system calls, and waits in poll(2). Waiting on the runtime's reactor
//! instead costs a round trip through its thread (its epoll, then a futex
//! to wake the worker) every time the socket fills or drains, which a
//! 1 MiB request or reply does several times: with the reactor, 1 MiB
//! writes ran at 0.86x nbdkit's (whose threads block in the kernel).
//!
//! The runtime keeps its registration for the connection's idle task. What
//! the workers read and write here never clears the runtime's readiness, so
//! it may say "ready" when the socket is not; the idle task's first read
//! then finds nothing, which clears it, and it waits again: stale readiness
//! costs one read, never a missed wake-up.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Read what the socket holds into `buf`, without waiting: the bytes read,
/// 0 at end of stream, `WouldBlock` when nothing is there.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; `fd` is the open
    // socket of the connection, which outlives the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Write what the socket takes of `bufs`, without waiting (and without
/// SIGPIPE when the client is gone: an error instead).
pub fn send(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs`, valid for reads for the call; `fd` is
    // the connection's open socket.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Wait until the socket is readable (`write` false) or writable, at most
/// `limit`: false when the time ran out. A hang-up or error counts as
/// ready (the next call on the socket says what happened).
pub fn wait(fd: RawFd, write: bool, limit: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd, events: if write { libc::POLLOUT } else { libc::POLLIN }, revents: 0 };
        // Rounded up: a wait of 0.5 ms must not become a busy loop.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd for the length given.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn recv_send_and_wait_on_a_socket_pair() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv(a.as_raw_fd(), &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(!wait(a.as_raw_fd(), false, Duration::from_millis(5)).unwrap(), "nothing to read yet");
        assert!(wait(b.as_raw_fd(), true, Duration::from_millis(5)).unwrap(), "room to write");
        assert_eq!(send(b.as_raw_fd(), &[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).unwrap(), 4);
        assert!(wait(a.as_raw_fd(), false, Duration::from_secs(1)).unwrap());
        assert_eq!(recv(a.as_raw_fd(), &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"abcd");
        drop(a);
        // The peer gone: an error, not SIGPIPE.
        assert!(send(b.as_raw_fd(), &[IoSlice::new(b"x")]).is_err());
    }
}
