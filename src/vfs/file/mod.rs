//! One connection's database file of the versioned layout: its state and what SQLite asks of
//! it through [`File`](super::handle::File). The work is split by what it does: `read`
//! (reads from a pinned version, read-ahead, the interior-page index, B-tree prefetch),
//! `write` (the transaction buffer of whole blocks, and spilling it early), `commit` (the
//! transaction handed to the commit protocol when SQLite syncs) and `locks` (SQLite's lock
//! levels and the freshness check that starts a read transaction).

mod commit;
mod locks;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::lock::{Busy, Holder, LockLevel};
use super::Database;
use crate::cache::readahead::{ReadAhead, MAX_READ_AHEAD};
use crate::cache::BlockKey;
use crate::error::{Error, Result};
use crate::runtime;
use crate::storage::block::{checksum, BlockRef};
use crate::storage::interior::{self, InteriorPages};
use crate::storage::log::{self, Edit, Transaction};
use crate::storage::{page_number, BlockIndex, ByteOffset, Piece, Snapshot, TxId};

/// A block the current transaction changed.
enum Dirty {
    /// Held in memory, `block_size` bytes long; `original` is the committed object it started
    /// from, when it started from one, so an unchanged block is not uploaded again.
    Memory {
        data: Vec<u8>,
        original: Option<Bytes>,
    },
    /// Uploaded early under the transaction's txid, `len` bytes long, with this checksum.
    Uploaded { len: u64, sum: u32 },
}

struct Txn {
    txid: TxId,
    size: u64,
    /// The smallest size the file had during the transaction: committed bytes at or past it
    /// were cut off, and read as zeros unless written again.
    floor: u64,
    blocks: BTreeMap<BlockIndex, Dirty>,
    memory_bytes: u64,
    /// When the first block was uploaded early, if one was.
    first_upload: Option<Instant>,
}

/// Whether a read found all the bytes it asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Full,
    /// The file ended first; the rest of the buffer was zero-filled.
    Short,
}

impl ReadOutcome {
    /// A read of `wanted` bytes that found `available` of them.
    pub fn of(available: usize, wanted: usize) -> ReadOutcome {
        if available == wanted {
            ReadOutcome::Full
        } else {
            ReadOutcome::Short
        }
    }
}

/// Copies `piece` of a read from `view`, the content of its block (bytes past the view's end
/// are zeros, as the zero-filled buffer already holds).
pub fn copy_piece(buffer: &mut [u8], piece: &Piece, view: &[u8]) {
    let end = (piece.within + piece.buffer.len()).min(view.len());
    if end > piece.within {
        let target = piece.buffer.start..piece.buffer.start + (end - piece.within);
        buffer[target].copy_from_slice(&view[piece.within..end]);
    }
}

pub struct DbFile {
    database: Arc<Database>,
    holder: Holder,
    level: LockLevel,
    staleness: Duration,
    /// The version this connection reads: pinned when its read transaction starts.
    snapshot: Arc<Snapshot>,
    /// When the freshness check that found `snapshot` to be the newest started.
    checked: Instant,
    /// Set for a connection that reads one past version: why it refuses to write.
    read_only: Option<String>,
    txn: Option<Txn>,
    read_ahead: ReadAhead,
    /// Bytes one B-tree prefetch may fetch (`prefetch_size`); 0: none.
    prefetch_size: u64,
    /// Whether cold reads use the checkpoint's interior-page index (`interior_index`).
    interior_index: bool,
    /// Set when a commit failed: the rest of the transaction (SQLite's rollback) is discarded.
    doomed: bool,
}

impl DbFile {
    pub fn new(database: Arc<Database>, staleness: Duration) -> DbFile {
        let snapshot = database.latest();
        DbFile {
            holder: Holder::new(database.clone()),
            database,
            level: LockLevel::None,
            staleness,
            snapshot,
            // Never used for a commit: every transaction starts with a check of its own.
            checked: Instant::now(),
            read_only: None,
            txn: None,
            read_ahead: ReadAhead::default(),
            prefetch_size: crate::config::DEFAULT_PREFETCH_SIZE,
            interior_index: true,
            doomed: false,
        }
    }

