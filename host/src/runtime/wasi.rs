//! The WASI a plugin sees: nothing to wait for and nothing to reach.
//!
//! Toolchains link their standard library against WASI (Rust's `println!` and `thread::sleep`, CPython's `print`
//! and `time.sleep`, QuickJS's `console.log`), so a plugin may call it even though a policy has no use for it. Every
//! such call must return at once, or the epoch deadline (which only interrupts wasm code) could not bound the call:
//! standard output and error become the call's log lines, clocks read zero and a sleep is over as soon as it starts,
//! sockets and name lookups are refused, and there are no files, environment or arguments.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::instance::HostState;
use super::log::CallLog;

/// An empty, deterministic WASI context whose standard output and error go to `log`.
pub(crate) fn context(log: &Arc<Mutex<CallLog>>) -> WasiCtx {
    WasiCtx::builder()
        .stdout(PluginOutput { log: log.clone(), stream: Stream::Stdout })
        .stderr(PluginOutput { log: log.clone(), stream: Stream::Stderr })
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![0x42]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x42]))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Links WASI 0.2 with the monotonic clock replaced by one whose timers have always expired.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<HostState, Timers>(linker, |state| ExpiredTimers(&mut state.table))?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Which standard stream a plugin wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Standard output or error of a plugin: lines go to the call's log, within its caps.
struct PluginOutput {
    log: Arc<Mutex<CallLog>>,
    stream: Stream,
}

fn lock(log: &Mutex<CallLog>) -> MutexGuard<'_, CallLog> {
    // The log is only appended to and drained; a panic elsewhere leaves it usable.
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(PluginOutput { log: self.log.clone(), stream: self.stream })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(PluginOutput { log: self.log.clone(), stream: self.stream })
    }
}

/// Largest write a plugin is offered at once; anything past the log caps is counted and dropped anyway.
const WRITE_PERMIT: usize = 64 << 10;

impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        lock(&self.log).write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        lock(&self.log).write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The monotonic clock a plugin sees: always zero, and every timer already expired, so a sleep returns at once.
struct ExpiredTimers<'a>(&'a mut ResourceTable);

/// The [`HasData`] marker of [`ExpiredTimers`].
struct Timers;

impl HasData for Timers {
    type Data<'a> = ExpiredTimers<'a>;
}

/// A timer that has gone off.
struct Expired;

#[wasmtime_wasi::async_trait]
impl Pollable for Expired {
    async fn ready(&mut self) {}
}

impl ExpiredTimers<'_> {
    fn expired(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.0.push(Expired)?;
        wasmtime_wasi::p2::subscribe(self.0, timer)
    }
}

impl monotonic_clock::Host for ExpiredTimers<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(&mut self, _when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        self.expired()
    }

    fn subscribe_duration(&mut self, _duration: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        self.expired()
    }
}

/// Clocks that always read zero: plugins get time only through `now-ms` in their input.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Whether blocking WASI calls may be made on this thread: wasmtime-wasi's synchronous bindings drive their
/// futures with `Handle::block_on`, which panics on a thread that is running async tasks. Plugin calls therefore
/// run through [`off_async`].
pub fn off_async<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        // Not inside a runtime: wasmtime-wasi uses its own.
        Err(_) => work(),
        // A worker of the multi-threaded runtime hands its other tasks to another worker while this blocks.
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        // A single-threaded runtime cannot: the work goes to a thread of its own.
        Ok(_) => std::thread::scope(|scope| {
            scope.spawn(work).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::RuntimeLimits;
    use super::*;

    #[test]
    fn output_written_in_pieces_becomes_whole_lines() {
        let log = Arc::new(Mutex::new(CallLog::new(&RuntimeLimits::default())));
        let mut out = PluginOutput { log: log.clone(), stream: Stream::Stdout };
        for piece in ["hel", "lo\nwor", "ld\n", "tail"] {
            out.write(bytes::Bytes::copy_from_slice(piece.as_bytes())).unwrap();
        }
        let lines: Vec<_> = lock(&log).take().into_iter().map(|l| (l.level, l.message)).collect();
        assert_eq!(lines, [("stdout", "hello".into()), ("stdout", "world".into()), ("stdout", "tail".into())]);
    }
}
