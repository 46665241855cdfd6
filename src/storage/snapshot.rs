//! A snapshot: the complete, immutable description of one committed version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::block::{BlockRef, Patch};
use super::codec::Codec;
use super::{BlockIndex, BlockSize, TxId, Version};

/// One committed version: its size and where the content of each block comes from.
///
/// The block map is a checkpoint (`base`) plus the changes since it (`changes`), the same
/// split as the commit records, so a refresh that stays on one checkpoint shares `base`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub version: Version,
    pub size: u64,
    pub block_size: BlockSize,
    pub txid: TxId,
    pub time_ms: u64,
    pub base_version: Version,
    pub base_txid: TxId,
    pub base: Arc<Vec<BlockRef>>,
    /// The length of the base checkpoint's interior-page index (`storage::interior`), 0 when
    /// it has none.
    pub interior: u64,
    pub changes: Arc<BTreeMap<BlockIndex, BlockRef>>,
    /// The pages this version's own commit record carries, so that a reader that already
    /// holds the previous content of a block can patch it instead of fetching it.
    pub patches: Arc<BTreeMap<BlockIndex, Patch>>,
    /// The collector's safety margin recorded in the database (see `format::RawRecord`).
    pub gc_margin: Duration,
    /// The storage format of this version's record: a commit on a format-1 version writes a
    /// format-2 checkpoint, so the database is upgraded whole.
    pub format: u32,
    /// How the database's objects are stored, fixed when it is created.
    pub codec: Codec,
}

impl Snapshot {
    /// The database before its first commit: no blocks, size 0.
    pub fn empty(block_size: BlockSize) -> Snapshot {
        Snapshot {
            version: Version(0),
            size: 0,
            block_size,
            txid: TxId(0),
            time_ms: 0,
            base_version: Version(0),
            base_txid: TxId(0),
            base: Arc::new(Vec::new()),
            interior: 0,
            changes: Arc::new(BTreeMap::new()),
            patches: Arc::new(BTreeMap::new()),
            gc_margin: Duration::from_millis(super::format::DEFAULT_GC_MARGIN_MS),
            format: super::FORMAT_VERSION,
            codec: Codec::Raw,
        }
    }

    pub fn block_count(&self) -> u64 {
        self.block_size.block_count(self.size)
    }

    /// Where block `index`'s content comes from, or `None` past the end of the file.
    pub fn block_ref(&self, index: BlockIndex) -> Option<&BlockRef> {
        if index.0 >= self.block_count() {
            return None;
        }
        self.changes
            .get(&index)
            .or_else(|| self.base.get(index.0 as usize))
    }

    /// The transaction that last changed block `index` (it names the block's content), or
    /// `None` past the end of the file.
    pub fn block_txid(&self, index: BlockIndex) -> Option<TxId> {
        self.block_ref(index).map(|entry| entry.txid)
    }

    /// The expected length of block `index` at this version.
    pub fn block_len(&self, index: BlockIndex) -> u64 {
        self.block_size.block_len(index, self.size)
    }

    /// The full block map, as a checkpoint stores it.
    pub fn full_map(&self) -> Vec<BlockRef> {
        (0..self.block_count())
            .map(|index| {
                self.block_ref(BlockIndex(index))
                    .cloned()
                    .unwrap_or_else(|| BlockRef::whole(TxId(0), None))
            })
            .collect()
    }
}
