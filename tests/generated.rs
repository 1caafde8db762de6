//! Hostile components too big or too strange to write in a guest language:
//! built byte by byte with wasm-encoder. They need not implement the layout
//! contract, because what they attack (the compiler, the validator, the
//! size limit) runs before it is checked.

use wasm_encoder::{
    CodeSection, Component, CustomSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, Module, ModuleSection, TypeSection, ValType,
};

fn component_of(module: &Module) -> Vec<u8> {
    let mut c = Component::new();
    c.section(&ModuleSection(module));
    c.finish()
}

/// A component whose core module has `functions` functions, each with
/// `locals` i64 locals kept live across a chain of `branches` if/else
/// blocks: cheap to write, expensive for a register allocator.
pub fn compile_bomb(functions: u32, locals: u32, branches: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64], [ValType::I64]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..functions {
        funcs.function(0);
        let mut f = Function::new([(locals, ValType::I64)]);
        let local = |i: u32| 1 + (i % locals);
        for i in 0..branches {
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::I64Const(i64::from(i)));
            f.instruction(&Instruction::I64Eq);
            f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
            f.instruction(&Instruction::LocalGet(local(i.wrapping_mul(7))));
            f.instruction(&Instruction::LocalGet(local(i.wrapping_mul(13))));
            f.instruction(&Instruction::I64Add);
            f.instruction(&Instruction::LocalSet(local(i.wrapping_mul(31))));
            f.instruction(&Instruction::Else);
            f.instruction(&Instruction::LocalGet(local(i.wrapping_mul(17))));
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::I64Xor);
            f.instruction(&Instruction::LocalSet(local(i.wrapping_mul(19))));
            f.instruction(&Instruction::End);
        }
        // Keep every local live to the end.
        f.instruction(&Instruction::LocalGet(0));
        for i in 0..locals {
            f.instruction(&Instruction::LocalGet(1 + i));
            f.instruction(&Instruction::I64Add);
        }
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut m = Module::new();
    m.section(&types).section(&funcs).section(&code);
    component_of(&m)
}

/// A component whose core module declares `memories` memories of `pages`
/// 64 KiB pages each (multi-memory).
pub fn many_memories(memories: u32, pages: u64) -> Vec<u8> {
    let mut mem = MemorySection::new();
    for _ in 0..memories {
        mem.memory(MemoryType { minimum: pages, maximum: None, memory64: false, shared: false, page_size_log2: None });
    }
    let mut m = Module::new();
    m.section(&mem);
    component_of(&m)
}

/// A component padded with a custom section to `bytes` bytes at least.
pub fn padded(bytes: usize) -> Vec<u8> {
    let mut c = Component::new();
    let filler = vec![0x5au8; bytes];
    c.section(&CustomSection { name: "padding".into(), data: filler.into() });
    c.finish()
}
