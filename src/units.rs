//! The units every layer shares, so that none has to import another for them: block indexes,
//! byte offsets, versions, transaction ids and the block size, with the block arithmetic.

use std::fmt;

/// The index of a block within a database file: block `i` holds bytes
/// `i * block_size .. (i + 1) * block_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockIndex(pub u64);

/// A committed version of a database; version 0 is the empty database before any commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

/// A byte offset within a database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteOffset(pub u64);

/// The random identity of one transaction; the blocks it writes are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

impl TxId {
    /// A fresh identity, unique with overwhelming probability across processes and hosts.
    pub fn random() -> TxId {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        TxId(hasher.finish())
    }

    pub fn parse(text: &str) -> Option<TxId> {
        if text.len() != 16 {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(TxId)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The size of every block of a database but its last; a power of two, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSize(u32);

impl BlockSize {
    pub const MIN: u32 = 512;
    pub const MAX: u32 = 16 * 1024 * 1024;
    pub const DEFAULT: BlockSize = BlockSize(256 * 1024);
    /// The block size of the Python package sqlite-s3vfs, and so of `layout=sqlite-s3vfs`.
    pub const LEGACY_DEFAULT: BlockSize = BlockSize(4096);

    pub fn new(bytes: u64) -> Option<BlockSize> {
        let valid = bytes.is_power_of_two()
            && bytes >= u64::from(Self::MIN)
            && bytes <= u64::from(Self::MAX);
        valid.then_some(BlockSize(bytes as u32))
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.0)
    }

    /// How many blocks a file of `size` bytes has.
    pub fn block_count(self, size: u64) -> u64 {
        size.div_ceil(self.bytes())
    }

    /// The length of block `index` in a file of `size` bytes (0 past the end).
    pub fn block_len(self, index: BlockIndex, size: u64) -> u64 {
        let start = index.0.saturating_mul(self.bytes());
        size.saturating_sub(start).min(self.bytes())
    }

    /// The block holding `offset` and the offset within it.
    pub fn locate(self, offset: ByteOffset) -> (BlockIndex, u64) {
        (BlockIndex(offset.0 / self.bytes()), offset.0 % self.bytes())
    }

    /// The pieces of the byte range `offset .. offset + len`, one per block touched.
    pub fn pieces(self, offset: ByteOffset, len: usize) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut done = 0usize;
        while done < len {
            let (block, within) = self.locate(ByteOffset(offset.0 + done as u64));
            let take = ((self.bytes() - within) as usize).min(len - done);
            pieces.push(Piece {
                block,
                within: within as usize,
                buffer: done..done + take,
            });
            done += take;
        }
        pieces
    }
}

/// One block's share of a byte range: `buffer` of the caller's buffer maps to bytes
/// `within .. within + buffer.len()` of `block`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub block: BlockIndex,
    pub within: usize,
    pub buffer: std::ops::Range<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies `data` at `offset` into a model file through pieces, as the VFS does.
    fn write_through_pieces(model: &mut Vec<u8>, block_size: BlockSize, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        for piece in block_size.pieces(ByteOffset(offset), data.len()) {
            let start = piece.block.0 as usize * block_size.bytes() as usize + piece.within;
            model[start..start + piece.buffer.len()].copy_from_slice(&data[piece.buffer.clone()]);
        }
    }

    #[test]
    fn pieces_cover_the_range_exactly_once() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let block_size = BlockSize::new(512 << (next() % 6)).expect("valid size");
            let offset = next() % 50_000;
            let len = (next() % 20_000) as usize;
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut expected = vec![0u8; 70_000];
            expected[offset as usize..offset as usize + len].copy_from_slice(&data);
            let mut model = vec![0u8; 70_000];
            write_through_pieces(&mut model, block_size, offset, &data);
            assert_eq!(model, expected);
            let pieces = block_size.pieces(ByteOffset(offset), len);
            let total: usize = pieces.iter().map(|piece| piece.buffer.len()).sum();
            assert_eq!(total, len);
            for piece in &pieces {
                assert!(piece.within + piece.buffer.len() <= block_size.bytes() as usize);
            }
        }
    }

    #[test]
    fn block_lengths_add_up_to_the_file_size() {
        let block_size = BlockSize::new(4096).expect("valid");
        for size in [0u64, 1, 4095, 4096, 4097, 10 * 4096, 10 * 4096 + 7] {
            let count = block_size.block_count(size);
            let total: u64 = (0..count)
                .map(|i| block_size.block_len(BlockIndex(i), size))
                .sum();
            assert_eq!(total, size);
            assert_eq!(block_size.block_len(BlockIndex(count), size), 0);
        }
    }

    #[test]
    fn block_size_must_be_a_power_of_two_in_range() {
        assert!(BlockSize::new(4096).is_some());
        assert!(BlockSize::new(256).is_none());
        assert!(BlockSize::new(5000).is_none());
        assert!(BlockSize::new(32 * 1024 * 1024).is_none());
    }
}
