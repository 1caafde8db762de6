//! Binding a parsed table to devices: open legs (shared between lines),
//! load and prove components, build each target.

use super::parse::{Field, TableError};
use crate::array::Array;
use crate::device::BlockDevice;
use crate::device::file::OpenFlags;
use crate::sandbox::Sandbox;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// How many `table:` legs deep this table is.
    depth: usize,
}

/// Tables inside tables (`table:PATH` legs) nest at most this deep: deeper
/// is a table that includes itself.
const MAX_DEPTH: usize = 4;

impl BindContext {
    pub fn new(name: impl Into<String>, sandbox: Arc<Sandbox>, flags: OpenFlags) -> Self {
        BindContext { sandbox, flags, name: name.into(), wasm_lines: Vec::new(), legs: HashMap::new(), arrays: Vec::new(), depth: 0 }
    }

    /// Open the leg a field names (once per path).
    pub fn open_leg(&mut self, line: usize, field: &Field) -> Result<Arc<dyn BlockDevice>, TableError> {
        let path = PathBuf::from(&field.text);
        let key =
            if crate::device::nbd::NbdUri::looks_like(&field.text) { path.clone() } else { std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()) };
        if let Some(leg) = self.legs.get(&key) {
            return Ok(leg.clone());
        }
        let leg = match field.text.strip_prefix("table:") {
            Some(inner) => self.bind_nested(line, field, Path::new(inner))?,
            None => crate::device::open_leg(&field.text, self.flags).map_err(|e| TableError::at(line, field.index, "<dev>", e.to_string()))?,
        };
        self.legs.insert(key, leg.clone());
        Ok(leg)
    }

    /// A leg that is a table of its own (`table:PATH`): a mirror of two
    /// stripes, an array over arrays. Its arrays are named under this one.
    fn bind_nested(&self, line: usize, field: &Field, path: &Path) -> Result<Arc<dyn BlockDevice>, TableError> {
        let fail = |m: String| TableError::at(line, field.index, "<dev>", m);
        if self.depth + 1 > MAX_DEPTH {
            return Err(fail(format!("tables nest deeper than {MAX_DEPTH} levels at {} (a table that includes itself?)", path.display())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read table {}: {e}", path.display())))?;
        let spec = super::parse::parse(&text).map_err(|e| fail(format!("table {}: {e}", path.display())))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("table");
        let mut ctx = BindContext::new(format!("{}/{stem}", self.name), self.sandbox.clone(), self.flags);
        ctx.depth = self.depth + 1;
        let table = super::Table::bind(&spec, ctx).map_err(|e| fail(format!("table {}: {e}", path.display())))?;
        Ok(Arc::new(table))
    }

    /// The device name for the only array of a table, `name:line` when a
    /// table holds several.
    pub fn array_name(&self, line: usize) -> String {
        if self.wasm_lines.len() <= 1 { self.name.clone() } else { format!("{}:{line}", self.name) }
    }
}
