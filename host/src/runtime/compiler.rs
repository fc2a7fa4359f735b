//! Compiling a component where a compile bomb cannot hurt the host.
//!
//! A component's compile cost grows with its code, not with anything a call does: a few hundred KB of gzip can
//! hold tens of MB of code that take Cranelift gigabytes to compile. With [`RuntimeLimits::compiler`] set, the
//! host runs `ballast compile-plugin` as a child process that caps its own address space and CPU time, and takes
//! back the compiled artifact; a child that runs out of either dies alone, and the component is refused.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;

use super::limits::RuntimeLimits;

/// The hidden subcommand of `ballast` that compiles a component read from standard input.
pub const COMPILE_COMMAND: &str = "compile-plugin";

/// A compiled artifact is a few times larger than its component; far beyond that is not one.
const ARTIFACT_SIZE_FACTOR: usize = 16;
/// Bytes of the child's standard error kept for the refusal message.
const STDERR_KEPT: u64 = 4 << 10;

/// Why a component could not be compiled in the child: the limit it hit when that can be told, or the step that
/// failed. The messages are the refusal's reason, so each says what is wrong with the component or the host.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CompileError {
    #[error("cannot start the compiler process {}: {source}", program.display())]
    Start { program: std::path::PathBuf, source: std::io::Error },
    #[error("waiting for the compiler process: {0}")]
    Wait(std::io::Error),
    #[error("compiling took longer than {0:?}; the component has too much code")]
    Deadline(Duration),
    #[error("compiling needed more than its {mib} MiB of memory; the component has too much code")]
    Memory { mib: usize },
    #[error("compiling ran out of its {0:?} of CPU time; the component has too much code")]
    CpuTime(Duration),
    #[error("the compiler process failed ({0})")]
    Failed(std::process::ExitStatus),
    /// The child's own message (its standard error), e.g. wasmtime's reason for refusing the bytes.
    #[error("not a valid WebAssembly component ({0}); build it for wasm32-wasip2 as a component")]
    Invalid(String),
    #[error("reading the compiler's output: {0}")]
    Output(std::io::Error),
    #[error("reading the compiler's output panicked")]
    OutputPanicked,
    #[error("the compiled artifact is over {0} bytes")]
    ArtifactTooLarge(u64),
}

/// Why the child could not compile standard input; printed alone on its standard error for the parent.
#[derive(Debug, thiserror::Error)]
pub enum ServeCompileError {
    #[error("setrlimit: {0}")]
    Limit(std::io::Error),
    #[error("reading the component: {0}")]
    Input(std::io::Error),
    #[error("creating the wasm engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error("{0:#}")]
    Compile(wasmtime::Error),
    #[error("writing the artifact: {0}")]
    Output(std::io::Error),
}

/// Compiles `bytes` in a child process, returning the serialized artifact or why it could not be made.
pub(crate) fn compile_in_child(
    program: &std::path::Path,
    limits: &RuntimeLimits,
    bytes: &[u8],
) -> Result<Vec<u8>, CompileError> {
    let mut child = Command::new(program)
        .arg(COMPILE_COMMAND)
        .arg("--memory-bytes")
        .arg(limits.compile_memory_bytes.to_string())
        // A backstop to the wall-clock deadline below: compilation runs on every core, so CPU time runs faster.
        .arg("--cpu-seconds")
        .arg((limits.compile_deadline.as_secs().max(1) * 4).to_string())
        .env("BALLAST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CompileError::Start { program: program.to_path_buf(), source })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let max_artifact = (bytes.len().saturating_mul(ARTIFACT_SIZE_FACTOR)).max(64 << 20) as u64;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut artifact = Vec::new();
        (&mut stdout).take(max_artifact + 1).read_to_end(&mut artifact).map(|_| artifact)
    });
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr).take(STDERR_KEPT).read_to_string(&mut text);
        // Drain the rest so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limits.compile_deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CompileError::Deadline(limits.compile_deadline));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(CompileError::Wait(e)),
        }
    };
    let _ = writer.join();
    let artifact = reader.join().map_err(|_| CompileError::OutputPanicked)?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(child_failure(status, errors.trim(), limits));
    }
    let artifact = artifact.map_err(CompileError::Output)?;
    if artifact.len() as u64 > max_artifact {
        return Err(CompileError::ArtifactTooLarge(max_artifact));
    }
    Ok(artifact)
}

/// Why the child failed, in terms of the limit it hit when it can be told.
fn child_failure(status: std::process::ExitStatus, errors: &str, limits: &RuntimeLimits) -> CompileError {
    use std::os::unix::process::ExitStatusExt as _;
    let memory = CompileError::Memory { mib: limits.compile_memory_bytes >> 20 };
    let out_of_memory = errors.contains("memory allocation") || errors.contains("out of memory");
    match status.signal() {
        _ if out_of_memory => memory,
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => CompileError::CpuTime(limits.compile_deadline),
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) => memory,
        _ if errors.is_empty() => CompileError::Failed(status),
        _ => CompileError::Invalid(errors.to_string()),
    }
}

/// The child's side: caps its own memory and CPU time, compiles standard input with `engine`'s settings and writes
/// the artifact to standard output.
pub fn serve_compile(
    engine_for: impl FnOnce() -> wasmtime::Result<Engine>,
    memory_bytes: u64,
    cpu_seconds: u64,
) -> Result<(), ServeCompileError> {
    limit(libc::RLIMIT_AS, memory_bytes)?;
    limit(libc::RLIMIT_CPU, cpu_seconds)?;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(ServeCompileError::Input)?;
    let engine = engine_for().map_err(ServeCompileError::Engine)?;
    let artifact = engine.precompile_component(&bytes).map_err(ServeCompileError::Compile)?;
    std::io::stdout().write_all(&artifact).map_err(ServeCompileError::Output)
}

/// Sets the soft limit to `value` (the hard one a second later, for CPU time: SIGXCPU comes before SIGKILL).
fn limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), ServeCompileError> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value.saturating_add(1) };
    // SAFETY: setrlimit only reads the struct passed by reference.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(ServeCompileError::Limit(std::io::Error::last_os_error()));
    }
    Ok(())
}
