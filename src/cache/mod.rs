//! The block cache of one database: an LRU bounded in bytes, with single-flight misses so that
//! readers missing the same block share one request; and ([`readahead`]) which blocks a
//! sequential reader should fetch along.
//!
//! Blocks are immutable objects, so a cached block never goes stale: a new version names new
//! objects, and the old ones age out of the LRU.

pub mod disk;
pub mod readahead;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::storage::block::BlockRef;
use crate::units::{BlockIndex, TxId};

/// Names one block object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockKey {
    pub index: BlockIndex,
    pub txid: TxId,
}

impl BlockKey {
    /// The key of block `index`'s content as `entry` describes it.
    pub fn of(index: BlockIndex, entry: &BlockRef) -> BlockKey {
        BlockKey {
            index,
            txid: entry.txid,
        }
    }
}

/// A fetch in progress that other readers wait on.
#[derive(Default)]
struct Flight {
    outcome: Mutex<Option<Result<Bytes>>>,
    ready: Condvar,
}

impl Flight {
    fn finish(&self, outcome: Result<Bytes>) {
        *self.outcome.lock() = Some(outcome);
        self.ready.notify_all();
    }

    fn wait(&self) -> Result<Bytes> {
        let mut outcome = self.outcome.lock();
        while outcome.is_none() {
            self.ready.wait(&mut outcome);
        }
        outcome
            .clone()
            .unwrap_or_else(|| Err(Error::Runtime("fetch finished without an outcome".into())))
    }
}

struct State {
    lru: LruCache<BlockKey, Bytes>,
    bytes: u64,
    /// Bytes of the budget held for something else of the database (its interior-page index).
    reserved: u64,
    in_flight: HashMap<BlockKey, Arc<Flight>>,
}

pub struct BlockCache {
    budget: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Cache counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub blocks: u64,
    pub budget: u64,
}

enum Slot {
    Ready(Bytes),
    Mine(Arc<Flight>),
    Theirs(Arc<Flight>),
}

impl BlockCache {
    pub fn new(budget: u64) -> BlockCache {
        BlockCache {
            budget,
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                bytes: 0,
                reserved: 0,
                in_flight: HashMap::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: state.bytes,
            blocks: state.lru.len() as u64,
            budget: self.budget,
        }
    }

    fn insert_locked(&self, state: &mut State, key: BlockKey, data: Bytes) {
        let len = data.len() as u64;
        if len > self.budget.saturating_sub(state.reserved) {
            return;
        }
        if let Some(old) = state.lru.put(key, data) {
            state.bytes -= old.len() as u64;
        }
        state.bytes += len;
        self.evict_locked(state);
    }

    fn evict_locked(&self, state: &mut State) {
        while state.bytes + state.reserved > self.budget {
            match state.lru.pop_lru() {
                Some((_, evicted)) => state.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Holds `bytes` of the budget for something else the database keeps in memory, evicting
    /// blocks to make room; replaces the previous reservation.
    pub fn reserve(&self, bytes: u64) {
        let mut state = self.state.lock();
        state.reserved = bytes.min(self.budget);
        self.evict_locked(&mut state);
    }

    /// The block if it is cached, without fetching or counting.
    pub fn peek(&self, key: &BlockKey) -> Option<Bytes> {
        self.state.lock().lru.peek(key).cloned()
    }

    /// Drops a block: an uncommitted block of this process's transaction that was uploaded
    /// again with new content.
    pub fn forget(&self, key: &BlockKey) {
        let mut state = self.state.lock();
        if let Some(old) = state.lru.pop(key) {
            state.bytes -= old.len() as u64;
        }
    }

    /// Adds a block this process just wrote.
    pub fn insert(&self, key: BlockKey, data: Bytes) {
        let mut state = self.state.lock();
        self.insert_locked(&mut state, key, data);
    }

    /// Starts flights for those of `keys` neither cached nor being fetched, and returns them:
    /// readers of these keys wait until the returned [`Claim`] settles them.
    pub fn claim(self: &Arc<Self>, keys: &[BlockKey]) -> Claim {
        let mut state = self.state.lock();
        let mut claimed = Vec::new();
        for key in keys {
            if !state.lru.contains(key) && !state.in_flight.contains_key(key) {
                state.in_flight.insert(*key, Arc::new(Flight::default()));
                claimed.push(*key);
            }
        }
        Claim {
            cache: self.clone(),
            keys: claimed,
        }
    }

    /// The blocks named by `keys`, in order. Misses not already being fetched by another
    /// reader are passed, all together, to `fetch`, which must return one outcome per key.
    pub fn get_many(
        self: &Arc<Self>,
        keys: &[BlockKey],
        fetch: impl FnOnce(Vec<BlockKey>) -> Result<Vec<Result<Bytes>>>,
    ) -> Result<Vec<Bytes>> {
        let mut slots = Vec::with_capacity(keys.len());
        let mut mine = Vec::new();
        {
            let mut state = self.state.lock();
            for key in keys {
                if let Some(data) = state.lru.get(key) {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    slots.push(Slot::Ready(data.clone()));
                } else if let Some(flight) = state.in_flight.get(key) {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    slots.push(Slot::Theirs(flight.clone()));
                } else {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let flight = Arc::new(Flight::default());
                    state.in_flight.insert(*key, flight.clone());
                    mine.push(*key);
                    slots.push(Slot::Mine(flight));
                }
            }
        }
        if !mine.is_empty() {
            let claim = Claim {
                cache: self.clone(),
                keys: mine,
            };
            let outcomes = fetch(claim.keys.clone());
            claim.settle(outcomes);
        }
        slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Ready(data) => Ok(data),
                Slot::Mine(flight) | Slot::Theirs(flight) => flight.wait(),
            })
            .collect()
    }
}

/// Flights this reader started and must end: settled with the fetch's outcomes, or, if it is
/// dropped first (the fetch panicked or never ran), with an error, so that no reader waits on
/// them forever.
pub struct Claim {
    cache: Arc<BlockCache>,
    keys: Vec<BlockKey>,
}

impl Claim {
    /// The keys this claim fetches.
    pub fn keys(&self) -> &[BlockKey] {
        &self.keys
    }

