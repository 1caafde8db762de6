//! `wasm <component|built-in> <chunk_sectors> <#legs> <dev> <offset> ...
//! [-- <algorithm args>]`: an array laid out by a proven component.

use super::super::bind::BindContext;
use super::super::parse::{Field, Line, TableError, number};
use crate::array::Array;
use crate::device::BlockDevice;
use crate::layout::Geometry;
use crate::layout::proven::ProvenLayout;
use std::sync::Arc;

/// What a `wasm` line says.
pub struct WasmArgs {
    pub component: Field,
    pub chunk_sectors: u32,
    pub legs: Vec<(Field, u64)>,
    pub args: String,
}

pub fn check(line: usize, args: &[Field]) -> Result<WasmArgs, TableError> {
    let [component, chunk, count, rest @ ..] = args else {
        return Err(TableError::at(line, 4, "<component>", "wasm takes <component> <chunk_sectors> <#legs> <dev> <offset>... [-- <args>]"));
    };
    let chunk_sectors = number(line, chunk, "<chunk_sectors>")?;
    if chunk_sectors == 0 || chunk_sectors > u64::from(u32::MAX) {
        return Err(TableError::at(line, chunk.index, "<chunk_sectors>", format!("chunk of {chunk_sectors} sectors")));
    }
    let n = number(line, count, "<#legs>")?;
    if n == 0 || n > 4096 {
        return Err(TableError::at(line, count.index, "<#legs>", format!("{n} legs (1 to 4096)")));
    }
    let legs = super::dev_offset_pairs(line, rest, n as usize, count)?;
    let tail = &rest[legs.len() * 2..];
    let args = match tail.split_first() {
        None => String::new(),
        Some((sep, words)) if sep.text == "--" => words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" "),
        Some((other, _)) => {
            return Err(TableError::at(
                line,
                other.index,
                "--",
                format!("unexpected '{}' after {n} <dev> <offset> pairs (algorithm arguments follow '--')", other.text),
            ));
        }
    };
    Ok(WasmArgs { component: component.clone(), chunk_sectors: chunk_sectors as u32, legs, args })
}

pub fn build(line: &Line, ctx: &mut BindContext) -> Result<Arc<dyn BlockDevice>, TableError> {
    let spec = check(line.number, &line.args)?;
    let chunk_bytes = u64::from(spec.chunk_sectors) * 512;
    let mut legs = Vec::with_capacity(spec.legs.len());
    let mut leg_chunks = Vec::with_capacity(spec.legs.len());
    for (dev, offset) in &spec.legs {
        let device = ctx.open_leg(line.number, dev)?;
        let start = offset * 512;
        if start >= device.size() {
            return Err(TableError::at(
                line.number,
                dev.index + 1,
                "<offset>",
                format!("sector {offset} is beyond {} ({} sectors)", dev.text, device.size() / 512),
            ));
        }
        leg_chunks.push((device.size() - start) / chunk_bytes);
        legs.push((device, start));
    }
    let (origin, bytes) =
        crate::builtins::resolve(&spec.component.text).map_err(|e| TableError::at(line.number, spec.component.index, "<component>", e.to_string()))?;
    let loaded = crate::sandbox::component::load(&ctx.sandbox, &bytes)
        .map_err(|e| TableError::at(line.number, spec.component.index, "<component>", format!("{origin}: {e}")))?;
    let geometry = Geometry { chunk_sectors: spec.chunk_sectors, leg_chunks, args: spec.args.clone() };
    let layout = ProvenLayout::prove(Arc::new(loaded), geometry)
        .map_err(|e| TableError::at(line.number, spec.component.index, "<component>", format!("{origin}: {e}")))?;
    let capacity = layout.capacity_bytes();
    if line.length * 512 > capacity {
        return Err(TableError::at(
            line.number,
            2,
            "<length>",
            format!("{} sectors exceed the {} array's {} sectors", line.length, layout.name, capacity / 512),
        ));
    }
    let array = Arc::new(Array::new(ctx.array_name(line.number), legs, layout));
    ctx.arrays.push(array.clone());
    Ok(array)
}
