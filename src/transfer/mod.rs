//! Whole databases in and out: a committed version streamed out as a plain SQLite file, and a
//! plain SQLite file made the content of a database in one commit.
//!
//! Both directions move one window of blocks at a time (at most [`WINDOW_BYTES`], and at most
//! [`MAX_IN_FLIGHT`] blocks), so memory stays bounded whatever the database's size. Here: what
//! a transfer reads ([`Source`]) and the entry points; `image` checks a file coming in,
//! `export` streams blocks out, `import` commits a file in (or writes a new file of the
//! sqlite-s3vfs layout, which is how a database moves between layouts).

mod export;
mod image;
mod import;
#[cfg(test)]
mod tests;

pub use export::*;
pub use image::*;
pub use import::*;

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::backend::run_bounded;
use crate::cache::BlockKey;
use crate::config::Layout;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::runtime;
use crate::storage::block::{self, checksum};
use crate::storage::interior::InteriorPages;
use crate::storage::log::{self, Transaction, MAX_IN_FLIGHT};
use crate::storage::{
    header_page_size, header_u32, is_page_size, set_change_counter, BlockIndex, BlockSize,
    Snapshot, TxId, CHANGE_COUNTER, PAGE_COUNT, SQLITE_HEADER_LEN, SQLITE_MAGIC, VERSION_VALID_FOR,
};
use crate::vfs::legacy::{self, FileImage, NewFile};
use crate::vfs::{Database, Past};

const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// The bytes of blocks one transfer has in flight at once (a window); a serialize holds two
/// windows, the one being written and the next one being fetched.
pub const WINDOW_BYTES: u64 = 4 << 20;

/// How many blocks of `block_size` make a window: at least 1, at most [`MAX_IN_FLIGHT`].
pub fn window_blocks(block_size: BlockSize) -> u64 {
    (WINDOW_BYTES / block_size.bytes()).clamp(1, MAX_IN_FLIGHT as u64)
}

/// A commit that loses the race to another writer is tried again this many times.
const COMMIT_ATTEMPTS: usize = 5;

/// A plain SQLite database file, as its header describes it, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// `None` for an empty (0-byte) file, which SQLite treats as an empty database.
    pub page_size: Option<u32>,
    pub size: u64,
}

/// Whether an existing database or file may be overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Refuse,
    Replace,
}

/// What a transfer reads: one version of a versioned database, or a whole file of the
/// sqlite-s3vfs layout.
pub enum Source<'a> {
    Version(&'a Database, Arc<Snapshot>),
    Legacy(&'a Database),
}

impl<'a> Source<'a> {
    /// What `database` holds at `past` (a URI's `version=` or `as_of=`, or the version a
    /// connection reads), else at its newest committed version; a database of the
    /// sqlite-s3vfs layout, which keeps no versions, as it is.
    pub fn of(database: &'a Database, past: Option<Past>) -> Result<Source<'a>> {
        if database.layout == Layout::SqliteS3vfs {
            return Ok(Source::Legacy(database));
        }
        let snapshot = match past {
            Some(Past::Pin(pin)) => database.pinned_snapshot(pin)?,
            Some(Past::Snapshot(snapshot)) => snapshot,
            None => database.refresh(Duration::ZERO)?,
        };
        if snapshot.version.0 == 0 {
            return Err(Error::Invalid(format!(
                "{} has no committed version",
                database.location.url()
            )));
        }
        Ok(Source::Version(database, snapshot))
    }
}

impl Source<'_> {
    fn database(&self) -> &Database {
        match self {
            Source::Version(database, _) | Source::Legacy(database) => database,
        }
    }

    /// Hands each block, in order, to `sink`; returns the file's size as the source states it.
    pub fn stream<T>(
        &self,
        sink: impl FnOnce(u64, &mut dyn FnMut() -> Result<Option<Bytes>>) -> Result<T>,
    ) -> Result<T> {
        match self {
            Source::Version(database, snapshot) => {
                let mut blocks = VersionBlocks::new(database, snapshot)?;
                sink(snapshot.size, &mut || blocks.next_block())
            }
            Source::Legacy(database) => {
                let mut blocks = LegacyBlocks::open(database)?;
                sink(blocks.size(), &mut || blocks.next_block())
            }
        }
    }
}

/// Writes `source` to `out` as a plain SQLite file, fetching the next blocks while the
/// current ones are written. Returns the bytes written.
pub fn serialize(source: &Source, out: &mut dyn Write) -> Result<u64> {
    let label = format!("serialize {}", source.database().location.url());
    source.stream(|size, next| {
        let mut progress = Progress::new(label, Unit::Bytes, Some(size))?;
        let written = write_blocks(counted(next, &mut progress), out)?;
        progress.finish();
        Ok(written)
    })
}

/// `next`, each block it returns advancing `progress`.
fn counted<'a>(
    next: &'a mut dyn FnMut() -> Result<Option<Bytes>>,
    progress: &'a mut Progress,
) -> impl FnMut() -> Result<Option<Bytes>> + 'a {
    move || {
        let block = next()?;
        if let Some(block) = &block {
            progress.advance(block.len() as u64);
        }
        Ok(block)
    }
}

/// Copies `source` into `target` as one commit, streaming block by block: a plain SQLite
/// file never needs to exist anywhere.
pub fn copy(source: &Source, target: &Database, overwrite: Overwrite) -> Result<u64> {
    let name = source.database().location.url();
    if std::ptr::eq(source.database(), target) {
        return Err(Error::Invalid(format!(
            "the source and the target are the same database, {name}"
        )));
    }
    let label = format!("copy {name} to {}", target.location.url());
    source.stream(|size, next| {
        let mut progress = Progress::new(label, Unit::Bytes, Some(size))?;
        let mut reader = BlockReader::new(counted(next, &mut progress));
        let mut header = Vec::with_capacity(SQLITE_HEADER_LEN);
        (&mut reader)
            .take(SQLITE_HEADER_LEN as u64)
            .read_to_end(&mut header)
            .map_err(|error| from_io(&error).unwrap_or_else(|| invalid(&name, error)))?;
        let image = check_image(&header, size, &name)?;
        let mut input = std::io::Cursor::new(header).chain(reader);
        let copied = load(target, &mut input, image, overwrite, &name)?;
        drop(input);
        progress.finish();
        Ok(copied)
    })
}

/// Makes the SQLite file read from `input` the content of `target`, whatever its layout:
/// one commit for the versioned layout, a new file for the sqlite-s3vfs layout. Returns the
/// size in bytes.
pub fn load(
    target: &Database,
    input: &mut dyn Read,
    image: Image,
    overwrite: Overwrite,
    name: &str,
) -> Result<u64> {
    match target.layout {
        Layout::Versioned => {
            deserialize(target, input, image, overwrite, name).map(|snapshot| snapshot.size)
        }
        Layout::SqliteS3vfs => load_legacy(target, input, image, overwrite, name),
    }
}
