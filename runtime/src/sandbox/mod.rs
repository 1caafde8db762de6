//! The sandbox: wasmtime configured for untrusted layout components.
//!
//! Components are compiled ahead of time (and cached on disk), must import
//! nothing, run under an epoch deadline, a memory cap and a stack cap, and
//! every failure of a guest becomes a [`SandboxError`]: no guest can crash or
//! hang the host.

pub mod artifact_cache;
pub mod compile;
pub mod component;
pub mod engine;
pub mod instance;
pub mod text;

pub use compile::{CompileLimits, Compiler};
pub use component::{LoadStats, LoadedComponent};
pub use engine::{Sandbox, SandboxConfig};
pub use instance::GuestInstance;

/// Why the guest stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// It ran past its deadline (an infinite loop).
    Timeout,
    /// It asked for more memory than its cap.
    OutOfMemory,
    /// Its stack overflowed (deep recursion).
    StackOverflow,
    /// It hit `unreachable` (a panic in most languages).
    Unreachable,
    /// Any other trap (out-of-bounds access, bad conversion, ...).
    Other,
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrapKind::Timeout => "ran past its deadline",
            TrapKind::OutOfMemory => "exceeded its memory limit",
            TrapKind::StackOverflow => "overflowed its stack",
            TrapKind::Unreachable => "trapped (unreachable: a panic or abort)",
            TrapKind::Other => "trapped",
        })
    }
}

/// A component that could not be loaded, or a guest call that failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the component imports {}: layouts must be pure functions and import nothing", names.join(", "))]
    Imports { names: Vec<String> },
    #[error("the component does not implement wasmraid:layout/algorithm@0.1.0: {0}")]
    Contract(String),
    #[error("the guest {kind} in {call}: {detail}")]
    Trap { call: &'static str, kind: TrapKind, detail: String },
    #[error("the guest refused the configuration: {0}")]
    Refused(String),
    #[error("the guest's answer to {call} changed after re-instantiation: {detail}")]
    Inconsistent { call: &'static str, detail: String },
    #[error("cannot set up the sandbox: {0}")]
    Setup(String),
    #[error("the component is too expensive: {0}")]
    CompileLimit(String),
}
