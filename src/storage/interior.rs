//! The interior-page index of a checkpoint: the interior B-tree pages of the database, each
//! tagged with the content name of the block that holds it, in one object beside the
//! checkpoint, so that a cold reader learns every level of every tree in one GET and a point
//! lookup fetches only its leaf.
//!
//! `P/checkpoints/{version}-{txid}.interior` is a format-2 envelope: a JSON header naming the
//! page size and each page's number and tag, the pages one after another, and a CRC-32 of
//! everything before it. A page is valid for a version exactly when the block holding it still
//! has the content its tag names there (blocks are immutable and named by the transaction that
//! last changed them), so an index is never wrong, only more or less complete: a reader checks
//! every page's tag against its own version and fetches the block of any page whose tag does
//! not match. The checkpoint header states the object's length; a checkpoint without one has
//! no index, and earlier builds ignore both.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::Codec;
use super::format::{corrupt, open_envelope, seal};
use super::{
    header_page_size, is_page_size, BlockIndex, BlockSize, Snapshot, TxId, SQLITE_HEADER_LEN,
    SQLITE_MAGIC,
};
use crate::error::Result;

/// An index holds at most this many bytes of pages (about 4,000 pages of 4 KiB, the interior
/// pages of a table of several gigabytes); a writer with more keeps the lowest page numbers.
pub const MAX_INDEX_BYTES: u64 = 16 * 1024 * 1024;

/// SQLite's B-tree page types whose pages point at other pages: interior index, interior table.
const INTERIOR_TYPES: [u8; 2] = [0x02, 0x05];

/// Whether `page`, page `number` (1-based) of a database, looks like an interior B-tree page.
/// A freelist or overflow page that happens to start with such a byte is harmless: it is
/// tagged like any other and only takes room.
pub fn is_interior(number: u32, page: &[u8]) -> bool {
    let at = if number == 1 { SQLITE_HEADER_LEN } else { 0 };
    page.get(at)
        .is_some_and(|kind| INTERIOR_TYPES.contains(kind))
}

/// The page size a database header states, if `block0` starts with one.
pub fn page_size_of(block0: &[u8]) -> Option<u32> {
    if block0.len() < SQLITE_HEADER_LEN || !block0.starts_with(SQLITE_MAGIC) {
        return None;
    }
    header_page_size(block0).filter(|size| is_page_size(u64::from(*size)))
}

#[derive(Serialize, Deserialize)]
struct RawIndex {
    format: u32,
    page_size: u32,
    /// `(page number, tag)` of each page, in payload order.
    pages: Vec<(u32, String)>,
}

/// Interior pages by number, each with the content name of its block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InteriorPages {
    page_size: u32,
    pages: BTreeMap<u32, (TxId, Bytes)>,
    bytes: u64,
}

