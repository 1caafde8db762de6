//! Frontends: how a block device reaches clients: NBD (network, any
//! client) and ublk (`/dev/ublkbN`, the local kernel).

pub mod nbd;
pub mod ublk;
