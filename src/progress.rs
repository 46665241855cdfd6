//! Progress of long transfers on stderr: what is done of the total and the rate, redrawn on
//! one line, when stderr is a terminal or `S3VFS_PROGRESS=1` asks for it.

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often the line is redrawn at most.
const EVERY: Duration = Duration::from_millis(250);

/// Whether progress is shown: `S3VFS_PROGRESS=1` always, `0` never, unset when stderr is a
/// terminal.
pub fn wanted() -> Result<bool> {
    match std::env::var("S3VFS_PROGRESS").ok().as_deref() {
        None | Some("") => Ok(std::io::stderr().is_terminal()),
        Some("1") => Ok(true),
        Some("0") => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "S3VFS_PROGRESS={other:?} is not a setting: use 1 (always show progress on stderr) \
             or 0 (never); unset, progress shows when stderr is a terminal"
        ))),
    }
}

/// What one transfer has done, in some unit (bytes, or objects for the collector).
pub struct Progress {
    label: String,
    unit: Unit,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
    shown: bool,
}

#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Objects,
}

impl Progress {
    /// Progress of `label` (say `deserialize s3://bucket/prefix`) towards `total`, if known;
    /// shown only if [`wanted`].
    pub fn new(label: impl Into<String>, unit: Unit, total: Option<u64>) -> Result<Progress> {
        Ok(Progress {
            label: label.into(),
            unit,
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
            shown: wanted()?,
        })
    }

    pub fn advance(&mut self, amount: u64) {
        self.advance_to(self.done + amount);
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    pub fn advance_to(&mut self, done: u64) {
        self.done = done;
        if self.shown && self.drawn.is_none_or(|drawn| drawn.elapsed() >= EVERY) {
            self.draw();
            self.drawn = Some(Instant::now());
        }
    }

    /// `input`, counting what is read from it.
    pub fn reading<'a, R: Read + ?Sized>(&'a mut self, input: &'a mut R) -> Reading<'a, R> {
        Reading {
            input,
            progress: self,
        }
    }

    /// Draws the last state and ends the line.
    pub fn finish(&mut self) {
        if self.shown {
            self.draw();
            let _ = writeln!(std::io::stderr(), " done");
        }
    }

    /// Redraws the line in place.
    fn draw(&self) {
        let _ = write!(std::io::stderr(), "\r{}", self.line());
    }

    /// `s3vfs: deserialize s3://b/p: 12.0 of 100.0 MB, 34.5 MB/s`.
    pub fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        match self.unit {
            Unit::Bytes => {
                let megabytes = |bytes: u64| bytes as f64 / 1e6;
                let of = self
                    .total
                    .map(|total| format!(" of {:.1}", megabytes(total)))
                    .unwrap_or_default();
                format!(
                    "s3vfs: {}: {:.1}{of} MB, {:.1} MB/s",
                    self.label,
                    megabytes(self.done),
                    megabytes(self.done) / seconds
                )
            }
            Unit::Objects => {
                let of = self
                    .total
                    .map(|total| format!(" of {total}"))
                    .unwrap_or_default();
                format!(
                    "s3vfs: {}: {}{of} objects, {:.0}/s",
                    self.label,
                    self.done,
                    self.done as f64 / seconds
                )
            }
        }
    }
}

/// A reader whose bytes advance a [`Progress`].
pub struct Reading<'a, R: Read + ?Sized> {
    input: &'a mut R,
    progress: &'a mut Progress,
}

impl<R: Read + ?Sized> Read for Reading<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.input.read(buffer)?;
        self.progress.advance(read as u64);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_is_done_of_the_total_and_the_rate() {
        let mut progress = Progress {
            label: "serialize s3://b/p".into(),
            unit: Unit::Bytes,
            total: Some(100_000_000),
            done: 0,
            started: Instant::now() - Duration::from_secs(2),
            drawn: None,
            shown: false,
        };
        progress.advance(12_000_000);
        let line = progress.line();
        assert!(
            line.starts_with("s3vfs: serialize s3://b/p: 12.0 of 100.0 MB, "),
            "{line}"
        );
        assert!(line.ends_with(" MB/s"), "{line}");
        progress.unit = Unit::Objects;
        progress.total = None;
        assert!(progress.line().contains(": 12000000 objects, "));
    }
}
