//! Online reshape: data moved from one proven layout to another on the
//! same legs (and any added), crash-safe at every step.
//!
//! `plan.rs` decides how far the new layout's data sits before the old's
//! on every leg and how much may move at once so that a crash never finds
//! the old layout's unmoved data overwritten; `device.rs` serves the array
//! from both layouts while it moves the data window by window, each made
//! durable before its position is recorded; `offline.rs` runs a whole
//! reshape of a stopped array, checkpointed in its superblocks.

pub mod device;
pub mod offline;
pub mod online;
pub mod plan;

#[cfg(test)]
mod tests;

pub use device::{ReshapeError, Reshaping};
pub use plan::{PlanError, Windows, minimal_shift};
