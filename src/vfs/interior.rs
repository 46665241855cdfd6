//! The interior-page index one database has loaded (see [`crate::storage::interior`]): which
//! checkpoint's it is, whether a load is under way, and what it served. Readers that would
//! go to the store wait for a load under way rather than fetching a block it may hold.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::storage::interior::InteriorPages;
use crate::storage::{Snapshot, TxId, Version};

/// What the interior-page index did in one database, for `s3vfs_stats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InteriorStats {
    /// Indexes loaded (from the store or the disk cache).
    pub loads: u64,
    /// Pages the loaded index holds, and their bytes (held within `cache_size`).
    pub pages: u64,
    pub bytes: u64,
    /// Page reads it served, each one a block not fetched.
    pub hits: u64,
}

#[derive(Default)]
struct State {
    /// The checkpoint whose index was last asked for: loaded, being loaded, or unavailable.
    checkpoint: Option<(Version, TxId)>,
    loading: bool,
    index: Option<Arc<InteriorPages>>,
    stats: InteriorStats,
}

#[derive(Default)]
pub struct IndexSlot {
    state: Mutex<State>,
    done: Condvar,
}

/// A load this caller must carry out; whatever happens to it, dropping it ends the load, so
/// that waiting readers go on.
pub struct Load {
    slot: Arc<IndexSlot>,
}

impl Load {
    /// Installs the loaded index (`None`: the checkpoint's index is unavailable; the previous
    /// one, if any, stays, since its pages are checked against every version anyway).
    pub fn finish(self, index: Option<Arc<InteriorPages>>) {
        let mut state = self.slot.state.lock();
        if let Some(index) = index {
            state.stats.loads += 1;
            state.stats.pages = index.len() as u64;
            state.stats.bytes = index.bytes();
            state.index = Some(index);
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.slot.state.lock().loading = false;
        self.slot.done.notify_all();
    }
}

impl IndexSlot {
    /// Starts loading the index of `snapshot`'s checkpoint unless it was asked for before or
    /// another load is under way.
    pub fn begin(self: &Arc<Self>, snapshot: &Snapshot) -> Option<Load> {
        let checkpoint = (snapshot.base_version, snapshot.base_txid);
        let mut state = self.state.lock();
        if state.loading || state.checkpoint == Some(checkpoint) {
            return None;
        }
        state.checkpoint = Some(checkpoint);
        state.loading = true;
        Some(Load { slot: self.clone() })
    }

    /// Page `number` as of `snapshot`, after any load under way.
    pub fn page(&self, number: u32, snapshot: &Snapshot) -> Option<Bytes> {
        let mut state = self.state.lock();
        while state.loading {
            self.done.wait(&mut state);
        }
        let page = state.index.as_ref()?.get(number, snapshot)?;
        state.stats.hits += 1;
        Some(page)
    }

    /// Whether the loaded index holds page `number` for `snapshot`; never waits.
    pub fn covers(&self, number: u32, snapshot: &Snapshot) -> bool {
        let state = self.state.lock();
        state
            .index
            .as_ref()
            .is_some_and(|index| index.covers(number, snapshot))
    }

    /// The loaded index, if it belongs to `snapshot`'s checkpoint.
    pub fn of(&self, snapshot: &Snapshot) -> Option<Arc<InteriorPages>> {
        let state = self.state.lock();
        let checkpoint = (snapshot.base_version, snapshot.base_txid);
        (state.checkpoint == Some(checkpoint) && !state.loading)
            .then(|| state.index.clone())
            .flatten()
    }

    pub fn stats(&self) -> InteriorStats {
        self.state.lock().stats
    }
}
