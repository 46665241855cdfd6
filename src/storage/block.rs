//! What a block of a version is made of: the object it starts from, the pages one later
//! commit record carries for it (a page delta against that object), and the checksum its
//! content must match.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

use super::codec::Codec;
use super::log::find_record;
use super::{BlockIndex, BlockSize, Location, TxId, Version};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Where the content of one block of a version comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRef {
    /// The transaction that last changed the block: it names the content, so a cached copy
    /// keyed by it never goes stale.
    pub txid: TxId,
    /// The transaction whose whole-block object (`blocks/{index}/{object}`) the content starts
    /// from.
    pub object: TxId,
    /// The version whose commit record carries this block's pages: every byte that differs
    /// from `object`, so one record completes the block. Never older than the snapshot's
    /// base checkpoint.
    pub patch: Option<Version>,
    /// CRC-32 of the content; absent for blocks written by storage format 1.
    pub sum: Option<u32>,
}

impl BlockRef {
    /// A block held whole by the object `txid` wrote.
    pub fn whole(txid: TxId, sum: Option<u32>) -> BlockRef {
        BlockRef {
            txid,
            object: txid,
            patch: None,
            sum,
        }
    }
}

/// The pages one commit record carries for one block, against the block's object: how many
/// leading bytes of the object survive (`keep`; the rest read as zeros), the block's length at
/// that version, and the byte ranges that differ, each as `(offset within the block, bytes)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub keep: u64,
    pub len: u64,
    pub ranges: Vec<(u64, Bytes)>,
}

impl Patch {
    /// The bytes this patch carries.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(_, data)| data.len() as u64).sum()
    }

    /// Applies the patch to the object's content (or to any later content the previous patch
    /// of the same object gave: a patch covers every range its predecessor did): the content
    /// is cut to `keep` bytes and zero-filled to the patch's length, then the ranges are
    /// copied in. `None` when a range does not fit.
    pub fn apply(&self, content: &mut Vec<u8>) -> Option<()> {
        content.truncate(usize::try_from(self.keep).ok()?);
        content.resize(usize::try_from(self.len).ok()?, 0);
        for (within, data) in &self.ranges {
            let start = usize::try_from(*within).ok()?;
            let end = start.checked_add(data.len())?;
            content.get_mut(start..end)?.copy_from_slice(data);
        }
        Some(())
    }
}

/// Ranges closer than this are sent as one, so that a patch is not cut into many tiny pieces.
const MERGE_GAP: usize = 64;

/// The patch that turns `original` into `new`: every byte of `new` that differs (bytes past
/// the end of `original` are compared with zeros), in ranges merged across small gaps.
pub fn diff(original: &[u8], new: &[u8]) -> Patch {
    let ranges = differing(original, new);
    Patch {
        keep: original.len().min(new.len()) as u64,
        len: new.len() as u64,
        ranges: ranges
            .into_iter()
            .map(|(start, end)| (start as u64, Bytes::copy_from_slice(&new[start..end])))
            .collect(),
    }
}

/// The patch of `object` that gives `new`, from the patch that gave `previous` (`earlier`)
/// and what changed since: every range of either, with the bytes of `new`.
pub fn extend(earlier: &Patch, previous: &[u8], new: &[u8]) -> Patch {
    let mut ranges: Vec<(usize, usize)> = earlier
        .ranges
        .iter()
        .map(|(within, data)| (*within as usize, *within as usize + data.len()))
        .chain(differing(previous, new))
        .map(|(start, end)| (start.min(new.len()), end.min(new.len())))
        .filter(|(start, end)| start < end)
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 + MERGE_GAP => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Patch {
        keep: earlier.keep.min(new.len() as u64),
        len: new.len() as u64,
        ranges: merged
            .into_iter()
            .map(|(start, end)| (start as u64, Bytes::copy_from_slice(&new[start..end])))
            .collect(),
    }
}

