//! Hot reload: swap in a new component whose layout is proven identical.

use super::Array;
use crate::layout::compare::{self, Difference};
use crate::layout::proven::ProvenLayout;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a successful reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub old_hash: String,
    pub new_hash: String,
    pub stripes_compared: u64,
    #[serde(rename = "compare_time_ms", serialize_with = "crate::units::as_millis")]
    pub compare_time: Duration,
}

impl Array {
    /// Replace the running layout with `new` if they place every chunk
    /// alike; requests in flight finish on the old one (they are the same).
    pub fn reload(&self, new: ProvenLayout) -> Result<ReloadReport, Difference> {
        let old = self.layout.load_full();
        let started = Instant::now();
        let stripes_compared = compare::identical(&old, &new)?;
        let report =
            ReloadReport { old_hash: old.component_hash.clone(), new_hash: new.component_hash.clone(), stripes_compared, compare_time: started.elapsed() };
        self.layout.store(Arc::new(new));
        tracing::info!(array = %self.name, old = %report.old_hash, new = %report.new_hash, "layout reloaded");
        Ok(report)
    }
}
