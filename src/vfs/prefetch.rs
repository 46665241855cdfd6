//! B-tree-aware prefetch: finds the children of the interior pages SQLite reads, and decides
//! when a whole level of a tree is worth fetching in one concurrent batch.
//!
//! A B-tree is balanced, so the children of one interior page are all interior pages or all
//! leaves. When reads reach a second interior child of the same parent, lookups are spreading
//! over that level: its other pages are fetched together, once, and later lookups skip that
//! round trip. A level of leaves is never fetched this way (sequential read-ahead serves
//! scans), and a level whose blocks would pass the byte bound is left alone: fetching part of
//! a level that random lookups spread over wastes most of what it fetches.

use std::collections::VecDeque;

use crate::storage::interior::is_interior;
use crate::storage::SQLITE_HEADER_LEN;

/// Interior pages remembered at most (each with its children): the most recently read.
const MAX_TRACKED: usize = 64;

/// What prefetch did in one database, for `s3vfs_stats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrefetchStats {
    /// Levels fetched in one batch.
    pub batches: u64,
    /// Blocks those batches fetched.
    pub blocks: u64,
    /// Levels left alone because their blocks would pass the bound.
    pub over_bound: u64,
}

/// An interior page read lately.
struct Parent {
    page: u32,
    /// Its children, sorted.
    children: Vec<u32>,
    /// The first of its children read that is an interior page.
    first_child: Option<u32>,
    /// Whether its level was fetched or judged too large.
    decided: bool,
}

/// The interior pages read lately in one database, shared by its connections.
#[derive(Default)]
pub struct Tracker {
    recent: VecDeque<Parent>,
    pub stats: PrefetchStats,
}

impl Tracker {
    /// Notes that interior page `number` (1-based), whose children are `children` (see
    /// [`interior_children`]), was read; returns the pages of the level to fetch now, if this
    /// read calls for it.
    pub fn observe(&mut self, number: u32, mut children: Vec<u32>) -> Option<Vec<u32>> {
        let mut level = None;
        if let Some(parent) = self
            .recent
            .iter_mut()
            .rev()
            .find(|parent| parent.children.binary_search(&number).is_ok())
        {
            match parent.first_child {
                _ if parent.decided => {}
                Some(first) if first != number => {
                    parent.decided = true;
                    level = Some(parent.children.clone());
                }
                Some(_) => {}
                None => parent.first_child = Some(number),
            }
        }
        children.sort_unstable();
        children.dedup();
        let known = self.recent.iter().position(|parent| parent.page == number);
        // A page read again keeps what was learnt of it, unless its children changed.
        let entry = match known.and_then(|at| self.recent.remove(at)) {
            Some(entry) if entry.children == children => entry,
            _ => Parent {
                page: number,
                children,
                first_child: None,
                decided: false,
            },
        };
        if self.recent.len() >= MAX_TRACKED {
            self.recent.pop_front();
        }
        self.recent.push_back(entry);
        level
    }

    /// Counts what became of a level: `None` when it was over the bound, else the blocks a
    /// batch started fetching.
    pub fn record(&mut self, fetched: Option<u64>) {
        match fetched {
            None => self.stats.over_bound += 1,
            Some(0) => {}
            Some(blocks) => {
                self.stats.batches += 1;
                self.stats.blocks += blocks;
            }
        }
    }
}

