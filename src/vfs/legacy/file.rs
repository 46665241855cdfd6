//! A file of the sqlite-s3vfs layout as one connection sees it: a database, with SQLite's locks
//! among the connections of this process, or its rollback journal.
//!
//! Reads come from the objects the last LIST named (listed when the file opens and again when
//! each read transaction starts), through the block cache keyed by content, and the blocks a
//! read touches are fetched concurrently. Writes are kept as whole blocks and uploaded
//! together, in parallel, when SQLite syncs the file (or earlier, to bound memory); objects
//! past a truncation are deleted after the uploads. A journal's first block, which holds the
//! header that makes a journal hot, is uploaded only after every other block of its sync.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use super::{content_tag, Listed, Listing, JOURNAL_SUFFIX};
use crate::cache::BlockKey;
use crate::error::Result;
use crate::runtime;
use crate::storage::{BlockIndex, BlockSize, ByteOffset};
use crate::vfs::file::{copy_piece, ReadOutcome};
use crate::vfs::lock::{Busy, Holder, LockLevel};
use crate::vfs::Database;

/// Which file of a database this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Database,
    Journal,
}

pub struct LegacyFile {
    database: Arc<Database>,
    /// The file's name: its objects are `name/{index:010}`.
    name: String,
    role: Role,
    block_size: BlockSize,
    /// The objects as the last LIST or this file's last flush left them.
    listing: Listing,
    /// Blocks changed since the last flush, each as long as the block is in the file now.
    dirty: BTreeMap<BlockIndex, Vec<u8>>,
    dirty_bytes: u64,
    size: u64,
    /// The smallest size since the last flush: listed blocks at or past it are cut off.
    floor: u64,
    holder: Holder,
    level: LockLevel,
}