    /// Ends the flights with `outcomes`, one per key in order; successes enter the cache.
    pub fn settle(mut self, outcomes: Result<Vec<Result<Bytes>>>) {
        let keys = std::mem::take(&mut self.keys);
        let outcomes = match outcomes {
            Ok(outcomes) if outcomes.len() == keys.len() => outcomes,
            Ok(_) => vec![
                Err(Error::Runtime(
                    "fetch returned the wrong number of blocks".into()
                ));
                keys.len()
            ],
            Err(error) => vec![Err(error); keys.len()],
        };
        let mut state = self.cache.state.lock();
        for (key, outcome) in keys.iter().zip(outcomes) {
            if let Ok(data) = &outcome {
                self.cache.insert_locked(&mut state, *key, data.clone());
            }
            if let Some(flight) = state.in_flight.remove(key) {
                flight.finish(outcome);
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut state = self.cache.state.lock();
        for key in self.keys.drain(..) {
            if let Some(flight) = state.in_flight.remove(&key) {
                flight.finish(Err(Error::Runtime(
                    "a block fetch ended without a result".into(),
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn key(index: u64) -> BlockKey {
        BlockKey {
            index: BlockIndex(index),
            txid: TxId(1),
        }
    }

    #[test]
    fn a_reservation_takes_its_bytes_from_the_blocks() {
        let cache = Arc::new(BlockCache::new(1000));
        for index in 0..4 {
            cache.insert(key(index), Bytes::from(vec![0u8; 250]));
        }
        assert_eq!(cache.stats().bytes, 1000);
        cache.reserve(400);
        assert_eq!(cache.stats().bytes, 500);
        assert!(cache.peek(&key(0)).is_none() && cache.peek(&key(3)).is_some());
        cache.insert(key(9), Bytes::from(vec![0u8; 250]));
        assert_eq!(cache.stats().bytes, 500);
        cache.reserve(0);
        cache.insert(key(10), Bytes::from(vec![0u8; 250]));
        assert_eq!(cache.stats().bytes, 750);
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let cache = Arc::new(BlockCache::new(10_000));
        for index in 0..100 {
            cache.insert(key(index), Bytes::from(vec![0u8; 1000]));
            assert!(cache.stats().bytes <= 10_000);
        }
        assert_eq!(cache.stats().blocks, 10);
        // The newest survive.
        let got = cache
            .get_many(&[key(99)], |_| panic!("must be cached"))
            .expect("hit");
        assert_eq!(got[0].len(), 1000);
    }

    #[test]
    fn concurrent_misses_of_one_block_share_one_fetch() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        let fetches = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, fetches, barrier) = (cache.clone(), fetches.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    cache
                        .get_many(&[key(5)], |keys| {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(keys
                                .iter()
                                .map(|_| Ok(Bytes::from_static(b"block")))
                                .collect())
                        })
                        .expect("fetched")
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(&thread.join().expect("no panic")[0][..], b"block");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_claim_is_waited_on_and_never_leaves_a_reader_waiting() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        cache.insert(key(1), Bytes::from_static(b"cached"));
        let claim = cache.claim(&[key(1), key(2), key(3)]);
        assert_eq!(claim.keys(), &[key(2), key(3)]);
        assert!(
            cache.claim(&[key(2)]).keys().is_empty(),
            "already on its way"
        );
        let reader = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                cache.get_many(&[key(2)], |_| panic!("must wait for the claim"))
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        claim.settle(Ok(vec![
            Ok(Bytes::from_static(b"two")),
            Ok(Bytes::from_static(b"three")),
        ]));
        assert_eq!(
            &reader.join().expect("no panic").expect("read")[0][..],
            b"two"
        );
        assert_eq!(cache.peek(&key(3)), Some(Bytes::from_static(b"three")));
        // A claim dropped unsettled (its fetch panicked) ends its flights with an error,
        // and the next reader fetches for itself.
        drop(cache.claim(&[key(4)]));
        let got = cache.get_many(&[key(4)], |keys| {
            Ok(keys.iter().map(|_| Ok(Bytes::from_static(b"4"))).collect())
        });
        assert_eq!(&got.expect("fetched")[0][..], b"4");
        let waiting = cache.claim(&[key(5)]);
        let reader = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get_many(&[key(5)], |_| panic!("waits")))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(waiting);
        assert!(reader.join().expect("no panic").is_err());
    }

    #[test]
    fn failed_fetches_are_not_cached() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        let error = cache.get_many(&[key(1)], |_| Err(Error::Runtime("down".into())));
        assert!(error.is_err());
        let got = cache.get_many(&[key(1)], |keys| {
            Ok(keys.iter().map(|_| Ok(Bytes::from_static(b"x"))).collect())
        });
        assert_eq!(&got.expect("fetched")[0][..], b"x");
    }
}
