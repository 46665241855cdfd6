//! A file's commit: the transaction handed to the commit protocol ([`log::commit`]) when
//! SQLite syncs, unless it changes nothing, and a shrink published after SQLite's commit.

use super::*;

impl DbFile {
    /// The blocks to upload for the new version: every dirty block, plus every block whose
    /// committed object no longer matches (cut, extended, or new and never written).
    pub(super) fn finish(&mut self) -> Result<Option<Transaction>> {
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
    pub(super) fn held_interior_pages(&self, transaction: &Transaction) -> Option<InteriorPages> {
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
    pub(super) fn changes_nothing(&mut self) -> Result<bool> {
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
    pub(super) fn publish(&mut self) -> Result<()> {
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
    pub(super) fn abandon(&mut self, error: Error) -> Error {
        self.txn = None;
        self.doomed = true;
        error
    }
}
