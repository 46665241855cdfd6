//! s3vfs's own lines on stderr, by level: `S3VFS_LOG=off|error|warn|info|debug` (default
//! `warn`: the errors and warnings a person must act on). `info` adds a line per open, commit
//! and transfer, `debug` a line per request. They go through the `log` crate, so a host
//! program that installed a logger of its own receives them instead.
//!
//! Warnings about something that did not fail the call (a disk cache that cannot be used) go
//! through [`warn`], to the sink the extension's entry point installs (`sqlite3_log` as well
//! as stderr), so that the layers below the FFI never call into it.

use std::sync::OnceLock;

use log::{LevelFilter, Log, Metadata, Record};

/// The values `S3VFS_LOG` takes, as messages list them.
pub const LEVELS: &str = "off, error, warn, info, debug";

/// The level a value of `S3VFS_LOG` names, or `None` when it names none.
pub fn parse(text: &str) -> Option<LevelFilter> {
    match text.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        _ => None,
    }
}

/// Prints s3vfs's records (not other crates') on stderr, each as one line.
struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.target().starts_with("s3vfs") && metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{}", record.args());
        }
    }

    fn flush(&self) {}
}

static STDERR: Stderr = Stderr;

/// Installs the stderr logger at `S3VFS_LOG`'s level, once per process (an unknown value
/// counts as the default here; opening a database refuses it with a message).
pub fn init() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let level = std::env::var("S3VFS_LOG")
            .ok()
            .and_then(|value| parse(&value))
            .unwrap_or(LevelFilter::Warn);
        if log::set_logger(&STDERR).is_ok() {
            log::set_max_level(level);
        }
    });
}

/// Where [`warn`] sends a message, once installed.
static WARNING_SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Sends every later [`warn`] to `sink`; the first installation stays.
pub fn set_warning_sink(sink: fn(&str)) {
    let _ = WARNING_SINK.set(sink);
}

/// A warning a person should see, about something that did not fail the call: to the
/// installed sink, or without one (a Rust program using the library) to the `log` crate.
pub fn warn(message: &str) {
    match WARNING_SINK.get() {
        Some(sink) => sink(message),
        None => {
            init();
            log::warn!(target: "s3vfs", "{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_others_do_not() {
        assert_eq!(parse("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse(" INFO "), Some(LevelFilter::Info));
        assert_eq!(parse("off"), Some(LevelFilter::Off));
        assert_eq!(parse("verbose"), None);
        assert_eq!(parse(""), None);
    }
}
