//! A file's transaction buffer: writes and truncates held as whole dirty blocks, spilled to
//! the store under the transaction's txid (invisible until its commit) when they outgrow a
//! quarter of the cache.

use super::*;

impl DbFile {
    pub(super) fn txn(&mut self) -> &mut Txn {
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
    pub(super) fn make_dirty(
        &mut self,
        indexes: &[BlockIndex],
        whole: &BTreeSet<BlockIndex>,
    ) -> Result<()> {
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
    pub(super) fn spill(&mut self) -> Result<()> {
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
}
