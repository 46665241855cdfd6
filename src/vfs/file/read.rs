//! A file's read path: whole blocks as the connection sees them (its transaction's, else the
//! pinned version's through the cache), pages from the interior-page index, read-ahead for
//! sequential readers and B-tree prefetch by levels.

use super::*;

impl DbFile {
    /// The current content of whole blocks, as this connection sees them (each at most
    /// `block_size` bytes; bytes past the returned length are zeros), except blocks dirty in
    /// memory, which come back empty.
    /// Committed blocks in `ahead` that are not dirty are fetched along (into the cache).
    pub(super) fn view_blocks(
        &self,
        indexes: &[BlockIndex],
        ahead: &[BlockIndex],
    ) -> Result<Vec<Bytes>> {
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
    pub(super) fn indexed_page(&self, offset: ByteOffset, len: usize) -> Option<Bytes> {
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

    /// B-tree prefetch (see [`crate::vfs::prefetch`]): when `page`, just read at `offset`, calls for
    /// a level of its tree, the level's blocks that are not cached are fetched in the
    /// background, if they fit within `prefetch_size` and a quarter of the cache. Only read
    /// transactions prefetch.
    pub(super) fn prefetch_level(&mut self, offset: ByteOffset, page: &[u8]) {
        if self.prefetch_size == 0 || self.level != LockLevel::Shared || self.txn.is_some() {
            return;
        }
        // Only a read of one whole page (never of 0 bytes) has a number.
        let Some(number) = page_number(offset, page.len()) else {
            return;
        };
        let len = page.len() as u64;
        let Ok(page_count) = u32::try_from(self.snapshot.size / len) else {
            return;
        };
        // Parsed before the tracker is locked: most pages are leaves, and cost no lock.
        let Some(children) = crate::vfs::prefetch::interior_children(number, page, page_count)
        else {
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
    pub(super) fn read_into(
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
            copy_piece(buffer, piece, view);
        }
        Ok(ReadOutcome::of(available, buffer.len()))
    }

    /// The blocks to fetch ahead of a read of `indexes`: none unless reading is sequential and
    /// the first block is a cache miss (then the following blocks are fetched in the same
    /// concurrent batch, and the reads after it hit the cache). The window is kept within a
    /// quarter of the cache, so that read-ahead never evicts what it fetched.
    pub(super) fn read_ahead(&mut self, indexes: &[BlockIndex]) -> Vec<BlockIndex> {
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
}