impl InteriorPages {
    pub fn new(page_size: u32) -> InteriorPages {
        InteriorPages {
            page_size,
            pages: BTreeMap::new(),
            bytes: 0,
        }
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Bytes of pages held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The block of `block_size` bytes that holds page `number`.
    fn block_of(&self, number: u32, block_size: BlockSize) -> BlockIndex {
        BlockIndex(u64::from(number - 1) * u64::from(self.page_size) / block_size.bytes())
    }

    fn insert(&mut self, number: u32, tag: TxId, page: Bytes) {
        if number == 0 || page.len() as u64 != u64::from(self.page_size) {
            return;
        }
        let added = page.len() as u64;
        match self.pages.insert(number, (tag, page)) {
            Some((_, old)) => self.bytes -= old.len() as u64,
            None if self.bytes + added > MAX_INDEX_BYTES => {
                self.pages.remove(&number);
                return;
            }
            None => {}
        }
        self.bytes += added;
    }

    /// Adds the interior pages of block `index` of `block_size`, whose content `data` the
    /// transaction `tag` names.
    pub fn scan(&mut self, index: BlockIndex, tag: TxId, data: &[u8], block_size: BlockSize) {
        let page_size = u64::from(self.page_size);
        if page_size > block_size.bytes() {
            return;
        }
        let first = index.0 * block_size.bytes() / page_size;
        for (at, page) in data.chunks_exact(page_size as usize).enumerate() {
            let Ok(number) = u32::try_from(first + at as u64 + 1) else {
                return;
            };
            if is_interior(number, page) {
                // A copy: a slice would keep the whole block alive as long as the index.
                self.insert(number, tag, Bytes::copy_from_slice(page));
            }
        }
    }

    /// Page `number` as of `snapshot`, if held with a tag that matches the block holding it
    /// there.
    pub fn get(&self, number: u32, snapshot: &Snapshot) -> Option<Bytes> {
        let (tag, page) = self.pages.get(&number)?;
        let end = u64::from(number) * u64::from(self.page_size);
        let current = snapshot.block_txid(self.block_of(number, snapshot.block_size))?;
        (current == *tag && end <= snapshot.size).then(|| page.clone())
    }

    /// Whether page `number` is held for `snapshot` (see [`InteriorPages::get`]).
    pub fn covers(&self, number: u32, snapshot: &Snapshot) -> bool {
        self.get(number, snapshot).is_some()
    }

    /// Keeps only the pages valid as of `snapshot`.
    pub fn retain_valid(&mut self, snapshot: &Snapshot) {
        let block_size = snapshot.block_size;
        let page_size = self.page_size;
        let mut bytes = 0;
        self.pages.retain(|number, (tag, page)| {
            let end = u64::from(*number) * u64::from(page_size);
            let block =
                BlockIndex(u64::from(*number - 1) * u64::from(page_size) / block_size.bytes());
            let keep = end <= snapshot.size && snapshot.block_txid(block) == Some(*tag);
            if keep {
                bytes += page.len() as u64;
            }
            keep
        });
        self.bytes = bytes;
    }

    /// Adds every page of `other` that this index lacks (same page size only).
    pub fn fill_from(&mut self, other: &InteriorPages) {
        if other.page_size != self.page_size {
            return;
        }
        for (number, (tag, page)) in &other.pages {
            if !self.pages.contains_key(number) {
                self.insert(*number, *tag, page.clone());
            }
        }
    }

    pub fn encode(&self, codec: Codec) -> Bytes {
        let raw = RawIndex {
            format: codec.format(),
            page_size: self.page_size,
            pages: self
                .pages
                .iter()
                .map(|(number, (tag, _))| (*number, tag.to_string()))
                .collect(),
        };
        let header = serde_json::to_vec(&raw).unwrap_or_default();
        let payload: Vec<Bytes> = self.pages.values().map(|(_, page)| page.clone()).collect();
        seal(codec, &header, &payload)
    }

    pub fn decode(key: &str, body: &Bytes) -> Result<InteriorPages> {
        let envelope = open_envelope(key, body)?;
        if !envelope.framed {
            return Err(corrupt(key, "an interior-page index without its checksum"));
        }
        let raw: RawIndex = envelope.header(key)?;
        let payload = envelope.payload;
        let page_size = raw.page_size;
        if !is_page_size(u64::from(page_size)) {
            return Err(corrupt(key, format!("bad page size {page_size}")));
        }
        if payload.len() as u64 != raw.pages.len() as u64 * u64::from(page_size) {
            return Err(corrupt(key, "payload does not match its pages"));
        }
        let mut index = InteriorPages::new(page_size);
        for (at, (number, tag)) in raw.pages.iter().enumerate() {
            let tag = TxId::parse(tag).ok_or_else(|| corrupt(key, "bad tag"))?;
            if *number == 0 {
                return Err(corrupt(key, "page number 0"));
            }
            let start = at * page_size as usize;
            index.pages.insert(
                *number,
                (tag, payload.slice(start..start + page_size as usize)),
            );
            index.bytes += u64::from(page_size);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::BlockRef;
    use std::sync::Arc;

    fn page(kind: u8, fill: u8) -> Vec<u8> {
        let mut page = vec![fill; 512];
        page[0] = kind;
        page
    }

    fn snapshot(blocks: &[u64], size: u64) -> Snapshot {
        let mut snapshot = Snapshot::empty(BlockSize::new(1024).expect("valid"));
        snapshot.size = size;
        snapshot.base = Arc::new(
            blocks
                .iter()
                .map(|txid| BlockRef::whole(TxId(*txid), None))
                .collect(),
        );
        snapshot
    }

    #[test]
    fn a_scan_keeps_interior_pages_with_their_tags_and_round_trips() {
        let block_size = BlockSize::new(1024).expect("valid");
        let mut first = vec![0u8; 100];
        first[..16].copy_from_slice(b"SQLite format 3\0");
        first[16..18].copy_from_slice(&512u16.to_be_bytes());
        first.resize(512, 0);
        first[100] = 0x05;
        let block0 = Bytes::from([first, page(0x0d, 1)].concat());
        let block1 = Bytes::from([page(0x02, 2), page(0x0a, 3)].concat());
        assert_eq!(page_size_of(&block0), Some(512));
        let mut index = InteriorPages::new(512);
        index.scan(BlockIndex(0), TxId(7), &block0, block_size);
        index.scan(BlockIndex(1), TxId(8), &block1, block_size);
        assert_eq!(index.len(), 2);
        assert_eq!(index.bytes(), 1024);
        let current = snapshot(&[7, 8], 2048);
        assert_eq!(index.get(1, &current), Some(block0.slice(..512)));
        assert_eq!(index.get(3, &current), Some(block1.slice(..512)));
        assert_eq!(index.get(2, &current), None, "a leaf is not indexed");
        for codec in [Codec::Raw, Codec::Zstd(3)] {
            let decoded = InteriorPages::decode("k", &index.encode(codec)).expect("valid");
            assert_eq!(decoded, index);
        }
    }

    #[test]
    fn a_page_whose_block_changed_or_was_cut_off_is_not_served() {
        let block_size = BlockSize::new(1024).expect("valid");
        let mut index = InteriorPages::new(512);
        let block1 = Bytes::from([page(0x02, 2), page(0x05, 3)].concat());
        index.scan(BlockIndex(1), TxId(8), &block1, block_size);
        assert!(index.covers(3, &snapshot(&[1, 8], 2048)));
        assert!(
            !index.covers(3, &snapshot(&[1, 9], 2048)),
            "block rewritten"
        );
        assert!(!index.covers(4, &snapshot(&[1, 8], 1536)), "file cut short");
        let mut kept = index.clone();
        kept.retain_valid(&snapshot(&[1, 8], 1536));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.bytes(), 512);
        kept.retain_valid(&snapshot(&[1, 9], 2048));
        assert!(kept.is_empty());
        let mut filled = InteriorPages::new(512);
        filled.fill_from(&index);
        assert_eq!(filled, index);
    }

    #[test]
    fn damage_is_detected_and_size_is_bounded() {
        let block_size = BlockSize::new(1024).expect("valid");
        let mut index = InteriorPages::new(512);
        index.scan(
            BlockIndex(1),
            TxId(8),
            &Bytes::from([page(0x02, 2), page(0x05, 3)].concat()),
            block_size,
        );
        let body = index.encode(Codec::Raw);
        for at in (0..body.len()).step_by(7) {
            let mut flipped = body.to_vec();
            flipped[at] ^= 0x04;
            assert!(InteriorPages::decode("k", &Bytes::from(flipped)).is_err());
        }
        assert!(InteriorPages::decode("k", &body.slice(..body.len() - 2)).is_err());
        let mut big = InteriorPages::new(65536);
        let block_size = BlockSize::new(65536).expect("valid");
        for number in 0..(MAX_INDEX_BYTES / 65536 + 4) {
            let data = Bytes::from(page(0x05, 1).repeat(128));
            big.scan(BlockIndex(number), TxId(1), &data, block_size);
        }
        assert!(big.bytes() <= MAX_INDEX_BYTES);
        assert_eq!(big.bytes(), MAX_INDEX_BYTES);
    }
}
