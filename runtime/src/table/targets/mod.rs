//! Table targets, one file each (device-mapper's ctr/map split): argument
//! checking at parse time, construction at bind time.

pub mod error;
pub mod linear;
pub mod striped;
pub mod wasm;
pub mod zero;

use super::bind::BindContext;
use super::parse::{Field, Line, TableError};
use crate::device::BlockDevice;
use std::sync::Arc;

pub const NAMES: &[&str] = &["linear", "striped", "error", "zero", "wasm"];

/// Check a target's arguments without opening anything.
pub fn check_args(line: usize, target: &str, args: &[Field]) -> Result<(), TableError> {
    match target {
        "linear" => linear::check(line, args),
        "striped" => striped::check(line, args).map(|_| ()),
        "error" | "zero" => no_args(line, target, args),
        "wasm" => wasm::check(line, args).map(|_| ()),
        other => Err(TableError::at(line, 3, "<target>", format!("unknown target '{other}' (targets: {})", NAMES.join(", ")))),
    }
}

/// Build the device for one line.
pub fn build(line: &Line, ctx: &mut BindContext) -> Result<Arc<dyn BlockDevice>, TableError> {
    match line.target.as_str() {
        "linear" => linear::build(line, ctx),
        "striped" => striped::build(line, ctx),
        "error" => Ok(Arc::new(error::ErrorTarget { len: line.length * 512 })),
        "zero" => Ok(Arc::new(zero::ZeroTarget { len: line.length * 512 })),
        "wasm" => wasm::build(line, ctx),
        other => Err(TableError::at(line.number, 3, "<target>", format!("unknown target '{other}'"))),
    }
}

fn no_args(line: usize, target: &str, args: &[Field]) -> Result<(), TableError> {
    match args.first() {
        Some(f) => Err(TableError::at(line, f.index, "<args>", format!("the {target} target takes no arguments"))),
        None => Ok(()),
    }
}

/// `<dev> <offset>` pairs, as `linear`, `striped` and `wasm` take them.
pub(crate) fn dev_offset_pairs(line: usize, fields: &[Field], count: usize, after: &Field) -> Result<Vec<(Field, u64)>, TableError> {
    if fields.len() < 2 * count {
        let index = fields.last().unwrap_or(after).index + 1;
        return Err(TableError::at(line, index, "<dev> <offset>", format!("expected {count} <dev> <offset> pairs, got {} field(s)", fields.len())));
    }
    fields[..2 * count].chunks(2).map(|pair| Ok((pair[0].clone(), super::parse::number(line, &pair[1], "<offset>")?))).collect()
}
