//! One connection's database file: reads from a pinned version, buffers the writes of a
//! transaction as whole blocks, and commits them when SQLite syncs the file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::lock::{Busy, Holder, LockLevel};
use super::Database;
use crate::cache::BlockKey;
use crate::error::{Error, Result};
use crate::runtime;
use crate::storage::block::{checksum, BlockRef};
use crate::storage::interior::{self, InteriorPages};
use crate::storage::log::{self, Edit, Transaction};
use crate::storage::{page_number, BlockIndex, ByteOffset, Snapshot, TxId};

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

/// At most this many blocks are fetched ahead of a sequential reader.
pub const MAX_READ_AHEAD: u64 = 32;

/// Detects sequential reading: while reads move forward block by block, the window of blocks
/// fetched together with a missed block doubles, up to [`MAX_READ_AHEAD`]; a jump resets it.
#[derive(Default)]
struct ReadAhead {
    last: Option<BlockIndex>,
    window: u64,
}

impl ReadAhead {
    /// Records a read of blocks `first..=last`; returns how many blocks past `last` are worth
    /// fetching with it, at most `limit`.
    fn record(&mut self, first: BlockIndex, last: BlockIndex, limit: u64) -> u64 {
        self.window = match self.last {
            Some(previous) if first.0 == previous.0 + 1 => (self.window * 2).max(2).min(limit),
            Some(previous) if first.0 == previous.0 => self.window,
            _ => 0,
        };
        self.last = Some(last);
        self.window
    }
}