fn be16(page: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(page.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn be32(page: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(page.get(at..at + 4)?.try_into().ok()?))
}

/// The child page numbers of `page` if it is an interior page of a table or index B-tree of a
/// database of `page_count` pages; `None` for any other page, or one that does not parse.
pub fn interior_children(number: u32, page: &[u8], page_count: u32) -> Option<Vec<u32>> {
    if !is_interior(number, page) {
        return None;
    }
    // Page 1 starts with the database header.
    let header = if number == 1 { SQLITE_HEADER_LEN } else { 0 };
    let cells = be16(page, header + 3)?;
    let pointers = header + 12;
    if pointers + 2 * cells > page.len() {
        return None;
    }
    let valid = |child: u32| (2..=page_count).contains(&child) && child != number;
    let mut children = Vec::with_capacity(cells + 1);
    for cell in 0..cells {
        let offset = be16(page, pointers + 2 * cell)?;
        if offset < pointers + 2 * cells {
            return None;
        }
        // Every interior cell starts with its left child's page number.
        let child = be32(page, offset)?;
        if !valid(child) {
            return None;
        }
        children.push(child);
    }
    let right = be32(page, header + 8)?;
    if !valid(right) {
        return None;
    }
    children.push(right);
    Some(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interior table page of `size` bytes naming `children` (the last one the right-most).
    fn interior(number: u32, children: &[u32], size: usize) -> Vec<u8> {
        let header = if number == 1 { 100 } else { 0 };
        let mut page = vec![0u8; size];
        page[header] = 0x05;
        let cells = children.len() - 1;
        page[header + 3..header + 5].copy_from_slice(&(cells as u16).to_be_bytes());
        page[header + 8..header + 12].copy_from_slice(&children[cells].to_be_bytes());
        let mut content = size;
        for (cell, child) in children[..cells].iter().enumerate() {
            content -= 8;
            page[content..content + 4].copy_from_slice(&child.to_be_bytes());
            page[content + 4] = cell as u8;
            let at = header + 12 + 2 * cell;
            page[at..at + 2].copy_from_slice(&(content as u16).to_be_bytes());
        }
        page
    }

    #[test]
    fn reads_the_children_of_interior_pages() {
        let page = interior(7, &[10, 11, 12], 4096);
        assert_eq!(interior_children(7, &page, 100), Some(vec![10, 11, 12]));
        let first = interior(1, &[2, 3], 4096);
        assert_eq!(interior_children(1, &first, 100), Some(vec![2, 3]));
        // Leaves, overflow pages and children past the end of the file are not interior pages.
        let mut leaf = page.clone();
        leaf[0] = 0x0d;
        assert_eq!(interior_children(7, &leaf, 100), None);
        assert_eq!(interior_children(7, &page, 11), None);
        let mut garbage = page.clone();
        garbage[3..5].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(interior_children(7, &garbage, 100), None);
    }

    /// What a read of `page` tells the tracker, as the file does: interior pages only.
    fn observe(
        tracker: &mut Tracker,
        number: u32,
        page: &[u8],
        page_count: u32,
    ) -> Option<Vec<u32>> {
        let children = interior_children(number, page, page_count)?;
        tracker.observe(number, children)
    }

    #[test]
    fn a_level_is_fetched_once_its_second_interior_page_is_read() {
        let mut tracker = Tracker::default();
        let root = interior(2, &[3, 4, 5], 512);
        assert_eq!(observe(&mut tracker, 2, &root, 100), None);
        // The first child read: one lookup, nothing to fetch yet.
        assert_eq!(
            observe(&mut tracker, 3, &interior(3, &[10, 11], 512), 100),
            None
        );
        assert_eq!(
            observe(&mut tracker, 3, &interior(3, &[10, 11], 512), 100),
            None
        );
        // A second child: lookups spread over the level.
        assert_eq!(
            observe(&mut tracker, 4, &interior(4, &[12, 13], 512), 100),
            Some(vec![3, 4, 5])
        );
        assert_eq!(
            observe(&mut tracker, 5, &interior(5, &[14, 15], 512), 100),
            None
        );
        // Leaves never count.
        let mut leaf = interior(10, &[20, 21], 512);
        leaf[0] = 0x0d;
        assert_eq!(observe(&mut tracker, 10, &leaf, 100), None);
        assert_eq!(observe(&mut tracker, 11, &leaf, 100), None);
    }

    #[test]
    fn remembers_a_bounded_number_of_pages() {
        let mut tracker = Tracker::default();
        for number in 2..2 + 3 * MAX_TRACKED as u32 {
            let page = interior(number, &[1000 + number, 2000 + number], 512);
            observe(&mut tracker, number, &page, 10_000);
        }
        assert_eq!(tracker.recent.len(), MAX_TRACKED);
    }
}
