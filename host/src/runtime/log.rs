//! What a plugin says during one call: `log()` lines and its standard output and error, capped, with control
//! characters escaped, kept even when the call traps.

use std::fmt::Write as _;

use super::limits::RuntimeLimits;
use super::wasi::Stream;

/// A line a plugin logged or printed during a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginLog {
    /// `debug`, `info`, `warn` or `error` for `log()` lines; `stdout` or `stderr` for printed ones.
    pub level: &'static str,
    pub message: String,
}

impl PluginLog {
    /// Whether the line is the plugin reporting trouble (an error log, or its standard error, where panics and
    /// uncaught exceptions are printed).
    pub(crate) fn is_error(&self) -> bool {
        matches!(self.level, "error" | "stderr")
    }
}

/// The lines of the call in progress.
pub(crate) struct CallLog {
    lines: Vec<PluginLog>,
    /// Bytes of the lines kept so far.
    bytes: usize,
    /// Lines not kept because a cap was reached.
    dropped: usize,
    /// Printed text not yet ended by a newline, per stream (at most `max_line` bytes of it are kept).
    partial: [Vec<u8>; 2],
    max_lines: usize,
    max_line: usize,
    max_bytes: usize,
}

impl CallLog {
    pub(crate) fn new(limits: &RuntimeLimits) -> Self {
        CallLog {
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
            partial: [Vec::new(), Vec::new()],
            max_lines: limits.max_log_lines,
            max_line: limits.max_log_line,
            max_bytes: limits.max_log_bytes,
        }
    }

    /// A `log()` line.
    pub(crate) fn push(&mut self, level: &'static str, message: &str) {
        if self.lines.len() >= self.max_lines || self.bytes >= self.max_bytes {
            self.dropped += 1;
            return;
        }
        let message = super::text::escaped(message, self.max_line.min(self.max_bytes - self.bytes));
        self.bytes += message.len();
        self.lines.push(PluginLog { level, message });
    }

    /// Printed bytes: each complete line becomes a log line.
    pub(crate) fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        let (index, level) = match stream {
            Stream::Stdout => (0, "stdout"),
            Stream::Stderr => (1, "stderr"),
        };
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep_partial(index, &bytes[..end]);
            let line = std::mem::take(&mut self.partial[index]);
            self.push(level, &String::from_utf8_lossy(&line));
            bytes = &bytes[end + 1..];
        }
        self.keep_partial(index, bytes);
    }

    fn keep_partial(&mut self, index: usize, bytes: &[u8]) {
        let room = self.max_line.saturating_sub(self.partial[index].len());
        self.partial[index].extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The call's lines (an unfinished printed line included), with a last line saying how many were dropped;
    /// the log is empty afterwards, for the next call.
    pub(crate) fn take(&mut self) -> Vec<PluginLog> {
        for (index, level) in [(0, "stdout"), (1, "stderr")] {
            if !self.partial[index].is_empty() {
                let line = std::mem::take(&mut self.partial[index]);
                self.push(level, &String::from_utf8_lossy(&line));
            }
        }
        let mut lines = std::mem::take(&mut self.lines);
        if self.dropped > 0 {
            let mut note = String::new();
            let _ = write!(
                note,
                "{} more lines dropped: a call keeps at most {} lines and {} bytes of log",
                self.dropped, self.max_lines, self.max_bytes
            );
            lines.push(PluginLog { level: "warn", message: note });
        }
        self.bytes = 0;
        self.dropped = 0;
        lines
    }
}

/// Passes plugins' log lines on to the host's log, tagged with the service and the plugin's digest, at most
/// [`LogRelay::LINES_PER_MINUTE`] lines per service a minute: a plugin that logs on every call cannot flood it.
#[derive(Debug, Default)]
pub(crate) struct LogRelay {
    window_started: Option<std::time::Instant>,
    relayed: u32,
    dropped: u32,
}

impl LogRelay {
    pub(crate) const LINES_PER_MINUTE: u32 = 60;

    pub(crate) fn relay(&mut self, service: &dyn std::fmt::Display, digest: &str, lines: &[PluginLog]) {
        if lines.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        if self.window_started.is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(60)) {
            if self.dropped > 0 {
                tracing::warn!(policy = %service, "{} plugin log lines dropped in the last minute (at most {} a minute are logged)", self.dropped, Self::LINES_PER_MINUTE);
            }
            *self = LogRelay { window_started: Some(now), relayed: 0, dropped: 0 };
        }
        let digest = &digest[..digest.len().min(12)];
        for line in lines {
            if self.relayed >= Self::LINES_PER_MINUTE {
                self.dropped += 1;
                continue;
            }
            self.relayed += 1;
            let message = &line.message;
            match line.level {
                "error" | "stderr" => {
                    tracing::warn!(policy = %service, plugin = digest, level = line.level, "plugin: {message}")
                }
                "debug" => tracing::debug!(policy = %service, plugin = digest, level = line.level, "plugin: {message}"),
                _ => tracing::info!(policy = %service, plugin = digest, level = line.level, "plugin: {message}"),
            }
        }
    }
}