/// Whether a read found all the bytes it asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Full,
    /// The file ended first; the rest of the buffer was zero-filled.
    Short,
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

    /// The current content of whole blocks, as this connection sees them (each at most
    /// `block_size` bytes; bytes past the returned length are zeros), except blocks dirty in
    /// memory, which come back empty.
    /// Committed blocks in `ahead` that are not dirty are fetched along (into the cache).
    fn view_blocks(&self, indexes: &[BlockIndex], ahead: &[BlockIndex]) -> Result<Vec<Bytes>> {
        let txid = self.txn.as_ref().map(|txn| txn.txid);
        let mut wanted = Vec::new();
        for index in ahead {
            if self
                .txn
                .as_ref()
                .is_none_or(|txn| !txn.blocks.contains_key(index))
            {
                wanted.extend(self.committed_source(*index));
            }
        }
        for index in indexes {
            match self.txn.as_ref().and_then(|txn| txn.blocks.get(index)) {
                Some(Dirty::Memory { .. }) => {}
                Some(Dirty::Uploaded { len, sum }) => {
                    if let Some(txid) = txid {
                        wanted.push((*index, BlockRef::whole(txid, Some(*sum)), *len));
                    }
                }
                None => wanted.extend(self.committed_source(*index)),
            }
        }
        let fetched: BTreeMap<BlockKey, Bytes> = {
            let keys: Vec<BlockKey> = wanted
                .iter()
                .map(|(index, entry, _)| BlockKey::of(*index, entry))
                .collect();
            let blocks = self
                .database
                .read_blocks(&wanted)
                .map_err(|error| match error {
                    Error::Collected { key, version: None } => Error::Collected {
                        key,
                        version: Some(self.snapshot.version),
                    },
                    other => other,
                })?;
            keys.into_iter().zip(blocks).collect()
        };
        let mut views = Vec::with_capacity(indexes.len());
        for index in indexes {
            let view = match self.txn.as_ref().and_then(|txn| txn.blocks.get(index)) {
                // Not copied: `read` takes these from the transaction itself.
                Some(Dirty::Memory { .. }) => Bytes::new(),
                Some(Dirty::Uploaded { .. }) => txid
                    .and_then(|txid| {
                        fetched
                            .get(&BlockKey {
                                index: *index,
                                txid,
                            })
                            .cloned()
                    })
                    .unwrap_or_default(),
                None => match self.committed_key(*index) {
                    Some(key) => {
                        let data = fetched.get(&key).cloned().unwrap_or_default();
                        data.slice(..self.committed_len(*index) as usize)
                    }
                    None => Bytes::new(),
                },
            };
            views.push(view);
        }
        Ok(views)
    }

    /// Reads `buffer.len()` bytes at `offset`; past the end of the file the buffer is zeroed.
    pub fn read(&mut self, offset: ByteOffset, buffer: &mut [u8]) -> Result<ReadOutcome> {
        if let Some(page) = self.indexed_page(offset, buffer.len()) {
            buffer.copy_from_slice(&page);
            self.prefetch_level(offset, buffer);
            return Ok(ReadOutcome::Full);
        }
        let outcome = self.read_into(offset, buffer, true)?;
        if outcome == ReadOutcome::Full {
            self.prefetch_level(offset, buffer);
        }
        Ok(outcome)
    }

    /// The page of `len` bytes at `offset` from the interior-page index (see
    /// [`crate::storage::interior`]), when it is a whole committed page this transaction has
    /// not changed, its block is not cached, and the index holds it for this connection's
    /// version. A miss here asks for the index of this version's checkpoint, which loads while
    /// the block is fetched; later misses wait for that load rather than fetch.
    fn indexed_page(&self, offset: ByteOffset, len: usize) -> Option<Bytes> {
        let len64 = len as u64;
        if !self.interior_index
            || len64 > self.block_size()
            || offset.0 + len64 > self.snapshot.size
        {
            return None;
        }
        let number = page_number(offset, len)?;
        let (index, within) = self.snapshot.block_size.locate(offset);
        if self
            .txn
            .as_ref()
            .is_some_and(|txn| txn.blocks.contains_key(&index))
            || self.committed_len(index) < within + len64
        {
            return None;
        }
        let key = self.committed_key(index)?;
        if self.database.cached_block(&key).is_some() {
            return None;
        }
        if self.database.want_interior(&self.snapshot) {
            return None;
        }
        self.database
            .interior_page(&self.snapshot, number)
            .filter(|page| page.len() == len)
    }

    /// B-tree prefetch (see [`super::prefetch`]): when `page`, just read at `offset`, calls for
    /// a level of its tree, the level's blocks that are not cached are fetched in the
    /// background, if they fit within `prefetch_size` and a quarter of the cache. Only read
    /// transactions prefetch.
    fn prefetch_level(&mut self, offset: ByteOffset, page: &[u8]) {
        let len = page.len() as u64;
        if len == 0
            || self.prefetch_size == 0
            || self.level != LockLevel::Shared
            || self.txn.is_some()
        {
            return;
        }
        let (Some(number), Ok(page_count)) = (
            page_number(offset, page.len()),
            u32::try_from(self.snapshot.size / len),
        ) else {
            return;
        };
        // Parsed before the tracker is locked: most pages are leaves, and cost no lock.
        let Some(children) = super::prefetch::interior_children(number, page, page_count) else {
            return;
        };
        let Some(level) = self.database.prefetch_tracker().observe(number, children) else {
            return;
        };
        let block_size = self.block_size();
        // Pages the interior-page index holds need no block.
        let indexes: BTreeSet<BlockIndex> = level
            .iter()
            .filter(|page| !self.database.interior_covers(&self.snapshot, **page))
            .map(|page| BlockIndex((u64::from(*page) - 1) * len / block_size))
            .collect();
        let wanted: Vec<(BlockIndex, BlockRef, u64)> = indexes
            .into_iter()
            .filter_map(|index| self.committed_source(index))
            .filter(|(index, entry, _)| {
                self.database
                    .cached_block(&BlockKey::of(*index, entry))
                    .is_none()
            })
            .collect();
        let bytes: u64 = wanted.iter().map(|(_, _, len)| *len).sum();
        let fetched = (bytes <= self.prefetch_size.min(self.database.cache_size / 4))
            .then(|| self.database.prefetch(&wanted));
        self.database.prefetch_tracker().record(fetched);
    }

    /// As [`DbFile::read`]; `read_ahead` lets a sequential reader fetch the next blocks along.
    fn read_into(
        &mut self,
        offset: ByteOffset,
        buffer: &mut [u8],
        read_ahead: bool,
    ) -> Result<ReadOutcome> {
        buffer.fill(0);
        let size = self.size();
        let available = size.saturating_sub(offset.0).min(buffer.len() as u64) as usize;
        let pieces = self.snapshot.block_size.pieces(offset, available);
        let indexes: Vec<BlockIndex> = pieces.iter().map(|piece| piece.block).collect();
        let ahead = if read_ahead {
            self.read_ahead(&indexes)
        } else {
            Vec::new()
        };
        let views = self.view_blocks(&indexes, &ahead)?;
        for (piece, view) in pieces.iter().zip(views) {
            let view = match self
                .txn
                .as_ref()
                .and_then(|txn| txn.blocks.get(&piece.block))
            {
                Some(Dirty::Memory { data, .. }) => data.as_slice(),
                _ => &view[..],
            };
            let end = (piece.within + piece.buffer.len()).min(view.len());
            if end > piece.within {
                let target = piece.buffer.start..piece.buffer.start + (end - piece.within);
                buffer[target].copy_from_slice(&view[piece.within..end]);
            }
        }
        Ok(if available == buffer.len() {
            ReadOutcome::Full
        } else {
            ReadOutcome::Short
        })
    }

    /// The blocks to fetch ahead of a read of `indexes`: none unless reading is sequential and
    /// the first block is a cache miss (then the following blocks are fetched in the same
    /// concurrent batch, and the reads after it hit the cache). The window is kept within a
    /// quarter of the cache, so that read-ahead never evicts what it fetched.
    fn read_ahead(&mut self, indexes: &[BlockIndex]) -> Vec<BlockIndex> {
        let (Some(first), Some(last)) = (indexes.first(), indexes.last()) else {
            return Vec::new();
        };
        let limit = (self.database.cache_size / 4 / self.block_size()).clamp(1, MAX_READ_AHEAD);
        let window = self.read_ahead.record(*first, *last, limit);
        let missed = self
            .committed_key(*first)
            .is_some_and(|key| self.database.cached_block(&key).is_none());
        if window == 0 || !missed {
            return Vec::new();
        }
        let end = (last.0 + 1 + window).min(self.snapshot.block_count());
        (last.0 + 1..end).map(BlockIndex).collect()
    }

    fn txn(&mut self) -> &mut Txn {
        let snapshot = &self.snapshot;
        self.txn.get_or_insert_with(|| Txn {
            txid: TxId::random(),
            size: snapshot.size,
            floor: snapshot.size,
            blocks: BTreeMap::new(),
            memory_bytes: 0,
            first_upload: None,
        })
    }

    /// Makes blocks `indexes` memory-resident dirty blocks, loading what they held.
    fn make_dirty(&mut self, indexes: &[BlockIndex], whole: &BTreeSet<BlockIndex>) -> Result<()> {
        let missing: Vec<BlockIndex> = indexes
            .iter()
            .copied()
            .filter(|index| {
                !matches!(
                    self.txn.as_ref().and_then(|txn| txn.blocks.get(index)),
                    Some(Dirty::Memory { .. })
                )
            })
            .collect();
        let load: Vec<BlockIndex> = missing
            .iter()
            .copied()
            .filter(|index| !whole.contains(index))
            .collect();
        let views = self.view_blocks(&load, &[])?;
        let mut loaded: BTreeMap<BlockIndex, Bytes> = load.into_iter().zip(views).collect();
        let block_size = self.block_size() as usize;
        for index in missing {
            let original = match self.txn.as_ref().and_then(|txn| txn.blocks.get(&index)) {
                None if self.committed_len(index) == self.snapshot.block_len(index) => {
                    match loaded.get(&index) {
                        Some(view) => Some(view.clone()).filter(|data| !data.is_empty()),
                        // A whole-block overwrite fetches nothing, but a cached original still
                        // lets an unchanged block be skipped at commit.
                        None => self
                            .committed_key(index)
                            .and_then(|key| self.database.cached_block(&key)),
                    }
                }
                _ => None,
            };
            let mut data = vec![0u8; block_size];
            if let Some(view) = loaded.remove(&index) {
                data[..view.len()].copy_from_slice(&view);
            }
            let txn = self.txn();
            txn.memory_bytes += block_size as u64;
            txn.blocks.insert(index, Dirty::Memory { data, original });
        }
        Ok(())
    }

    /// Writes `data` at `offset` into the transaction.
    pub fn write(&mut self, offset: ByteOffset, data: &[u8]) -> Result<()> {
        self.refuse_writes()?;
        if self.doomed {
            return Ok(());
        }
        self.txn();
        let block_size = self.block_size() as usize;
        let pieces = self.snapshot.block_size.pieces(offset, data.len());
        let indexes: Vec<BlockIndex> = pieces.iter().map(|piece| piece.block).collect();
        let whole: BTreeSet<BlockIndex> = pieces
            .iter()
            .filter(|piece| piece.within == 0 && piece.buffer.len() == block_size)
            .map(|piece| piece.block)
            .collect();
        self.make_dirty(&indexes, &whole)?;
        let txn = self.txn();
        for piece in &pieces {
            if let Some(Dirty::Memory { data: block, .. }) = txn.blocks.get_mut(&piece.block) {
                block[piece.within..piece.within + piece.buffer.len()]
                    .copy_from_slice(&data[piece.buffer.clone()]);
            }
        }
        txn.size = txn.size.max(offset.0 + data.len() as u64);
        let limit = (self.database.cache_size / 4).max(8 * block_size as u64);
        if self.txn().memory_bytes > limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Uploads the memory-resident dirty blocks now, keeping memory bounded; they stay
    /// invisible until the commit record names them.
    fn spill(&mut self) -> Result<()> {
        let Some(txn) = self.txn.as_mut() else {
            return Ok(());
        };
        let mut upload = Vec::new();
        for (index, dirty) in txn.blocks.iter_mut() {
            if let Dirty::Memory { data, .. } = dirty {
                let bytes = Bytes::from(std::mem::take(data));
                let (len, sum) = (bytes.len() as u64, checksum(&bytes));
                upload.push((*index, bytes));
                *dirty = Dirty::Uploaded { len, sum };
            }
        }
        txn.memory_bytes = 0;
        txn.first_upload.get_or_insert_with(Instant::now);
        let (backend, location, txid) = (
            self.database.backend(),
            self.database.location.clone(),
            txn.txid,
        );
        // A block uploaded again replaces its earlier upload: no stale copy may stay cached.
        for (index, _) in &upload {
            self.database.forget_block(&BlockKey {
                index: *index,
                txid,
            });
        }
        let codec = self.snapshot.codec;
        runtime::block_on(async move {
            log::upload_blocks(&backend, &location, codec, txid, upload).await
        })
    }

    /// Cuts or extends the file to `size` bytes.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        self.refuse_writes()?;
        if self.doomed {
            return Ok(());
        }
        let block_size = self.block_size();
        let count = self.snapshot.block_size.block_count(size);
        let (last, within) = self.snapshot.block_size.locate(ByteOffset(size));
        // A dirty block that the cut splits keeps zeros past the cut.
        if within > 0 && matches!(self.txn().blocks.get(&last), Some(Dirty::Uploaded { .. })) {
            self.make_dirty(&[last], &BTreeSet::new())?;
        }
        let txn = self.txn();
        if let Some(Dirty::Memory { data, original }) = txn.blocks.get_mut(&last) {
            if within > 0 {
                data[within as usize..].fill(0);
                *original = None;
            }
        }
        let removed: Vec<BlockIndex> = txn
            .blocks
            .range(BlockIndex(count)..)
            .map(|(index, _)| *index)
            .collect();
        for index in removed {
            if let Some(Dirty::Memory { .. }) = txn.blocks.remove(&index) {
                txn.memory_bytes -= block_size;
            }
        }
        txn.size = size;
        txn.floor = txn.floor.min(size);
        Ok(())
    }

    /// The blocks to upload for the new version: every dirty block, plus every block whose
    /// committed object no longer matches (cut, extended, or new and never written).
    fn finish(&mut self) -> Result<Option<Transaction>> {
        let Some(txn) = self.txn.as_ref() else {
            return Ok(None);
        };
        let (size, txid) = (txn.size, txn.txid);
        let block_size = self.snapshot.block_size;
        let count = block_size.block_count(size);
        let stale: Vec<BlockIndex> = (0..count)
            .map(BlockIndex)
            .filter(|index| {
                let len = block_size.block_len(*index, size);
                match txn.blocks.get(index) {
                    Some(Dirty::Uploaded { len: uploaded, .. }) => *uploaded != len,
                    Some(Dirty::Memory { .. }) => false,
                    None => {
                        self.committed_len(*index) != len || self.snapshot.block_len(*index) != len
                    }
                }
            })
            .collect();
        self.make_dirty(&stale, &BTreeSet::new())?;
        let Some(txn) = self.txn.as_ref() else {
            return Ok(None);
        };
        let mut transaction = Transaction::new(self.snapshot.clone(), txid, size, self.checked);
        transaction.first_upload = txn.first_upload;
        for (index, dirty) in &txn.blocks {
            let len = block_size.block_len(*index, size) as usize;
            match dirty {
                Dirty::Memory { data, original } => {
                    let data = &data[..len];
                    match original {
                        Some(original) if original[..] == data[..] => {}
                        Some(original) => transaction.edits.push((
                            *index,
                            Edit {
                                data: Bytes::copy_from_slice(data),
                                original: original.clone(),
                            },
                        )),
                        None => transaction
                            .upload
                            .push((*index, Bytes::copy_from_slice(data))),
                    }
                }
                Dirty::Uploaded { sum, .. } => {
                    transaction.uploaded.insert(*index, *sum);
                }
            }
        }
        let unchanged = transaction.upload.is_empty()
            && transaction.edits.is_empty()
            && transaction.uploaded.is_empty();
        if unchanged && size == self.snapshot.size {
            return Ok(None);
        }
        if log::checkpoint_due(&self.snapshot) {
            transaction.interior = self.held_interior_pages(&transaction);
            transaction.previous_interior = self.database.loaded_interior(&self.snapshot);
        }
        // Blocks the commit writes whole for a checkpoint: what this process has cached
        // saves fetching them.
        for index in log::to_consolidate(&self.snapshot, size) {
            if let Some(data) = self
                .committed_key(index)
                .and_then(|key| self.database.cached_block(&key))
            {
                transaction.known.insert(index, data);
            }
        }
        Ok(Some(transaction))
    }

    /// The interior pages of the version `transaction` makes that this process holds (the
    /// blocks it changes, and the blocks cached with the content they keep), for the
    /// checkpoint's interior-page index.
    fn held_interior_pages(&self, transaction: &Transaction) -> Option<InteriorPages> {
        let block_size = self.snapshot.block_size;
        let changed: BTreeMap<BlockIndex, &Bytes> = transaction.written().collect();
        let block0 = match changed.get(&BlockIndex(0)) {
            Some(data) => Some((*data).clone()),
            None => self
                .committed_key(BlockIndex(0))
                .and_then(|key| self.database.cached_block(&key)),
        }?;
        let mut held = InteriorPages::new(interior::page_size_of(&block0)?);
        for index in (0..block_size.block_count(transaction.size)).map(BlockIndex) {
            if let Some(data) = changed.get(&index) {
                held.scan(index, transaction.txid, data, block_size);
            } else if transaction.uploaded.contains_key(&index) {
                continue;
            } else if let Some((_, entry, len)) = self.committed_source(index) {
                let key = BlockKey::of(index, &entry);
                if len == block_size.block_len(index, transaction.size) {
                    if let Some(data) = self.database.cached_block(&key) {
                        held.scan(index, entry.txid, &data, block_size);
                    }
                }
            }
        }
        Some(held)
    }

    /// Commits the transaction, if it changed anything: the new version becomes visible to
    /// every reader at once, or (on any error) not at all.
    pub fn sync(&mut self) -> Result<()> {
        if self.read_only.is_some() {
            return match self.txn {
                Some(_) => self.refuse_writes(),
                None => Ok(()),
            };
        }
        if self.doomed {
            return Ok(());
        }
        if self.changes_nothing()? {
            self.txn = None;
            return Ok(());
        }
        self.publish()
    }

    /// Whether the pending writes leave the file exactly as committed, as when SQLite plays a
    /// journal back (a rollback whose pages had already reached the file) and then syncs: that
    /// sync commits nothing. SQLite moves the file change counter (header bytes 24..28) on in
    /// every commit, except in locking_mode=EXCLUSIVE after the first commit of the lock; so a
    /// moved counter is a commit, and otherwise the content decides, compared block by block
    /// (the blocks the transaction wrote, and those its truncations cut).
    fn changes_nothing(&mut self) -> Result<bool> {
        const COUNTER: u64 = 24;
        let Some(txn) = self.txn.as_ref() else {
            return Ok(true);
        };
        if self.snapshot.version.0 == 0 || txn.size != self.snapshot.size {
            return Ok(false);
        }
        let block_size = self.block_size();
        let mut compared: BTreeSet<BlockIndex> = txn.blocks.keys().copied().collect();
        if txn.floor < self.snapshot.size {
            let cut = txn.floor / block_size;
            compared.extend((cut..self.snapshot.block_count()).map(BlockIndex));
        }
        if self.snapshot.size >= COUNTER + 4 {
            // The counter first: for a commit outside exclusive locking, it decides at once.
            compared.insert(BlockIndex(0));
        }
        for index in compared {
            let start = ByteOffset(index.0 * block_size);
            let len = self
                .snapshot
                .block_size
                .block_len(index, self.snapshot.size) as usize;
            let mut pending = vec![0u8; len];
            self.read_into(start, &mut pending, false)?;
            let txn = self.txn.take();
            let mut committed = vec![0u8; len];
            let read = self.read_into(start, &mut committed, false);
            self.txn = txn;
            read?;
            if pending != committed {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Publishes the pending writes as the next version.
    fn publish(&mut self) -> Result<()> {
        let prepared = match self.finish() {
            Ok(prepared) => prepared,
            Err(error) => return Err(self.abandon(error)),
        };
        let Some(transaction) = prepared else {
            self.txn = None;
            return Ok(());
        };
        if let Err(error) = self.database.check_conditional_writes() {
            return Err(self.abandon(error));
        }
        let txid = transaction.txid;
        let written: Vec<(BlockKey, Bytes)> = transaction
            .written()
            .map(|(index, data)| (BlockKey { index, txid }, data.clone()))
            .collect();
        let (backend, location) = (self.database.backend(), self.database.location.clone());
        let started = Instant::now();
        let records = self.database.patch_cache();
        match runtime::block_on(log::commit(backend, location, transaction, records)) {
            Ok(snapshot) => {
                // The arguments are only evaluated when the line is logged.
                ::log::info!(
                    "s3vfs: committed {} version {}: {} bytes, {} blocks written at commit ({} as \
                     {} bytes of pages in the record), {} ms",
                    self.database.location.url(),
                    snapshot.version.0,
                    snapshot.size,
                    written.len(),
                    snapshot.patches.len(),
                    snapshot
                        .patches
                        .values()
                        .map(|patch| patch.bytes())
                        .sum::<u64>(),
                    started.elapsed().as_millis()
                );
                for (key, data) in written {
                    self.database.remember_block(key, data);
                }
                self.database.published(snapshot.clone(), started);
                self.snapshot = snapshot;
                self.checked = started;
                self.txn = None;
                Ok(())
            }
            Err(error) => Err(self.abandon(error)),
        }
    }

    /// Publishes a shrink SQLite made after its commit. The bytes cut are past the database's
    /// last page, so the version only reclaims space; if it cannot be published, the larger
    /// file stays, which is harmless: the caller only reports the error.
    pub fn commit_shrink(&mut self) -> Result<()> {
        let shrink_only = self
            .txn
            .as_ref()
            .is_some_and(|txn| txn.size < self.snapshot.size && txn.size == txn.floor);
        if !shrink_only {
            return Ok(());
        }
        self.publish()
    }

    /// Gives up the transaction after a failed commit; SQLite rolls it back next.
    fn abandon(&mut self, error: Error) -> Error {
        self.txn = None;
        self.doomed = true;
        error
    }

    pub fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>> {
        if level <= self.level {
            return Ok(Ok(()));
        }
        if self.read_only.is_some() {
            // A past version never changes: no check, and no write lock.
            if level >= LockLevel::Reserved {
                self.refuse_writes()?;
            }
            self.level = level;
            return Ok(Ok(()));
        }
        if let Err(busy) = self.holder.lock(level) {
            return Ok(Err(busy));
        }
        if self.level == LockLevel::None {
            // A read transaction starts: pin the newest committed version.
            match self.database.refresh_checked(self.staleness) {
                Ok((snapshot, checked)) => {
                    self.snapshot = snapshot;
                    self.checked = checked;
                }
                Err(error) => {
                    self.holder.unlock(LockLevel::None);
                    return Err(error);
                }
            }
        }
        self.level = level;
        Ok(Ok(()))
    }

    pub fn unlock(&mut self, level: LockLevel) {
        if level >= self.level {
            return;
        }
        if level <= LockLevel::Shared {
            // Whatever was not committed by a sync is a rollback's leftover.
            self.txn = None;
            self.doomed = false;
        }
        self.holder.unlock(level);
        self.level = level;
    }

    pub fn reserved(&self) -> bool {
        self.read_only.is_none() && self.database.locks.lock().reserved()
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

#[cfg(test)]
mod tests {
    //! A model-based test: random writes, truncates, commits and rollbacks through a DbFile on
    //! the in-memory store, checked against a plain Vec<u8>.
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::retry::RetryPolicy;
    use crate::backend::Backend;
    use crate::config::Config;
    use crate::crypto::Keyring;
    use crate::storage::codec::Codec;
    use crate::storage::BlockSize;
    use std::sync::atomic::Ordering;

    use crate::testing::Rng;

    fn config(block_size: u64, cache_size: u64) -> Config {
        let mut config = Config::parse("model.db", &[("bucket".into(), "memory".into())], |_| None)
            .expect("valid");
        config.block_size = BlockSize::new(block_size);
        config.cache_size = cache_size;
        config
    }

    fn read_all(file: &mut DbFile) -> Vec<u8> {
        let mut buffer = vec![0u8; file.size() as usize];
        file.read(ByteOffset(0), &mut buffer).expect("reads");
        buffer
    }

    fn run_model(seed: u64, block_size: u64, cache_size: u64) {
        run_model_stored(seed, block_size, cache_size, Codec::Raw, None);
    }

    /// The model run on a database created with `codec`, and encrypted with `keys` when given;
    /// afterwards, every object is checked to be stored so.
    fn run_model_stored(
        seed: u64,
        block_size: u64,
        cache_size: u64,
        codec: Codec,
        keys: Option<Keyring>,
    ) {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let mut config = config(block_size, cache_size);
        config.compression = Some(codec);
        config.encryption = keys.clone();
        let database = Database::with_backend(&config, backend.clone(), RetryPolicy::default())
            .expect("opens");
        let mut file = DbFile::new(database, Duration::ZERO);
        let mut rng = Rng(seed);
        let mut committed: Vec<u8> = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        for step in 0..300 {
            file.lock(LockLevel::Shared)
                .expect("locks")
                .expect("not busy");
            file.lock(LockLevel::Reserved)
                .expect("locks")
                .expect("not busy");
            for _ in 0..rng.below(6) {
                match rng.below(10) {
                    0 => {
                        let size = rng.below(current.len() as u64 + 3 * block_size);
                        current.resize(size as usize, 0);
                        file.truncate(size).expect("truncates");
                    }
                    _ => {
                        let offset = rng.below(current.len() as u64 + 2 * block_size);
                        let len = 1 + rng.below(3 * block_size) as usize;
                        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        if current.len() < offset as usize + len {
                            current.resize(offset as usize + len, 0);
                        }
                        current[offset as usize..offset as usize + len].copy_from_slice(&data);
                        file.write(ByteOffset(offset), &data).expect("writes");
                    }
                }
                assert_eq!(file.size(), current.len() as u64, "step {step}");
                assert_eq!(
                    read_all(&mut file),
                    current,
                    "step {step}: read inside the transaction"
                );
            }
            if rng.below(4) == 0 {
                current = committed.clone();
            } else {
                // As SQLite does in every commit, bump the file change counter.
                if current.len() >= 28 {
                    let counter = (step as u32 + 1).to_be_bytes();
                    current[24..28].copy_from_slice(&counter);
                    file.write(ByteOffset(24), &counter).expect("writes");
                }
                file.sync().expect("commits");
                committed = current.clone();
            }
            file.unlock(LockLevel::None);
            file.lock(LockLevel::Shared)
                .expect("locks")
                .expect("not busy");
            assert_eq!(
                read_all(&mut file),
                committed,
                "step {step}: after commit or rollback"
            );
            file.unlock(LockLevel::None);
        }
        // A fresh process (a new Database on the same store, without the parameter) sees the
        // last commit, stored as the database was created.
        config.compression = None;
        let reopened =
            Database::with_backend(&config, backend, RetryPolicy::default()).expect("reopens");
        assert_eq!(reopened.latest().codec, codec);
        let mut file = DbFile::new(reopened, Duration::ZERO);
        assert_eq!(read_all(&mut file), committed);
        // Every object of an encrypted database is sealed with its key.
        let fingerprint = keys.as_ref().and_then(|keys| keys.fingerprints().next());
        for key in memory.keys() {
            let stored = memory.object(&key).expect("listed");
            assert_eq!(crate::crypto::sealed_with(&stored), fingerprint, "{key}");
        }
        // Every block object is stored with the codec: a zstd frame starts with its magic.
        let blocks: Vec<String> = memory
            .keys()
            .into_iter()
            .filter(|key| key.contains("/blocks/"))
            .collect();
        assert!(!blocks.is_empty());
        let sealer = keys.map(crate::crypto::Sealer::new);
        for key in blocks {
            let mut stored = memory.object(&key).expect("listed");
            if let Some(sealer) = &sealer {
                stored = sealer
                    .open(&key, &stored)
                    .expect("opens with the database's key");
            }
            let framed = stored.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
            assert_eq!(framed, codec != Codec::Raw, "{key}");
        }
    }

    #[test]
    fn file_matches_a_plain_vector_small_blocks() {
        run_model(0x9e37_79b9_7f4a_7c15, 512, 1 << 20);
    }

    #[test]
    fn file_matches_a_plain_vector_compressed() {
        run_model_stored(0x0123_4567_89ab_cdef, 1024, 2048, Codec::Zstd(3), None);
    }

    #[test]
    fn file_matches_a_plain_vector_encrypted_and_compressed() {
        for codec in [Codec::Raw, Codec::Zstd(3)] {
            run_model_stored(0x005e_ed0f_c1de, 1024, 2048, codec, Some(keys(TEST_KEY)));
        }
    }

    const TEST_KEY: &str = "8d1f6c2a4b3e5f7081920a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
    const OTHER_KEY: &str = "11223344556677889900aabbccddeeff11223344556677889900aabbccddeeff";

    fn keys(hex: &str) -> Keyring {
        let key = crate::crypto::Key::from_hex(hex).expect("key");
        Keyring::new(vec![key], "S3VFS_ENCRYPTION_KEY").expect("ring")
    }

    #[test]
    fn an_encrypted_database_opens_only_with_its_key_and_a_plain_one_only_without() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let plain_config = config(4096, 1 << 20);
        let mut config = plain_config.clone();
        config.encryption = Some(keys(TEST_KEY));
        let database = Database::with_backend(&config, backend.clone(), RetryPolicy::default())
            .expect("opens");
        let mut file = DbFile::new(database, Duration::ZERO);
        file.lock(LockLevel::Shared).expect("locks").expect("free");
        file.lock(LockLevel::Reserved)
            .expect("locks")
            .expect("free");
        file.write(ByteOffset(0), &[7u8; 8192]).expect("writes");
        file.sync().expect("commits");
        file.unlock(LockLevel::None);
        let open = |keys: Option<Keyring>| {
            let mut config = config.clone();
            config.encryption = keys;
            Database::with_backend(&config, backend.clone(), RetryPolicy::default())
        };
        for (keys, expected) in [
            (None, "set its key in S3VFS_ENCRYPTION_KEY"),
            (
                Some(keys(OTHER_KEY)),
                "is encrypted with the key of fingerprint",
            ),
        ] {
            let error = open(keys).err().expect("refused");
            assert!(matches!(error, Error::Encryption(_)), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains(&TEST_KEY[..16]), "{message}");
            assert!(!message.contains(&OTHER_KEY[..16]), "{message}");
        }
        // The head hint damaged on the way is only a missed hint, and a damaged record is
        // fetched again.
        let head = crate::runtime::block_on({
            let backend = backend.clone();
            async move { Ok(backend.get("model.db/head").await?) }
        });
        assert!(
            head.expect("reads").is_some(),
            "the first commit writes the head"
        );
        let faulty = Arc::new(crate::backend::faulty::FaultyBackend::new(backend.clone()));
        // Past the line, so that the seal's checksum fails, not its line.
        for _ in ["head", "record"] {
            faulty.inject("GET", crate::backend::faulty::Fault::FlipByteAt(70));
        }
        let damaged = Database::with_backend(&config, faulty, RetryPolicy::default())
            .expect("opens despite a damaged head");
        assert_eq!(damaged.latest().size, 8192);
        let reopened = open(Some(keys(TEST_KEY))).expect("opens with its key");
        let stats = reopened.stats();
        assert_eq!(stats.encryption, "aes-256-gcm");
        let fingerprint = keys(TEST_KEY).fingerprints().next().map(|f| f.to_string());
        assert_eq!(stats.key_fingerprint, fingerprint);
        let mut file = DbFile::new(reopened, Duration::ZERO);
        assert_eq!(read_all(&mut file), vec![7u8; 8192]);

        // A plain database is refused by a process with a key, which names the way out.
        let plain: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let database = Database::with_backend(&plain_config, plain.clone(), RetryPolicy::default())
            .expect("opens");
        let mut file = DbFile::new(database, Duration::ZERO);
        file.lock(LockLevel::Shared).expect("locks").expect("free");
        file.lock(LockLevel::Reserved)
            .expect("locks")
            .expect("free");
        file.write(ByteOffset(0), &[1u8; 4096]).expect("writes");
        file.sync().expect("commits");
        file.unlock(LockLevel::None);
        let error = Database::with_backend(&config, plain, RetryPolicy::default())
            .err()
            .expect("refused");
        assert!(error.to_string().contains("encryption=none"), "{error}");
    }

    #[test]
    fn file_matches_a_plain_vector_with_spills() {
        // A cache this small makes writes spill to the store before commit.
        run_model(0xdead_beef_cafe_f00d, 1024, 2048);
    }

    /// Commits `content` as the first version of a fresh database with 512-byte blocks.
    fn committed_file(
        content: &[u8],
        cache_size: u64,
    ) -> (Arc<dyn Backend>, Arc<Database>, DbFile) {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let database = Database::with_backend(
            &config(512, cache_size),
            backend.clone(),
            RetryPolicy::default(),
        )
        .expect("opens");
        let mut file = DbFile::new(database.clone(), Duration::ZERO);
        file.lock(LockLevel::Exclusive)
            .expect("locks")
            .expect("not busy");
        file.write(ByteOffset(0), content).expect("writes");
        file.sync().expect("commits");
        assert_eq!(database.version().0, 1);
        (backend, database, file)
    }

    #[test]
    fn commits_that_leave_the_change_counter_alone_are_published() {
        // In locking_mode=EXCLUSIVE, SQLite moves the change counter only in the first commit
        // of the lock: the ones after it must be published all the same.
        let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        for cache_size in [1 << 20, 2048] {
            let (backend, database, mut file) = committed_file(&content, cache_size);
            let mut expected = content.clone();
            for (round, offset) in [100usize, 1500, 3000].into_iter().enumerate() {
                let data = vec![0xA0 + round as u8; 700];
                expected[offset..offset + 700].copy_from_slice(&data);
                file.write(ByteOffset(offset as u64), &data)
                    .expect("writes");
                file.sync().expect("commits");
                assert_eq!(database.version().0, 2 + round as u64, "cache {cache_size}");
            }
            let reopened =
                Database::with_backend(&config(512, cache_size), backend, RetryPolicy::default())
                    .expect("reopens");
            let mut reader = DbFile::new(reopened, Duration::ZERO);
            assert_eq!(read_all(&mut reader), expected, "cache {cache_size}");
        }
    }

    #[test]
    fn a_sync_that_restores_the_committed_content_commits_nothing() {
        // SQLite's rollback of a transaction whose pages reached the file: it writes the
        // journal's pages back, then syncs. With a tiny cache the changes spill to the store
        // first, and the comparison must read them back.
        let content: Vec<u8> = (0..8192u32).map(|i| (i % 249) as u8).collect();
        for cache_size in [1 << 20, 1024] {
            let (_backend, database, mut file) = committed_file(&content, cache_size);
            file.write(ByteOffset(600), &[1u8; 5000]).expect("writes");
            file.write(ByteOffset(24), &[9u8; 4]).expect("writes");
            file.truncate(3000).expect("truncates");
            file.truncate(8192).expect("extends");
            file.write(ByteOffset(0), &content)
                .expect("plays the journal back");
            file.sync().expect("syncs");
            assert_eq!(
                database.version().0,
                1,
                "cache {cache_size}: nothing committed"
            );
            assert_eq!(read_all(&mut file), content);
        }
    }

    #[test]
    fn a_commit_that_changes_nothing_creates_no_version() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let database =
            Database::with_backend(&config(512, 1 << 20), backend, RetryPolicy::default())
                .expect("opens");
        let mut file = DbFile::new(database.clone(), Duration::ZERO);
        file.lock(LockLevel::Reserved)
            .expect("locks")
            .expect("not busy");
        file.write(ByteOffset(0), &[7u8; 700]).expect("writes");
        file.sync().expect("commits");
        assert_eq!(database.version().0, 1);
        file.write(ByteOffset(0), &[7u8; 700]).expect("writes");
        file.sync().expect("commits");
        assert_eq!(database.version().0, 1);
    }

    /// A store that counts GETs and the most that were in flight at once.
    #[derive(Default)]
    struct Gauge {
        inner: MemoryBackend,
        in_flight: std::sync::atomic::AtomicUsize,
        peak: std::sync::atomic::AtomicUsize,
        gets: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Backend for Gauge {
        fn bucket(&self) -> &str {
            self.inner.bucket()
        }
        async fn get(&self, key: &str) -> crate::backend::BackendResult<Option<Bytes>> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            self.gets.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            let result = self.inner.get(key).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        }
        async fn put(&self, key: &str, body: Bytes) -> crate::backend::BackendResult<()> {
            self.inner.put(key, body).await
        }
        async fn put_if_absent(
            &self,
            key: &str,
            body: Bytes,
        ) -> crate::backend::BackendResult<crate::backend::PutOutcome> {
            self.inner.put_if_absent(key, body).await
        }
        async fn list(
            &self,
            prefix: &str,
            start_after: Option<&str>,
        ) -> crate::backend::BackendResult<Vec<crate::backend::ObjectInfo>> {
            self.inner.list(prefix, start_after).await
        }
        async fn delete(&self, keys: &[String]) -> crate::backend::BackendResult<()> {
            self.inner.delete(keys).await
        }
    }

    /// Writes `blocks` blocks of 512 bytes through one database, then opens a second one
    /// (a cold cache) on the same store.
    fn cold_file(blocks: u64) -> (Arc<Gauge>, DbFile, Vec<u8>) {
        let gauge = Arc::new(Gauge::default());
        let content: Vec<u8> = (0..blocks * 512).map(|i| (i * 7 % 251) as u8).collect();
        let writer =
            Database::with_backend(&config(512, 1 << 20), gauge.clone(), RetryPolicy::default())
                .expect("opens");
        let mut file = DbFile::new(writer, Duration::ZERO);
        file.lock(LockLevel::Reserved)
            .expect("locks")
            .expect("not busy");
        file.write(ByteOffset(0), &content).expect("writes");
        file.sync().expect("commits");
        file.unlock(LockLevel::None);
        let reader =
            Database::with_backend(&config(512, 1 << 20), gauge.clone(), RetryPolicy::default())
                .expect("opens");
        let mut file = DbFile::new(reader, Duration::ZERO);
        file.lock(LockLevel::Shared)
            .expect("locks")
            .expect("not busy");
        gauge.gets.store(0, Ordering::SeqCst);
        gauge.peak.store(0, Ordering::SeqCst);
        (gauge, file, content)
    }

    #[test]
    fn sequential_reads_fetch_ahead_concurrently_and_fetch_each_block_once() {
        let (gauge, mut file, content) = cold_file(100);
        let mut page = [0u8; 256];
        for (number, expected) in content.chunks(256).enumerate() {
            file.read(ByteOffset(number as u64 * 256), &mut page)
                .expect("reads");
            assert_eq!(&page[..], expected);
        }
        assert_eq!(gauge.gets.load(Ordering::SeqCst), 100, "each block once");
        assert!(
            gauge.peak.load(Ordering::SeqCst) >= 16,
            "read-ahead keeps requests in flight: peak {}",
            gauge.peak.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn a_cache_too_small_for_read_ahead_reads_one_block_at_a_time() {
        let mut read_ahead = ReadAhead::default();
        for block in 0..5 {
            let window = read_ahead.record(BlockIndex(block), BlockIndex(block), 1);
            assert!(window <= 1, "window {window} with a limit of 1");
        }
        let mut read_ahead = ReadAhead::default();
        for block in 0..5 {
            read_ahead.record(BlockIndex(block), BlockIndex(block), 0);
        }
    }

    #[test]
    fn random_reads_fetch_only_what_they_read() {
        let (gauge, mut file, content) = cold_file(100);
        let mut page = [0u8; 512];
        let order = [0u64, 40, 3, 77, 12, 50, 99, 25, 60, 8];
        for block in order {
            file.read(ByteOffset(block * 512), &mut page)
                .expect("reads");
            assert_eq!(&page[..], &content[block as usize * 512..][..512]);
        }
        assert_eq!(gauge.gets.load(Ordering::SeqCst), order.len());
        assert_eq!(gauge.peak.load(Ordering::SeqCst), 1);
    }

    /// A database image of `pages` pages of 512 bytes, each an interior table page (as far as
    /// its type byte goes) carrying its own number.
    fn interior_image(pages: u32) -> Vec<u8> {
        let mut image = vec![0u8; pages as usize * 512];
        image[..16].copy_from_slice(b"SQLite format 3\0");
        image[16..18].copy_from_slice(&512u16.to_be_bytes());
        for number in 1..=pages {
            let start = (number as usize - 1) * 512;
            image[if number == 1 { start + 100 } else { start }] = 0x05;
            image[start + 200..start + 204].copy_from_slice(&number.to_be_bytes());
        }
        image
    }

    fn commit_write(file: &mut DbFile, offset: u64, data: &[u8]) {
        file.lock(LockLevel::Reserved)
            .expect("locks")
            .expect("not busy");
        file.write(ByteOffset(offset), data).expect("writes");
        file.sync().expect("commits");
        file.unlock(LockLevel::None);
    }

    /// A new process's database of 1024-byte blocks on `gauge`, its cache cold.
    fn fresh_database(gauge: &Arc<Gauge>) -> Arc<Database> {
        Database::with_backend(
            &config(1024, 1 << 20),
            gauge.clone(),
            RetryPolicy::default(),
        )
        .expect("opens")
    }

    /// A new process's view: a database with a cold cache, in a read transaction.
    fn cold_reader(gauge: &Arc<Gauge>) -> DbFile {
        let mut file = DbFile::new(fresh_database(gauge), Duration::ZERO);
        file.lock(LockLevel::Shared)
            .expect("locks")
            .expect("not busy");
        gauge.gets.store(0, Ordering::SeqCst);
        file
    }

    #[test]
    fn cold_reads_take_interior_pages_from_the_index_and_never_a_stale_one() {
        let gauge = Arc::new(Gauge::default());
        let mut model = interior_image(64);
        let mut writer = DbFile::new(fresh_database(&gauge), Duration::ZERO);
        commit_write(&mut writer, 0, &model);
        assert!(
            writer.snapshot().interior > 0,
            "the first checkpoint has an index"
        );

        // The first miss loads the index beside the block it fetches; later pages of other
        // blocks come from the index.
        let mut reader = cold_reader(&gauge);
        let mut page = [0u8; 512];
        for number in (1..=21u64).step_by(2) {
            reader
                .read(ByteOffset((number - 1) * 512), &mut page)
                .expect("reads");
            assert_eq!(&page[..], &model[(number as usize - 1) * 512..][..512]);
        }
        assert_eq!(
            gauge.gets.load(Ordering::SeqCst),
            2,
            "block 0 and the index"
        );
        assert_eq!(reader.database().stats().interior.hits, 10);

        // A page whose block changed since the checkpoint is read from its block.
        model[2 * 512 + 300] = 0xee;
        commit_write(&mut writer, 2 * 512 + 300, &[0xee]);
        reader.unlock(LockLevel::None);
        reader
            .lock(LockLevel::Shared)
            .expect("locks")
            .expect("not busy");
        reader.read(ByteOffset(2 * 512), &mut page).expect("reads");
        assert_eq!(&page[..], &model[2 * 512..][..512]);
        // (Blocks 2 and 3 came along by read-ahead: reads moved on from block 0 to 1.)
        reader.read(ByteOffset(14 * 512), &mut page).expect("reads");
        assert_eq!(&page[..], &model[14 * 512..][..512]);
        assert_eq!(reader.database().stats().interior.hits, 11);

        // Across a checkpoint, the writer's index carries what is still valid and what it
        // holds: a new process reads every page right, from one block and the index.
        let mut round = 0u64;
        while writer.snapshot().base_version != writer.snapshot().version {
            round += 1;
            let offset = (round % 60 + 2) * 512 + 400;
            model[offset as usize] = round as u8;
            commit_write(&mut writer, offset, &[round as u8]);
        }
        assert!(writer.snapshot().version.0 > 50, "a checkpoint was due");
        let mut reader = cold_reader(&gauge);
        for number in 1..=64u64 {
            reader
                .read(ByteOffset((number - 1) * 512), &mut page)
                .expect("reads");
            assert_eq!(
                &page[..],
                &model[(number as usize - 1) * 512..][..512],
                "page {number}"
            );
        }
        assert_eq!(
            gauge.gets.load(Ordering::SeqCst),
            2,
            "block 0 and the index"
        );

        // Without the index, every block is fetched.
        let mut reader = cold_reader(&gauge).with_interior_index(false);
        for number in (1..=64u64).step_by(2) {
            reader
                .read(ByteOffset((number - 1) * 512), &mut page)
                .expect("reads");
        }
        assert_eq!(gauge.gets.load(Ordering::SeqCst), 32);

        // An index that is gone (or damaged) only costs the blocks.
        let snapshot = writer.snapshot().clone();
        let key = writer
            .database()
            .location
            .interior_key(snapshot.base_version, snapshot.base_txid);
        gauge.inner.set_object(&key, Bytes::from_static(b"damaged"));
        let mut reader = cold_reader(&gauge);
        for number in 1..=64u64 {
            reader
                .read(ByteOffset((number - 1) * 512), &mut page)
                .expect("reads");
            assert_eq!(&page[..], &model[(number as usize - 1) * 512..][..512]);
        }
        let stats = reader.database().stats().interior;
        assert_eq!((stats.loads, stats.hits), (0, 0));
    }
}