impl LegacyFile {
    /// Opens the database `database` names, or its journal, listing its objects.
    pub fn open(database: Arc<Database>, role: Role) -> Result<LegacyFile> {
        let name = match role {
            Role::Database => database.location.prefix.clone(),
            Role::Journal => format!("{}{JOURNAL_SUFFIX}", database.location.prefix),
        };
        let mut file = LegacyFile {
            block_size: database.latest().block_size,
            holder: Holder::new(database.clone()),
            database,
            name,
            role,
            listing: Listing::default(),
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            size: 0,
            floor: 0,
            level: LockLevel::None,
        };
        file.refresh()?;
        Ok(file)
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the file has any object.
    pub fn exists(&self) -> bool {
        !self.listing.blocks.is_empty() || !self.dirty.is_empty()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Lists the file again; what this connection changed and did not flush is dropped.
    fn refresh(&mut self) -> Result<()> {
        let (backend, name, block_size) =
            (self.database.backend(), self.name.clone(), self.block_size);
        self.listing =
            runtime::block_on(async move { super::list(&backend, &name, block_size).await })?;
        self.discard();
        Ok(())
    }

    fn discard(&mut self) {
        self.dirty.clear();
        self.dirty_bytes = 0;
        self.size = self.listing.size();
        self.floor = self.size;
        if self.role == Role::Database {
            self.database.set_legacy_size(self.size);
        }
    }

    fn block_len(&self, index: BlockIndex) -> u64 {
        self.block_size.block_len(index, self.size)
    }

    /// The listed object of block `index` if its bytes are still part of the file.
    fn committed(&self, index: BlockIndex) -> Option<Listed> {
        if index.0 >= self.block_size.block_count(self.floor) {
            return None;
        }
        self.listing.blocks.get(index.0 as usize).copied()
    }

    /// The current content of blocks `indexes`, each at most as long as the block is now.
    fn view_blocks(&self, indexes: &[BlockIndex]) -> Result<Vec<Bytes>> {
        let mut tagged = Vec::new();
        let mut untagged = Vec::new();
        for index in indexes {
            if self.dirty.contains_key(index) {
                continue;
            }
            if let Some(listed) = self.committed(*index) {
                match listed.tag {
                    Some(tag) => tagged.push((*index, listed.len, tag)),
                    None => untagged.push((*index, listed.len)),
                }
            }
        }
        let mut fetched: BTreeMap<BlockIndex, Bytes> = BTreeMap::new();
        if !tagged.is_empty() {
            let keys: Vec<BlockKey> = tagged
                .iter()
                .map(|(index, _, tag)| BlockKey {
                    index: *index,
                    txid: *tag,
                })
                .collect();
            let lengths: BTreeMap<BlockKey, u64> = keys
                .iter()
                .zip(&tagged)
                .map(|(key, (_, len, _))| (*key, *len))
                .collect();
            let (backend, name) = (self.database.backend(), self.name.clone());
            let blocks = self.database.cached_blocks(&keys, |missing| {
                let wanted: Vec<(BlockIndex, u64)> = missing
                    .iter()
                    .map(|key| (key.index, lengths.get(key).copied().unwrap_or_default()))
                    .collect();
                let data = runtime::block_on(async move {
                    super::fetch_blocks(&backend, &name, wanted).await
                })?;
                // Only content whose tag is the listed one may be cached under that tag.
                Ok(missing
                    .iter()
                    .zip(data)
                    .map(|(key, data)| {
                        if content_tag(&data) == key.txid {
                            Ok(data)
                        } else {
                            Err(crate::error::Error::Corrupt {
                                key: super::block_key(&self.name, key.index),
                                why: "its content is not what the listing's ETag says: another \
                                      process changed the database during the transaction \
                                      (the sqlite-s3vfs layout has no locking between processes)"
                                    .into(),
                            })
                        }
                    })
                    .collect())
            })?;
            fetched.extend(tagged.iter().map(|(index, _, _)| *index).zip(blocks));
        }
        if !untagged.is_empty() {
            let (backend, name) = (self.database.backend(), self.name.clone());
            let indexes: Vec<BlockIndex> = untagged.iter().map(|(index, _)| *index).collect();
            let blocks =
                runtime::block_on(
                    async move { super::fetch_blocks(&backend, &name, untagged).await },
                )?;
            fetched.extend(indexes.into_iter().zip(blocks));
        }
        Ok(indexes
            .iter()
            .map(|index| match self.dirty.get(index) {
                Some(data) => Bytes::copy_from_slice(data),
                None => fetched.get(index).cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// Reads `buffer.len()` bytes at `offset`; past the end of the file the buffer is zeroed.
    pub fn read(&mut self, offset: ByteOffset, buffer: &mut [u8]) -> Result<ReadOutcome> {
        buffer.fill(0);
        let available = self.size.saturating_sub(offset.0).min(buffer.len() as u64) as usize;
        let pieces = self.block_size.pieces(offset, available);
        let indexes: Vec<BlockIndex> = pieces.iter().map(|piece| piece.block).collect();
        let views = self.view_blocks(&indexes)?;
        for (piece, view) in pieces.iter().zip(views) {
            copy_piece(buffer, piece, &view);
        }
        Ok(ReadOutcome::of(available, buffer.len()))
    }

    /// Makes blocks `indexes` dirty, as long as they are in the file now, loading what they
    /// held unless they are in `whole` (about to be overwritten entirely).
    fn make_dirty(&mut self, indexes: &[BlockIndex], whole: &BTreeSet<BlockIndex>) -> Result<()> {
        let load: Vec<BlockIndex> = indexes
            .iter()
            .copied()
            .filter(|index| !self.dirty.contains_key(index) && !whole.contains(index))
            .collect();
        let views = self.view_blocks(&load)?;
        let mut loaded: BTreeMap<BlockIndex, Bytes> = load.into_iter().zip(views).collect();
        for index in indexes {
            let len = self.block_len(*index) as usize;
            if let Some(data) = self.dirty.get_mut(index) {
                if data.len() != len {
                    self.dirty_bytes = self.dirty_bytes + len as u64 - data.len() as u64;
                    data.resize(len, 0);
                }
                continue;
            }
            let mut data = vec![0u8; len];
            if let Some(view) = loaded.remove(index) {
                let keep = view.len().min(len);
                data[..keep].copy_from_slice(&view[..keep]);
            }
            self.dirty_bytes += len as u64;
            self.dirty.insert(*index, data);
        }
        Ok(())
    }

    /// Cuts or extends the file to `size` bytes; bytes it gains are zeros.
    fn set_len(&mut self, size: u64) -> Result<()> {
        let old = self.size;
        let block = self.block_size.bytes();
        if size > old {
            // The old last block grows to full (or to the new end), new blocks are zeros:
            // every block but the last stays full, as the layout requires.
            self.size = size;
            let indexes: Vec<BlockIndex> = (old / block..self.block_size.block_count(size))
                .map(BlockIndex)
                .collect();
            let whole: BTreeSet<BlockIndex> = indexes
                .iter()
                .copied()
                .filter(|index| self.committed(*index).is_none())
                .collect();
            return self.make_dirty(&indexes, &whole);
        }
        if size < old {
            let count = self.block_size.block_count(size);
            if !size.is_multiple_of(block) {
                self.make_dirty(&[BlockIndex(count - 1)], &BTreeSet::new())?;
            }
            let cut: Vec<BlockIndex> = self
                .dirty
                .range(BlockIndex(count)..)
                .map(|(index, _)| *index)
                .collect();
            for index in cut {
                if let Some(data) = self.dirty.remove(&index) {
                    self.dirty_bytes -= data.len() as u64;
                }
            }
            self.size = size;
            self.floor = self.floor.min(size);
            if let Some(data) = self.dirty.get_mut(&BlockIndex(count.saturating_sub(1))) {
                let len = self.block_size.block_len(BlockIndex(count - 1), size) as usize;
                self.dirty_bytes -= (data.len() - len.min(data.len())) as u64;
                data.truncate(len);
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub fn write(&mut self, offset: ByteOffset, data: &[u8]) -> Result<()> {
        let end = offset.0 + data.len() as u64;
        if end > self.size {
            self.set_len(end)?;
        }
        let pieces = self.block_size.pieces(offset, data.len());
        let indexes: Vec<BlockIndex> = pieces.iter().map(|piece| piece.block).collect();
        let whole: BTreeSet<BlockIndex> = pieces
            .iter()
            .filter(|piece| {
                piece.within == 0 && piece.buffer.len() as u64 == self.block_len(piece.block)
            })
            .map(|piece| piece.block)
            .collect();
        self.make_dirty(&indexes, &whole)?;
        for piece in &pieces {
            if let Some(block) = self.dirty.get_mut(&piece.block) {
                block[piece.within..piece.within + piece.buffer.len()]
                    .copy_from_slice(&data[piece.buffer.clone()]);
            }
        }
        let limit = (self.database.cache_size / 4).max(8 * self.block_size.bytes());
        if self.dirty_bytes > limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Cuts or extends the file. A journal's truncation is applied at once: in
    /// `journal_mode=TRUNCATE` it is the commit, and SQLite may not sync after it.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        self.set_len(size)?;
        if self.role == Role::Journal {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every change durable in the store before returning, which is what SQLite's
    /// ordering (journal synced before the database is written) relies on across processes.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()
    }

    /// Uploads the changed blocks in parallel, then deletes the objects past the end.
    pub fn flush(&mut self) -> Result<()> {
        let count = self.block_size.block_count(self.size);
        let listed = self.listing.blocks.len() as u64;
        let mut uploads: Vec<(BlockIndex, Bytes)> = Vec::new();
        for (index, data) in &self.dirty {
            let tag = content_tag(data);
            let unchanged = self
                .committed(*index)
                .is_some_and(|listed| listed.len == data.len() as u64 && listed.tag == Some(tag));
            if !unchanged {
                uploads.push((*index, Bytes::copy_from_slice(data)));
            }
        }
        if uploads.is_empty() && listed <= count {
            self.discard();
            return Ok(());
        }
        let header = match self.role {
            Role::Journal => uploads
                .iter()
                .position(|(index, _)| index.0 == 0)
                .map(|position| uploads.remove(position)),
            Role::Database => None,
        };
        let written: Vec<(BlockIndex, Bytes)> =
            uploads.iter().cloned().chain(header.clone()).collect();
        let (backend, name) = (self.database.backend(), self.name.clone());
        runtime::block_on(async move {
            super::upload_blocks(&backend, &name, uploads).await?;
            if let Some(header) = header {
                super::upload_blocks(&backend, &name, vec![header]).await?;
            }
            super::delete_blocks(&backend, &name, count..listed).await
        })?;
        let mut blocks = Vec::with_capacity(count as usize);
        for index in 0..count {
            let index = BlockIndex(index);
            let block = match self.dirty.get(&index) {
                Some(data) => Listed {
                    len: data.len() as u64,
                    tag: Some(content_tag(data)),
                },
                None => self
                    .listing
                    .blocks
                    .get(index.0 as usize)
                    .copied()
                    .unwrap_or(Listed { len: 0, tag: None }),
            };
            blocks.push(block);
        }
        for (index, data) in written {
            let key = BlockKey {
                index,
                txid: content_tag(&data),
            };
            self.database.remember_block(key, data);
        }
        self.listing = Listing { blocks };
        self.discard();
        Ok(())
    }

    /// Takes lock `level`; a read transaction that starts lists the file again.
    pub fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>> {
        if level <= self.level {
            return Ok(Ok(()));
        }
        if let Err(busy) = self.holder.lock(level) {
            return Ok(Err(busy));
        }
        if self.level == LockLevel::None {
            if let Err(error) = self.refresh() {
                self.holder.unlock(LockLevel::None);
                return Err(error);
            }
        }
        self.level = level;
        Ok(Ok(()))
    }

    /// Lowers the lock to `level`, first uploading any change SQLite made without syncing.
    pub fn unlock(&mut self, level: LockLevel) -> Result<()> {
        if level >= self.level {
            return Ok(());
        }
        let flushed = self.flush();
        if flushed.is_err() {
            self.discard();
        }
        self.holder.unlock(level);
        self.level = level;
        flushed
    }

    pub fn reserved(&self) -> bool {
        self.database.locks.lock().reserved()
    }

    /// Uploads what is left and releases the locks.
    pub fn close(&mut self) -> Result<()> {
        let flushed = self.flush();
        self.holder.unlock(LockLevel::None);
        self.level = LockLevel::None;
        flushed
    }
}

impl crate::vfs::handle::File for LegacyFile {
    fn database(&self) -> &Arc<Database> {
        LegacyFile::database(self)
    }
    fn read(&mut self, offset: ByteOffset, buffer: &mut [u8]) -> Result<ReadOutcome> {
        LegacyFile::read(self, offset, buffer)
    }
    fn write(&mut self, offset: ByteOffset, data: &[u8]) -> Result<()> {
        LegacyFile::write(self, offset, data)
    }
    fn truncate(&mut self, size: u64) -> Result<()> {
        LegacyFile::truncate(self, size)
    }
    fn sync(&mut self) -> Result<()> {
        LegacyFile::sync(self)
    }
    fn size(&self) -> u64 {
        LegacyFile::size(self)
    }
    fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>> {
        LegacyFile::lock(self, level)
    }
    fn unlock(&mut self, level: LockLevel) -> Result<()> {
        LegacyFile::unlock(self, level)
    }
    fn reserved(&self) -> bool {
        LegacyFile::reserved(self)
    }
    fn close(&mut self) -> Result<()> {
        LegacyFile::close(self)
    }
    /// Not SAFE_APPEND, so that SQLite writes a journal's header only after its records are
    /// synced, as it does for the Python package.
    fn capabilities(&self) -> crate::vfs::handle::Capabilities {
        crate::vfs::handle::Capabilities { safe_append: false }
    }
}

#[cfg(test)]
mod tests {
    //! A model test: random writes, truncates, syncs and transactions through a LegacyFile on
    //! the in-memory store, checked against a plain Vec<u8>, and the stored objects checked
    //! against the layout (every block full but the last, size = sum of sizes).
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::retry::RetryPolicy;
    use crate::backend::Backend;
    use crate::config::Config;

    use crate::testing::Rng;

    fn config(block_size: u64, cache_size: u64) -> Config {
        let parameters = [
            ("bucket".to_string(), "memory".to_string()),
            ("layout".to_string(), "sqlite-s3vfs".to_string()),
            ("block_size".to_string(), block_size.to_string()),
            ("cache_size".to_string(), cache_size.to_string()),
        ];
        Config::parse("model.db", &parameters, |_| None).expect("valid")
    }

    fn read_all(file: &mut LegacyFile) -> Vec<u8> {
        let mut buffer = vec![0u8; file.size() as usize];
        file.read(ByteOffset(0), &mut buffer).expect("reads");
        buffer
    }

    /// The file as the Python package reads it: block objects concatenated.
    fn stored(memory: &MemoryBackend, name: &str, block_size: u64) -> Vec<u8> {
        let prefix = format!("{name}/");
        let keys: Vec<String> = memory
            .keys()
            .into_iter()
            .filter(|key| key.starts_with(&prefix))
            .collect();
        let mut data = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(
                key,
                &super::super::block_key(name, BlockIndex(index as u64))
            );
            let body = memory.object(key).expect("listed");
            if index + 1 < keys.len() {
                assert_eq!(body.len() as u64, block_size, "{key} must be a full block");
            }
            data.extend_from_slice(&body);
        }
        data
    }

    fn run_model(seed: u64, block_size: u64, cache_size: u64) {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let config = config(block_size, cache_size);
        let database = Database::with_backend(&config, backend.clone(), RetryPolicy::default())
            .expect("opens");
        let mut file = LegacyFile::open(database.clone(), Role::Database).expect("opens");
        let mut rng = Rng(seed);
        let mut current: Vec<u8> = Vec::new();
        for step in 0..300 {
            file.lock(LockLevel::Shared)
                .expect("locks")
                .expect("not busy");
            assert_eq!(
                read_all(&mut file),
                current,
                "step {step}: at transaction start"
            );
            file.lock(LockLevel::Exclusive)
                .expect("locks")
                .expect("not busy");
            for _ in 0..rng.below(6) {
                match rng.below(10) {
                    0 => {
                        let size = rng.below(current.len() as u64 + 3 * block_size);
                        current.resize(size as usize, 0);
                        file.truncate(size).expect("truncates");
                    }
                    1 => file.sync().expect("syncs"),
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
                assert_eq!(read_all(&mut file), current, "step {step}: inside");
            }
            if rng.below(2) == 0 {
                file.sync().expect("syncs");
                assert_eq!(
                    stored(&memory, "model.db", block_size),
                    current,
                    "step {step}"
                );
            }
            // Unlocking uploads whatever was not synced: the file is written in place.
            file.unlock(LockLevel::None).expect("unlocks");
            assert_eq!(
                stored(&memory, "model.db", block_size),
                current,
                "step {step}"
            );
            if rng.below(10) == 0 {
                // Another process writes the file as the package would: the next transaction
                // must see it, whatever this process cached.
                let mut other =
                    Database::with_backend(&config, backend.clone(), RetryPolicy::default())
                        .and_then(|database| LegacyFile::open(database, Role::Database))
                        .expect("opens");
                let offset = rng.below(current.len() as u64 + 1);
                let data = vec![rng.next() as u8; 1 + rng.below(block_size) as usize];
                if current.len() < offset as usize + data.len() {
                    current.resize(offset as usize + data.len(), 0);
                }
                current[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                other.write(ByteOffset(offset), &data).expect("writes");
                other.close().expect("closes");
            }
        }
        assert!(
            database.stats().cache.hits > 0,
            "blocks are served from the cache"
        );
    }

    #[test]
    fn file_matches_a_plain_vector_and_the_layout() {
        run_model(0x9e37_79b9_7f4a_7c15, 512, 1 << 20);
    }

    #[test]
    fn file_matches_with_early_uploads() {
        // A cache this small makes writes upload before the sync.
        run_model(0xdead_beef_cafe_f00d, 1024, 4096);
    }

    #[test]
    fn a_journal_truncation_is_applied_at_once() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let database =
            Database::with_backend(&config(512, 1 << 20), backend, RetryPolicy::default())
                .expect("opens");
        let mut journal = LegacyFile::open(database, Role::Journal).expect("opens");
        assert_eq!(journal.name(), "model.db-journal");
        journal.write(ByteOffset(0), &[9u8; 2000]).expect("writes");
        journal.sync().expect("syncs");
        assert_eq!(stored(&memory, "model.db-journal", 512), vec![9u8; 2000]);
        journal.truncate(0).expect("truncates");
        assert!(memory.keys().is_empty(), "{:?}", memory.keys());
    }
}
