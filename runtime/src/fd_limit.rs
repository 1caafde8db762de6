//! A serving daemon raises its soft limit of open files to the hard limit,
//! as Go's runtime and many servers do: the soft default (often 1024) is
//! for programs that open a few files, and each NBD client costs one. The
//! NBD server bounds its clients itself (`--nbd-max-connections`), and
//! running out anyway is survived (`accept.rs`), but should be rare.

/// Raise RLIMIT_NOFILE's soft limit to its hard limit; log what it is.
pub fn raise() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!("cannot read the open-files limit: {}", std::io::Error::last_os_error());
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads one rlimit we own; raising the soft limit up
    // to the hard limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!("cannot raise the open-files limit from {} to {}: {}", limit.rlim_cur, limit.rlim_max, std::io::Error::last_os_error());
    } else {
        tracing::debug!("open-files limit raised from {} to {}", limit.rlim_cur, limit.rlim_max);
    }
}