    /// Sets the bytes one B-tree prefetch may fetch; 0 turns it off.
    pub fn with_prefetch_size(mut self, bytes: u64) -> DbFile {
        self.prefetch_size = bytes;
        self
    }

    /// Whether cold reads use the checkpoint's interior-page index.
    pub fn with_interior_index(mut self, on: bool) -> DbFile {
        self.interior_index = on;
        self
    }

    /// A connection that reads exactly `snapshot`, a past version, and refuses every write;
    /// `pin` is how the user named it.
    pub fn pinned(
        database: Arc<Database>,
        snapshot: Arc<Snapshot>,
        pin: crate::storage::history::Pin,
    ) -> DbFile {
        let mut file = DbFile::new(database, Duration::ZERO);
        file.read_only = Some(format!(
            "{} is open read-only at version {} ({pin}): a past version cannot be written; \
             open it without version=/as_of= to write, or restore the version with \
             s3vfs_restore()",
            file.database.location.url(),
            snapshot.version.0
        ));
        file.snapshot = snapshot;
        file
    }

    /// Why this connection refuses writes, if it does.
    pub fn read_only(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    fn refuse_writes(&self) -> Result<()> {
        match &self.read_only {
            Some(why) => Err(Error::ReadOnly(why.clone())),
            None => Ok(()),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    fn block_size(&self) -> u64 {
        self.snapshot.block_size.bytes()
    }

    pub fn size(&self) -> u64 {
        self.txn.as_ref().map_or(self.snapshot.size, |txn| txn.size)
    }

    /// How many leading bytes of committed block `index` are still part of the file.
    fn committed_len(&self, index: BlockIndex) -> u64 {
        let floor = self
            .txn
            .as_ref()
            .map_or(self.snapshot.size, |txn| txn.floor);
        let start = index.0 * self.block_size();
        self.snapshot
            .block_len(index)
            .min(floor.saturating_sub(start))
    }

    /// Where the committed content of block `index` comes from, and its length, if any of
    /// its bytes are still in the file.
    fn committed_source(&self, index: BlockIndex) -> Option<(BlockIndex, BlockRef, u64)> {
        let entry = self.snapshot.block_ref(index)?;
        (self.committed_len(index) > 0)
            .then(|| (index, entry.clone(), self.snapshot.block_len(index)))
    }

    /// The cache key of block `index`'s committed content, if any of it is still in the file.
    fn committed_key(&self, index: BlockIndex) -> Option<BlockKey> {
        self.committed_source(index)
            .map(|(index, entry, _)| BlockKey::of(index, &entry))
    }
}

impl super::handle::File for DbFile {
    fn database(&self) -> &Arc<Database> {
        DbFile::database(self)
    }
    fn past_version(&self) -> Option<Arc<Snapshot>> {
        self.read_only.is_some().then(|| self.snapshot.clone())
    }
    fn read(&mut self, offset: ByteOffset, buffer: &mut [u8]) -> Result<ReadOutcome> {
        DbFile::read(self, offset, buffer)
    }
    fn write(&mut self, offset: ByteOffset, data: &[u8]) -> Result<()> {
        DbFile::write(self, offset, data)
    }
    fn truncate(&mut self, size: u64) -> Result<()> {
        DbFile::truncate(self, size)
    }
    fn sync(&mut self) -> Result<()> {
        DbFile::sync(self)
    }
    fn size(&self) -> u64 {
        DbFile::size(self)
    }
    fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>> {
        DbFile::lock(self, level)
    }
    fn unlock(&mut self, level: LockLevel) -> Result<()> {
        DbFile::unlock(self, level);
        Ok(())
    }
    fn reserved(&self) -> bool {
        DbFile::reserved(self)
    }
    fn commit_phase_two(&mut self) -> Result<()> {
        self.commit_shrink()
    }
    fn capabilities(&self) -> super::handle::Capabilities {
        super::handle::Capabilities { safe_append: true }
    }
}
