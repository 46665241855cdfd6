//! A snapshot: the complete, immutable description of one committed version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{BlockIndex, BlockSize, TxId, Version};

/// One committed version: its size and which object holds each block.
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
    pub base: Arc<Vec<TxId>>,
    pub changes: Arc<BTreeMap<BlockIndex, TxId>>,
    /// The collector's safety margin recorded in the database (see `CommitRecord`).
    pub gc_margin: Duration,
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
            changes: Arc::new(BTreeMap::new()),
            gc_margin: Duration::from_millis(super::format::DEFAULT_GC_MARGIN_MS),
        }
    }

    pub fn block_count(&self) -> u64 {
        self.block_size.block_count(self.size)
    }

    /// The transaction whose object holds block `index`, or `None` past the end of the file.
    pub fn block_txid(&self, index: BlockIndex) -> Option<TxId> {
        if index.0 >= self.block_count() {
            return None;
        }
        self.changes
            .get(&index)
            .or_else(|| self.base.get(index.0 as usize))
            .copied()
    }

    /// The expected length of block `index`'s object.
    pub fn block_len(&self, index: BlockIndex) -> u64 {
        self.block_size.block_len(index, self.size)
    }

    /// The full block map, as a checkpoint stores it.
    pub fn full_map(&self) -> Vec<TxId> {
        (0..self.block_count())
            .map(|index| self.block_txid(BlockIndex(index)).unwrap_or(TxId(0)))
            .collect()
    }
}
