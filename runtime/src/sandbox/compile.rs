//! Compiling untrusted components within bounds: a size limit, a deadline
//! and a memory cap.
//!
//! Cranelift's time and memory grow with a function's size and shape in
//! ways a hostile component can blow up (a 267 KB component with one huge
//! function took 102 s and 4.5 GB; a 24.8 MB one took half an hour), and a
//! thread cannot be stopped. So the daemon and the command line compile in
//! a child process (`wasmraid __compile-component`) under `RLIMIT_AS`,
//! killed at the deadline: a compile, even a `reload`'s inside a serving
//! daemon, can be refused but never harm the process that asked for it.
//! The library's default compiles in process (tests, embedders that bound
//! their own process).

use super::{Sandbox, SandboxError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds on compiling one component.
#[derive(Clone, Debug)]
pub struct CompileLimits {
    /// Components larger than this are refused before anything else.
    pub max_component_bytes: usize,
    /// A compile running longer than this is stopped (child compiler only).
    pub timeout: Duration,
    /// Address space of the compiling child (child compiler only).
    pub memory_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits { max_component_bytes: 64 << 20, timeout: Duration::from_secs(15), memory_bytes: 2 << 30 }
    }
}

/// Where components are compiled.
#[derive(Clone, Debug, Default)]
pub enum Compiler {
    /// In this process (no deadline or memory cap beyond the size limit).
    #[default]
    InProcess,
    /// In a child: this program run as `PROGRAM __compile-component`.
    Child(PathBuf),
}

/// The compiler child's nice value.
const CHILD_NICE: libc::c_int = 10;

/// The subcommand the child compiler runs.
pub const CHILD_COMMAND: &str = "__compile-component";

/// Compile `bytes` for `sandbox`'s engine: the serialized artifact.
pub(crate) fn compile(sandbox: &Sandbox, bytes: &[u8]) -> Result<Vec<u8>, SandboxError> {
    match &sandbox.config.compiler {
        Compiler::InProcess => sandbox.engine.precompile_component(bytes).map_err(|e| SandboxError::Invalid(format!("{e:#}"))),
        Compiler::Child(program) => in_child(program, sandbox, bytes),
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("compiler child: {what}: {e}"))
}

fn in_child(program: &Path, sandbox: &Sandbox, bytes: &[u8]) -> Result<Vec<u8>, SandboxError> {
    let limits = &sandbox.config.compile;
    let dir = tempfile::Builder::new().prefix("wasmraid-compile").tempdir().map_err(|e| setup("temporary directory", e))?;
    let (input, output, errors) = (dir.path().join("component.wasm"), dir.path().join("artifact"), dir.path().join("stderr"));
    std::fs::write(&input, bytes).map_err(|e| setup("writing the component", e))?;
    let stderr = std::fs::File::create(&errors).map_err(|e| setup("stderr file", e))?;
    let mut cmd = Command::new(program);
    cmd.arg(CHILD_COMMAND)
        .arg("--stack-bytes")
        .arg(sandbox.config.stack_bytes.to_string())
        .arg(&input)
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .env("WASMRAID_LOG", "error");
    let memory = limits.memory_bytes;
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; it calls setrlimit(2) and
    // setpriority(2) (plain system calls) with values computed before the
    // fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let address_space = libc::rlimit { rlim_cur: memory as libc::rlim_t, rlim_max: memory as libc::rlim_t };
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::setrlimit(libc::RLIMIT_AS, &address_space) != 0 || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The child compiles on every core (see child_main), below the
            // daemon's priority so a reload under load leaves the data path
            // its CPUs. Failing to lower it is harmless.
            libc::setpriority(libc::PRIO_PROCESS, 0, CHILD_NICE);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| setup(&format!("starting {}", program.display()), e))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limits.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SandboxError::CompileLimit(format!("compiling it took longer than {:?} (--compile-timeout): refused", limits.timeout)));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(setup("waiting", e)),
        }
    };
    if status.success() {
        let most = (bytes.len() as u64).saturating_mul(32).saturating_add(256 << 20);
        return read_bounded(&output, most).map_err(|e| setup("reading the artifact", e));
    }
    let said = read_bounded(&errors, 4096).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let said = super::text::guest_text(said.trim());
    use std::os::unix::process::ExitStatusExt;
    if said.contains("memory allocation") || status.signal() == Some(libc::SIGSEGV) || status.signal() == Some(libc::SIGABRT) && said.is_empty() {
        return Err(SandboxError::CompileLimit(format!(
            "compiling it needed more than {} of memory (--compile-memory): refused",
            crate::units::format_size(memory)
        )));
    }
    match status.code() {
        Some(2) => Err(SandboxError::Invalid(said)),
        _ => Err(setup(&format!("it ended with {status}"), said)),
    }
}

fn read_bounded(path: &Path, most: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(most.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > most {
        return Err(std::io::Error::other(format!("larger than {most} bytes")));
    }
    Ok(out)
}

/// The child's side: compile `input` into `output`. Exit 0 when compiled,
/// 2 when the component is invalid (the reason on stderr).
pub fn child_main(input: &Path, output: &Path, stack_bytes: usize) -> std::process::ExitCode {
    let config = super::SandboxConfig { stack_bytes, cache_dir: None, parallel_compilation: true, ..super::SandboxConfig::default() };
    let run = || -> Result<(), SandboxError> {
        let sandbox = Sandbox::new(config)?;
        let bytes = std::fs::read(input).map_err(|e| setup("reading the component", e))?;
        let artifact = sandbox.engine.precompile_component(&bytes).map_err(|e| SandboxError::Invalid(format!("{e:#}")))?;
        std::fs::write(output, artifact).map_err(|e| setup("writing the artifact", e))
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(SandboxError::Invalid(why)) => {
            eprintln!("{why}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    }
}
