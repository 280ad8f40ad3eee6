//! Logs through `tracing` with a non-blocking writer: a slow terminal or
//! disk never stalls a request (the seed's logging bottleneck). Filter with
//! `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; keep the guard until exit so buffered lines are written.
pub fn init() -> Option<WorkerGuard> {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // Drop lines rather than block when the buffer is full.
        .lossy(true)
        .finish(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: logs piped to a file stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .try_init()
        .ok()
        .map(|()| guard)
}