/// The ranges where `new` differs from `original` (zeros past its end), merged across gaps
/// of at most [`MERGE_GAP`] bytes.
fn differing(original: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    let differs = |at: usize| original.get(at).copied().unwrap_or(0) != new[at];
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while at < new.len() {
        // Skip equal 8-byte words quickly.
        if at + 8 <= new.len()
            && at + 8 <= original.len()
            && original[at..at + 8] == new[at..at + 8]
        {
            at += 8;
            continue;
        }
        if !differs(at) {
            at += 1;
            continue;
        }
        let start = at;
        while at < new.len() && differs(at) {
            at += 1;
        }
        match ranges.last_mut() {
            Some(last) if start - last.1 <= MERGE_GAP => last.1 = at,
            _ => ranges.push((start, at)),
        }
    }
    ranges
}

/// The checksum every block's content carries in format 2.
pub fn checksum(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// The pages one commit record carries, by block.
pub type Pages = Arc<BTreeMap<BlockIndex, Patch>>;

/// The patches of recently read commit records, by version, bounded in bytes: a reader that
/// assembles several blocks patched by one record fetches that record once.
pub struct PatchCache {
    budget: u64,
    state: Mutex<(LruCache<Version, Pages>, u64)>,
}

impl PatchCache {
    pub fn new(budget: u64) -> PatchCache {
        PatchCache {
            budget,
            state: Mutex::new((LruCache::unbounded(), 0)),
        }
    }

    pub fn get(&self, version: Version) -> Option<Pages> {
        self.state.lock().0.get(&version).cloned()
    }

    /// The bytes one record's pages count for in the budget.
    fn footprint(patches: &BTreeMap<BlockIndex, Patch>) -> u64 {
        patches.values().map(Patch::bytes).sum::<u64>() + 64
    }

    pub fn insert(&self, version: Version, patches: Pages) {
        let size = Self::footprint;
        let bytes = size(&patches);
        if bytes > self.budget {
            return;
        }
        let mut state = self.state.lock();
        let (lru, used) = &mut *state;
        if let Some(old) = lru.put(version, patches) {
            *used -= size(&old);
        }
        *used += bytes;
        while *used > self.budget {
            match lru.pop_lru() {
                Some((_, old)) => *used -= size(&old),
                None => break,
            }
        }
    }

    pub fn forget(&self, version: Version) {
        let mut state = self.state.lock();
        let (lru, used) = &mut *state;
        if let Some(old) = lru.pop(&version) {
            *used -= Self::footprint(&old);
        }
    }
}

/// A block assembly is tried this many times before a checksum mismatch is reported: a byte
/// changed in transit is fetched again, a byte changed at rest fails every time.
const ASSEMBLY_ATTEMPTS: usize = super::log::VERIFY_ATTEMPTS;

/// The content of block `index`, `len` bytes long, that `entry` describes: its object, and
/// the pages of the record that patches it (from `records` when it has them), checked
/// against the entry's checksum. Both are fetched concurrently. A mismatch is fetched again,
/// without the cached record, before it is reported as corrupt.
pub async fn fetch(
    backend: &Arc<dyn Backend>,
    location: &Location,
    codec: Codec,
    index: BlockIndex,
    entry: &BlockRef,
    len: u64,
    records: &PatchCache,
) -> Result<Bytes> {
    let mut attempt = 1;
    loop {
        match assemble(backend, location, codec, index, entry, len, records).await {
            Err(Error::Corrupt { .. }) if attempt < ASSEMBLY_ATTEMPTS => {
                if let Some(version) = entry.patch {
                    records.forget(version);
                }
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The pages of `version`'s record, from `records` or from the store (then kept).
pub async fn pages_of(
    backend: &Arc<dyn Backend>,
    location: &Location,
    version: Version,
    records: &PatchCache,
) -> Result<Pages> {
    if let Some(pages) = records.get(version) {
        return Ok(pages);
    }
    let record = find_record(backend, location, version)
        .await?
        .ok_or_else(|| Error::Collected {
            key: location.log_key(version),
            version: None,
        })?;
    records.insert(version, record.patches.clone());
    Ok(record.patches)
}

async fn assemble(
    backend: &Arc<dyn Backend>,
    location: &Location,
    codec: Codec,
    index: BlockIndex,
    entry: &BlockRef,
    len: u64,
    records: &PatchCache,
) -> Result<Bytes> {
    let object = location.block_key(index, entry.object);
    let pages = async {
        match entry.patch {
            Some(version) => pages_of(backend, location, version, records)
                .await
                .map(|pages| Some((version, pages))),
            None => Ok(None),
        }
    };
    let (base, pages) = tokio::join!(backend.get(&object), pages);
    let base = base?.ok_or_else(|| Error::Collected {
        key: object.clone(),
        version: None,
    })?;
    let base = codec.decode(&object, base, BlockSize::MAX as usize)?;
    let pages = pages?;
    let corrupt = |why: String| {
        let key = match entry.patch {
            Some(version) => format!("{object} (patched by {})", location.log_key(version)),
            None => object.clone(),
        };
        Error::Corrupt { key, why }
    };
    let content = match pages {
        None => {
            if base.len() as u64 != len {
                return Err(corrupt(format!("{} bytes, expected {len}", base.len())));
            }
            base
        }
        Some((version, pages)) => {
            let patch = pages.get(&index).ok_or_else(|| {
                corrupt(format!(
                    "version {} carries no pages for this block",
                    version.0
                ))
            })?;
            let mut content = base.to_vec();
            patch
                .apply(&mut content)
                .ok_or_else(|| corrupt(format!("a page of version {} does not fit", version.0)))?;
            if content.len() as u64 != len {
                return Err(corrupt(format!("{} bytes, expected {len}", content.len())));
            }
            Bytes::from(content)
        }
    };
    if entry.sum.is_some_and(|sum| checksum(&content) != sum) {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn a_diff_applied_to_the_original_gives_the_new_content() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let old_len = rng.below(3000) as usize;
            let new_len = rng.below(3000) as usize;
            let original: Vec<u8> = (0..old_len).map(|_| rng.below(4) as u8).collect();
            let mut new: Vec<u8> = (0..new_len)
                .map(|at| original.get(at).copied().unwrap_or(0))
                .collect();
            for _ in 0..rng.below(6) {
                if new_len > 0 {
                    let at = rng.below(new_len as u64) as usize;
                    let end = (at + rng.below(300) as usize).min(new_len);
                    for byte in &mut new[at..end] {
                        *byte = rng.below(256) as u8;
                    }
                }
            }
            let patch = diff(&original, &new);
            let mut rebuilt = original.clone();
            patch.apply(&mut rebuilt).expect("fits");
            assert_eq!(rebuilt, new);
            assert!(patch.bytes() <= new_len as u64);
        }
    }

    #[test]
    fn a_small_change_makes_a_small_patch() {
        let original = vec![7u8; 65536];
        let mut new = original.clone();
        new[100] = 1;
        new[30000..30010].fill(2);
        let patch = diff(&original, &new);
        assert_eq!(patch.ranges.len(), 2);
        assert_eq!(patch.bytes(), 11);
    }

    #[test]
    fn an_extended_patch_gives_the_new_content_from_the_object_or_from_the_previous_content() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..300 {
            let object: Vec<u8> = (0..rng.below(2000)).map(|_| rng.below(3) as u8).collect();
            let mut content = object.clone();
            let mut patch = diff(&object, &content);
            for _ in 0..5 {
                let mut new = content.clone();
                new.resize(rng.below(2000) as usize, 0);
                for _ in 0..rng.below(4) {
                    if !new.is_empty() {
                        let at = rng.below(new.len() as u64) as usize;
                        let end = (at + rng.below(200) as usize).min(new.len());
                        new[at..end].fill(rng.below(256) as u8);
                    }
                }
                patch = extend(&patch, &content, &new);
                let mut from_object = object.clone();
                patch.apply(&mut from_object).expect("fits");
                assert_eq!(from_object, new);
                let mut from_previous = content.clone();
                patch.apply(&mut from_previous).expect("fits");
                assert_eq!(from_previous, new);
                content = new;
            }
        }
    }

    #[test]
    fn a_patch_that_does_not_fit_is_refused() {
        let patch = Patch {
            keep: 0,
            len: 10,
            ranges: vec![(8, Bytes::from_static(b"abc"))],
        };
        assert!(patch.apply(&mut Vec::new()).is_none());
    }
}
