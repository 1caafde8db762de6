//! wasmraid: block devices laid out by untrusted, proven WebAssembly
//! components.
//!
//! The flow from component bytes to a cached, proven layout:
//! [`sandbox::component::load`] (validate, AOT compile or take the cached
//! artifact, refuse imports) -> [`layout::proven::ProvenLayout::prove`]
//! (configure, prove every rule, precompute one period or set up the
//! fingerprinted block cache) -> [`layout::proven::ProvenLayout::locate`] on
//! the data path.

pub mod accept;
pub mod array;
pub mod builtins;
pub mod config;
pub mod control;
pub mod device;
pub mod fd_limit;
pub mod frontend;
pub mod latency;
pub mod layout;
pub mod meta;
pub mod metrics;
pub mod parity;
pub mod reshape;
pub mod sandbox;
pub mod serve;
pub mod table;
pub mod tls;
pub mod units;
