//! Frontends: how a block device reaches clients (NBD today; ublk next).

pub mod nbd;
