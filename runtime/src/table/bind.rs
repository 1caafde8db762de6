//! Binding a parsed table to devices: open legs (shared between lines),
//! load and prove components, build each target.

use super::parse::{Field, TableError};
use crate::array::Array;
use crate::device::BlockDevice;
use crate::device::file::OpenFlags;
use crate::sandbox::Sandbox;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct BindContext {
    pub sandbox: Arc<Sandbox>,
    pub flags: OpenFlags,
    /// The device's name; arrays are named after it.
    pub name: String,
    /// Lines holding a `wasm` target (to name arrays).
    pub(crate) wasm_lines: Vec<usize>,
    legs: HashMap<PathBuf, Arc<dyn BlockDevice>>,
    pub arrays: Vec<Arc<Array>>,
}

impl BindContext {
    pub fn new(name: impl Into<String>, sandbox: Arc<Sandbox>, flags: OpenFlags) -> Self {
        BindContext { sandbox, flags, name: name.into(), wasm_lines: Vec::new(), legs: HashMap::new(), arrays: Vec::new() }
    }

    /// Open the leg a field names (once per path).
    pub fn open_leg(&mut self, line: usize, field: &Field) -> Result<Arc<dyn BlockDevice>, TableError> {
        let path = PathBuf::from(&field.text);
        let key =
            if crate::device::nbd::NbdUri::looks_like(&field.text) { path.clone() } else { std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()) };
        if let Some(leg) = self.legs.get(&key) {
            return Ok(leg.clone());
        }
        let leg = crate::device::open_leg(&field.text, self.flags).map_err(|e| TableError::at(line, field.index, "<dev>", e.to_string()))?;
        self.legs.insert(key, leg.clone());
        Ok(leg)
    }

    /// The device name for the only array of a table, `name:line` when a
    /// table holds several.
    pub fn array_name(&self, line: usize) -> String {
        if self.wasm_lines.len() <= 1 { self.name.clone() } else { format!("{}:{line}", self.name) }
    }
}
