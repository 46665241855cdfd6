//! Safe VFS logic: the databases this process has open, shared by all their connections,
//! and (in [`file`]) one connection's database file.

#[cfg(test)]
mod contract;
pub mod file;
pub mod handle;
pub mod interior;
pub mod legacy;
pub mod lock;
pub mod open;
pub mod pragma;
pub mod prefetch;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::backend::metered::{process_metrics, Metrics, MetricsSnapshot};
use crate::backend::retry::RetryPolicy;
use crate::backend::s3::{Endpoint, S3Backend};
use crate::backend::{honours_if_none_match, run_bounded, stack, Backend};
use crate::cache::disk::{DiskCache, DiskDirectory, DiskStats};
use crate::cache::{BlockCache, BlockKey, CacheStats};
use crate::config::{Config, Layout};
use crate::crypto::{Keyring, Sealer};
use crate::error::{Error, Result};
use crate::runtime;
use crate::storage::block::{self, BlockRef, PatchCache};
use crate::storage::history::{self, Pin};
use crate::storage::interior::InteriorPages;
use crate::storage::log::{self, Probe, MAX_IN_FLIGHT};
use crate::storage::{BlockIndex, Location, Snapshot, TxId, Version};
use lock::LockTable;

/// The bytes of commit-record pages each database keeps for assembling patched blocks.
const PATCH_CACHE_BYTES: u64 = 8 * 1024 * 1024;

struct Latest {
    snapshot: Arc<Snapshot>,
    /// When the freshness check that found `snapshot` to be the newest started (or the commit
    /// of this process that made it): the last proof that no newer version existed.
    checked: Instant,
}

/// A past version a database is named at.
pub enum Past {
    /// A URI's `version=` or `as_of=`, still to be looked up.
    Pin(Pin),
    /// The version a connection opened at a past version reads.
    Snapshot(Arc<Snapshot>),
}

/// One database as this process sees it: its objects, its cache, its newest known version,
/// and the locks of the connections that have it open.
pub struct Database {
    pub location: Location,
    /// The process (see [`runtime::generation`]) that opened it.
    generation: u32,
    pub layout: Layout,
    pub cache_size: u64,
    /// The file size a connection last saw, for a database of the sqlite-s3vfs layout.
    legacy_size: AtomicU64,
    backend: Arc<dyn Backend>,
    /// The store without this database's metering and retries, for the check of conditional
    /// writes (see [`Database::check_conditional_writes`]).
    origin: Arc<dyn Backend>,
    /// Where the store is, and whether only this process writes (`single_writer=1`).
    endpoint: Endpoint,
    single_writer: bool,
    metrics: Arc<Metrics>,
    cache: Arc<BlockCache>,
    /// The interior pages its connections read lately, for B-tree prefetch.
    prefetch: Mutex<prefetch::Tracker>,
    /// The interior-page index of a recent checkpoint, once a read missed the cache.
    interior: Arc<interior::IndexSlot>,
    /// The pages of recently read commit records, for assembling patched blocks.
    records: Arc<PatchCache>,
    /// The disk cache directory's files of this database (`cache_dir=`).
    disk: Option<DiskCache>,
    /// The keys of an encrypted database (or of one a process with keys creates): its objects,
    /// and its files in the disk cache, are sealed with them.
    sealer: Option<Arc<Sealer>>,
    latest: Mutex<Latest>,
    /// Whether a freshness check is under way ([`Database::refresh_checked`]).
    checking: Mutex<bool>,
    check_done: Condvar,
    pub(crate) locks: Mutex<LockTable>,
}

/// What `s3vfs_stats()` reports about one database.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DatabaseStats {
    pub layout: &'static str,
    pub bucket: String,
    pub prefix: String,
    pub version: u64,
    pub size: u64,
    pub block_size: u64,
    /// `none` or `zstd:LEVEL` (see `compression=`).
    pub compression: String,
    /// `none` or `aes-256-gcm` (see `S3VFS_ENCRYPTION_KEY`).
    pub encryption: &'static str,
    /// The fingerprint of the database's key, when it is encrypted: never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    pub requests: MetricsSnapshot,
    pub cache: CacheStats,
    /// The disk cache (`cache_dir=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_cache: Option<DiskStats>,
    pub prefetch: prefetch::PrefetchStats,
    pub interior: interior::InteriorStats,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RegistryKey {
    generation: u32,
    endpoint: Endpoint,
    location: Location,
}

fn registry() -> &'static Mutex<HashMap<RegistryKey, Weak<Database>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<RegistryKey, Weak<Database>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The databases this process used last, most recent at the back: a database no connection
/// has open stays here, with its block cache, while the caches of such idle databases hold at
/// most [`IDLE_CACHE_SIZE`] bytes in all, so that a connection opened later (a connection per
/// request, a pool's new connection, the next CLI command's) finds its blocks cached.
fn kept() -> &'static Mutex<VecDeque<Arc<Database>>> {
    static KEPT: OnceLock<Mutex<VecDeque<Arc<Database>>>> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// The byte budget of the caches of idle databases (`S3VFS_IDLE_CACHE_SIZE`), as the last
/// open read it.
static IDLE_CACHE_SIZE: AtomicU64 = AtomicU64::new(crate::config::DEFAULT_IDLE_CACHE_SIZE);

/// At most this many databases are kept, idle or not.
const MAX_KEPT: usize = 64;

/// Marks `database` as the most recently used, then trims the idle ones. A database with no
/// committed version is not kept: its block size and margin are not fixed yet, and the next
/// open may name others.
fn keep(database: &Arc<Database>) {
    if database.layout != Layout::Versioned || database.version().0 == 0 {
        return;
    }
    let mut kept = kept().lock();
    kept.retain(|other| !Arc::ptr_eq(other, database));
    kept.push_back(database.clone());
    trim(&mut kept);
}

/// Lets go of the least recently used idle databases (only this list holds them) until their
/// caches fit the budget; databases of an earlier process (before a fork) go first.
fn trim(kept: &mut VecDeque<Arc<Database>>) {
    let idle = |database: &Arc<Database>| Arc::strong_count(database) == 1;
    kept.retain(|database| !(idle(database) && database.generation != runtime::generation()));
    let budget = IDLE_CACHE_SIZE.load(Ordering::Relaxed);
    let mut idle_bytes: u64 = kept
        .iter()
        .filter(|database| idle(database))
        .map(|database| database.cache.stats().bytes)
        .sum();
    let mut index = 0;
    while index < kept.len() && (idle_bytes > budget || kept.len() > MAX_KEPT) {
        if idle(&kept[index]) {
            idle_bytes -= kept[index].cache.stats().bytes.min(idle_bytes);
            kept.remove(index);
        } else {
            index += 1;
        }
    }
    if budget == 0 {
        kept.retain(|database| !idle(database));
    }
}

/// Lets go of `database` if it is idle: kept, and held by no connection (only by the list and
/// by the caller's reference). Returns whether it did.
fn let_go_if_idle(database: &Arc<Database>) -> bool {
    let mut kept = kept().lock();
    let position = kept.iter().position(|other| Arc::ptr_eq(other, database));
    match position {
        Some(position) if Arc::strong_count(database) == 2 => {
            kept.remove(position);
            true
        }
        _ => false,
    }
}

/// Called when a connection closed its database file: keeps the idle caches within budget.
pub fn connection_closed() {
    trim(&mut kept().lock());
}

/// The runtime generations, endpoints and buckets whose conditional writes this process checked.
fn conditional_writes_checked() -> &'static Mutex<HashSet<(u32, Endpoint, String)>> {
    static CHECKED: OnceLock<Mutex<HashSet<(u32, Endpoint, String)>>> = OnceLock::new();
    CHECKED.get_or_init(Default::default)
}

/// S3 clients by runtime generation, endpoint and bucket.
type Clients = Mutex<HashMap<(u32, Endpoint, String), Arc<dyn Backend>>>;

fn clients() -> &'static Clients {
    static CLIENTS: OnceLock<Clients> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

/// The S3 client for one endpoint and bucket, shared by the databases of this process.
fn s3_backend(endpoint: &Endpoint, bucket: &str) -> Result<Arc<dyn Backend>> {
    let key = (runtime::generation(), endpoint.clone(), bucket.to_string());
    if let Some(backend) = clients().lock().get(&key) {
        return Ok(backend.clone());
    }
    let (endpoint_owned, bucket_owned) = (endpoint.clone(), bucket.to_string());
    let backend: Arc<dyn Backend> = runtime::block_on(async move {
        Ok(Arc::new(
            S3Backend::connect(&endpoint_owned, &bucket_owned).await,
        ))
    })?;
    clients().lock().insert(key, backend.clone());
    Ok(backend)
}

impl Database {
    /// The database `config` names, shared with the other connections of this process.
    pub fn open(config: &Config) -> Result<Arc<Database>> {
        let key = RegistryKey {
            generation: runtime::generation(),
            endpoint: config.endpoint.clone(),
            location: config.location.clone(),
        };
        IDLE_CACHE_SIZE.store(config.idle_cache_size, Ordering::Relaxed);
        let found = registry().lock().get(&key).and_then(Weak::upgrade);
        // An idle database opened again with another cache budget starts over with that one.
        let found = found.filter(|database| {
            (database.cache_size == config.cache_size && database.keys() == config.encryption)
                || !let_go_if_idle(database)
        });
        if let Some(database) = found {
            database.check_layout(config)?;
            database.check_encryption(config)?;
            database.check_single_writer(config)?;
            database.check_block_size(config)?;
            keep(&database);
            return Ok(database);
        }
        let backend = s3_backend(&config.endpoint, &config.location.bucket)?;
        let started = Instant::now();
        let retry = RetryPolicy {
            max_attempts: backend.max_attempts(),
            ..RetryPolicy::default()
        };
        let database = Database::with_backend(config, backend, retry)?;
        if ::log::log_enabled!(::log::Level::Info) {
            let opened = database.stats();
            ::log::info!(
                "s3vfs: opened {} ({} layout) at version {}, {} bytes, in {} ms ({} requests)",
                database.location.url(),
                opened.layout,
                opened.version,
                opened.size,
                started.elapsed().as_millis(),
                opened.requests.requests()
            );
        }
        let database = {
            let mut registry = registry().lock();
            registry.retain(|_, database| database.strong_count() > 0);
            // Another thread may have opened it meanwhile: share that one.
            match registry.get(&key).and_then(Weak::upgrade) {
                Some(existing) => existing,
                None => {
                    registry.insert(key, Arc::downgrade(&database));
                    database
                }
            }
        };
        keep(&database);
        Ok(database)
    }

    /// Opens the database on `backend`, loading its newest version (bounded requests).
    pub fn with_backend(
        config: &Config,
        backend: Arc<dyn Backend>,
        retry: RetryPolicy,
    ) -> Result<Arc<Database>> {
        let metrics = Arc::new(Metrics::default());
        let origin = backend.clone();
        let sealer = config
            .encryption
            .clone()
            .map(|keys| Arc::new(Sealer::new(keys)));
        let backend = stack(
            backend,
            vec![metrics.clone(), process_metrics().clone()],
            retry,
            sealer.clone(),
        );
        let location = config.location.clone();
        let (snapshot, checked) = if config.layout == Layout::SqliteS3vfs {
            // Each connection lists the file when it opens it and when a transaction starts.
            let empty = Snapshot::empty(config.block_size_or_default());
            (Arc::new(empty), Instant::now())
        } else {
            let checked = Instant::now();
            let loaded = {
                let (backend, location) = (backend.clone(), location.clone());
                runtime::block_on(log::load_latest(backend, location, None))?
            };
            if loaded.is_none() {
                refuse_legacy_data(&backend, &location)?;
            }
            let snapshot = loaded.unwrap_or_else(|| {
                let mut empty = Snapshot::empty(config.block_size_or_default());
                if let Some(margin) = config.gc_margin {
                    empty.gc_margin = margin;
                }
                empty.codec = config.compression.unwrap_or_default();
                Arc::new(empty)
            });
            (snapshot, checked)
        };
        let disk = disk_cache(config, snapshot.block_size.bytes())
            .map(|disk| disk.sealed_by(sealer.clone()));
        let records = Arc::new(PatchCache::new(PATCH_CACHE_BYTES));
        // The newest record came with the snapshot: blocks it patches need no second GET.
        records.insert(snapshot.version, snapshot.patches.clone());
        let database = Arc::new(Database {
            location,
            generation: runtime::generation(),
            layout: config.layout,
            cache_size: config.cache_size,
            legacy_size: AtomicU64::new(0),
            backend,
            origin,
            endpoint: config.endpoint.clone(),
            single_writer: config.single_writer,
            metrics,
            cache: Arc::new(BlockCache::new(config.cache_size)),
            prefetch: Mutex::new(prefetch::Tracker::default()),
            interior: Arc::default(),
            records,
            disk,
            sealer,
            latest: Mutex::new(Latest { snapshot, checked }),
            checking: Mutex::new(false),
            check_done: Condvar::new(),
            locks: Mutex::new(LockTable::default()),
        });
        if config.layout == Layout::SqliteS3vfs {
            return Ok(database);
        }
        database.check_block_size(config)?;
        Ok(database)
    }

    fn check_layout(&self, config: &Config) -> Result<()> {
        if config.layout == self.layout {
            return Ok(());
        }
        Err(Error::Format(format!(
            "{} is open in this process with layout={}; it cannot also be opened with layout={}",
            self.location.url(),
            self.layout.name(),
            config.layout.name()
        )))
    }

    /// The keys this database was opened with.
    fn keys(&self) -> Option<Keyring> {
        self.sealer.as_ref().map(|sealer| sealer.ring().clone())
    }

    fn check_encryption(&self, config: &Config) -> Result<()> {
        if self.keys() == config.encryption {
            return Ok(());
        }
        let describe = |keys: Option<Keyring>| match keys {
            Some(keys) => format!("the keys of {}", keys.source()),
            None => "no key".to_string(),
        };
        Err(Error::Config(format!(
            "{} is open in this process with {}; it cannot also be opened with {}",
            self.location.url(),
            describe(self.keys()),
            describe(config.encryption.clone())
        )))
    }

    /// Refuses a database whose layout keeps no versions (sqlite-s3vfs) for the history
    /// functions.
    pub fn check_keeps_history(&self) -> Result<()> {
        if self.layout == Layout::Versioned {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "{} has layout={}, which keeps no versions: migrate it with s3vfs_copy() to the \
             versioned layout for history",
            self.location.url(),
            self.layout.name()
        )))
    }

    fn check_single_writer(&self, config: &Config) -> Result<()> {
        if config.single_writer == self.single_writer {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{} is open in this process with single_writer={}; it cannot also be opened with \
             single_writer={}",
            self.location.url(),
            u8::from(self.single_writer),
            u8::from(config.single_writer)
        )))
    }

    /// Before this process's first commit to a bucket: checks that the server refuses a second
    /// create of one key with `If-None-Match: *`, which is what keeps two writers from both
    /// committing a version. Three requests (counted in the process's totals), once per
    /// endpoint and bucket for the life of the process; skipped with `single_writer=1`.
    pub fn check_conditional_writes(&self) -> Result<()> {
        if self.single_writer || self.layout != Layout::Versioned {
            return Ok(());
        }
        let checked = (
            self.generation,
            self.endpoint.clone(),
            self.location.bucket.clone(),
        );
        if conditional_writes_checked().lock().contains(&checked) {
            return Ok(());
        }
        let backend = stack(
            self.origin.clone(),
            vec![process_metrics().clone()],
            RetryPolicy::default(),
            None,
        );
        let key = format!("{}/probe/{}", self.location.prefix, TxId::random());
        let probe = key.clone();
        let honoured = runtime::block_on(async move {
            honours_if_none_match(&backend, &probe)
                .await
                .map_err(Error::from)
        })?;
        if !honoured {
            let server = self.endpoint.url.as_deref().unwrap_or("AWS S3");
            return Err(Error::Unsupported(format!(
                "{}: the server at {server} accepted a second create of {key} with \
                 If-None-Match: *, so it does not make commits exclusive: two writers could both \
                 commit a version and one would be lost. Use a server that honours \
                 If-None-Match (AWS S3, Cloudflare R2, MinIO), or add single_writer=1 to the URI \
                 if only this process ever writes the database",
                self.location.url()
            )));
        }
        conditional_writes_checked().lock().insert(checked);
        Ok(())
    }

    fn check_block_size(&self, config: &Config) -> Result<()> {
        let snapshot = self.latest();
        let legacy = self.layout == Layout::SqliteS3vfs;
        if legacy && config.block_size_or_default() != snapshot.block_size {
            return Err(Error::Format(format!(
                "block_size={} conflicts with {}, open in this process with block_size={}",
                config.block_size_or_default().bytes(),
                self.location.url(),
                snapshot.block_size.bytes()
            )));
        }
        if let Some(margin) = config.gc_margin {
            if snapshot.version.0 > 0 && margin != snapshot.gc_margin {
                return Err(Error::Format(format!(
                    "gc_margin={} ms conflicts with {}, created with gc_margin={} ms (the \
                     collector's safety margin is fixed when a database is created; drop the \
                     parameter)",
                    margin.as_millis(),
                    self.location.url(),
                    snapshot.gc_margin.as_millis()
                )));
            }
        }
        if let Some(asked) = config.compression {
            if snapshot.version.0 > 0 && asked != snapshot.codec {
                return Err(Error::Format(format!(
                    "compression={asked} conflicts with {}, created with compression={} \
                     (compression is fixed when a database is created; drop the parameter, or \
                     s3vfs_copy it into a new database with the compression you want)",
                    self.location.url(),
                    snapshot.codec
                )));
            }
        }
        match config.block_size {
            Some(asked) if snapshot.version.0 > 0 && asked != snapshot.block_size => Err(Error::Format(format!(
                "block_size={} conflicts with {}, created with block_size={} (the block size is fixed when a \
                 database is created; drop the parameter)",
                asked.bytes(),
                self.location.url(),
                snapshot.block_size.bytes()
            ))),
            _ => Ok(()),
        }
    }

    /// The newest version this process knows of, without asking the store.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.lock().snapshot.clone()
    }

    /// The newest committed version: one GET (see [`Probe`]), unless the last check is younger
    /// than `staleness`.
    pub fn refresh(&self, staleness: Duration) -> Result<Arc<Snapshot>> {
        self.refresh_checked(staleness)
            .map(|(snapshot, _)| snapshot)
    }

    /// As [`Database::refresh`], with the instant the freshness check that found the version
    /// started: a commit on top of it must land within half the collector's margin of that.
    ///
    /// The connections and threads of this process share checks: a check that started after
    /// this call began sees every commit that completed before it, so it serves this call too,
    /// and while one check is under way the others wait for it instead of sending their own.
    pub fn refresh_checked(&self, staleness: Duration) -> Result<(Arc<Snapshot>, Instant)> {
        let began = Instant::now();
        loop {
            {
                let latest = self.latest.lock();
                let fresh_enough = !staleness.is_zero() && latest.checked.elapsed() < staleness;
                if latest.checked >= began || fresh_enough {
                    return Ok((latest.snapshot.clone(), latest.checked));
                }
            }
            let mut checking = self.checking.lock();
            if !*checking {
                *checking = true;
                break;
            }
            self.check_done.wait(&mut checking);
        }
        let _check = CheckUnderWay(self);
        let (known, proven) = {
            let latest = self.latest.lock();
            (latest.snapshot.clone(), latest.checked)
        };
        // Before the first version is known, so is not the database's margin: list.
        let probe = if known.version.0 > 0 && proven.elapsed() < known.gc_margin / 2 {
            Probe::NextRecord
        } else {
            Probe::List
        };
        let (backend, location) = (self.backend.clone(), self.location.clone());
        let started = Instant::now();
        let found = runtime::block_on(log::newer_than(backend, location, known.clone(), probe))?;
        if let Some(next) = &found {
            self.patch_cached(&known, next);
        }
        let mut latest = self.latest.lock();
        if let Some(snapshot) = found {
            if snapshot.version > latest.snapshot.version {
                latest.snapshot = snapshot;
            }
        }
        latest.checked = latest.checked.max(started);
        Ok((latest.snapshot.clone(), latest.checked))
    }

    /// Records a version this process just committed, by a commit that started at `started`
    /// (no newer version can exist that was created before its record).
    pub fn published(&self, snapshot: Arc<Snapshot>, started: Instant) {
        let mut latest = self.latest.lock();
        if snapshot.version > latest.snapshot.version {
            latest.snapshot = snapshot;
            latest.checked = started;
        }
    }

    /// The past version `pin` names: its record and base checkpoint (two GETs), after a LIST
    /// and a binary search for `as_of`. The block cache is shared with the live database.
    pub fn pinned_snapshot(&self, pin: Pin) -> Result<Arc<Snapshot>> {
        let (backend, location) = (self.backend.clone(), self.location.clone());
        runtime::block_on(history::load_pinned(backend, location, pin))
    }

    /// Commits, as the next version, the content of `old` (see [`history::restore`]).
    pub fn restore(&self, old: Version) -> Result<Arc<Snapshot>> {
        self.check_conditional_writes()?;
        let old = self.pinned_snapshot(Pin::Version(old))?;
        let (parent, checked) = self.refresh_checked(Duration::ZERO)?;
        let started = Instant::now();
        let (backend, location) = (self.backend.clone(), self.location.clone());
        let records = self.records.clone();
        let restored = runtime::block_on(history::restore(
            backend, location, parent, checked, old, records,
        ))?;
        self.published(restored.clone(), started);
        Ok(restored)
    }

    /// The content of blocks, each `(index, where its content comes from, its length)`:
    /// through the cache, then the disk cache; the rest are fetched concurrently from the
    /// store (objects and the records that patch them), checked against their checksums, and
    /// written to the disk cache.
    pub fn read_blocks(&self, wanted: &[(BlockIndex, BlockRef, u64)]) -> Result<Vec<Bytes>> {
        let keys: Vec<BlockKey> = wanted
            .iter()
            .map(|(index, entry, _)| BlockKey::of(*index, entry))
            .collect();
        let sources = sources(&keys, wanted);
        self.cache
            .get_many(&keys, |missing| self.fetch_blocks(&missing, &sources))
    }

    /// Starts fetching, on a thread of its own, those of `wanted` that are neither cached nor
    /// being fetched, and returns how many: a reader that wants one of them meanwhile waits
    /// for it rather than fetching it again.
    pub fn prefetch(self: &Arc<Self>, wanted: &[(BlockIndex, BlockRef, u64)]) -> u64 {
        let keys: Vec<BlockKey> = wanted
            .iter()
            .map(|(index, entry, _)| BlockKey::of(*index, entry))
            .collect();
        let claim = self.cache.claim(&keys);
        let count = claim.keys().len() as u64;
        if count == 0 {
            return 0;
        }
        let sources = sources(&keys, wanted);
        let database = self.clone();
        // Should the thread not start, the claim is dropped with it: readers waiting on its
        // blocks get an error, as from a failed fetch.
        let _ = std::thread::Builder::new()
            .name("s3vfs-prefetch".into())
            .spawn(move || {
                let outcomes = database.fetch_blocks(claim.keys(), &sources);
                claim.settle(outcomes);
            });
        count
    }

    /// The interior pages this database's connections read lately (see [`prefetch`]).
    pub fn prefetch_tracker(&self) -> parking_lot::MutexGuard<'_, prefetch::Tracker> {
        self.prefetch.lock()
    }

    /// Fetches blocks `missing`, whose sources are in `sources`: from the disk cache, else
    /// concurrently from the store (objects and the records that patch them), checked against
    /// their checksums, and written to the disk cache. One outcome per key, in order.
    fn fetch_blocks(
        &self,
        missing: &[BlockKey],
        sources: &HashMap<BlockKey, (BlockRef, u64)>,
    ) -> Result<Vec<Result<Bytes>>> {
        let expected = |key: &BlockKey| sources.get(key).map_or(0, |(_, len)| *len);
        let mut found: Vec<Option<Result<Bytes>>> = missing
            .iter()
            .map(|key| {
                let disk = self.disk.as_ref()?;
                disk.get(key, expected(key)).map(Ok)
            })
            .collect();
        let remote: Vec<BlockKey> = missing
            .iter()
            .zip(&found)
            .filter(|(_, found)| found.is_none())
            .map(|(key, _)| *key)
            .collect();
        let codec = self.latest().codec;
        let fetches: Vec<_> = remote
            .iter()
            .filter_map(|key| {
                let (entry, len) = sources.get(key)?.clone();
                let (backend, location, records, index) = (
                    self.backend.clone(),
                    self.location.clone(),
                    self.records.clone(),
                    key.index,
                );
                Some(async move {
                    let fetched =
                        block::fetch(&backend, &location, codec, index, &entry, len, &records)
                            .await;
                    Ok::<Result<Bytes>, Error>(fetched)
                })
            })
            .collect();
        let fetched = runtime::block_on(async move { run_bounded(MAX_IN_FLIGHT, fetches).await })?;
        let mut fetched = remote.iter().zip(fetched);
        for slot in found.iter_mut().filter(|slot| slot.is_none()) {
            if let Some((key, outcome)) = fetched.next() {
                if let (Some(disk), Ok(data)) = (self.disk.as_ref(), &outcome) {
                    disk.put(key, data);
                }
                *slot = Some(outcome);
            }
        }
        Ok(found
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| Err(Error::Runtime("a block fetch went missing".into())))
            })
            .collect())
    }

    /// Asks for the interior-page index of `snapshot`'s checkpoint (see
    /// [`crate::storage::interior`]), when it has one within a quarter of `cache_size`: from
    /// the disk cache, else from the store, on a thread of its own so that the caller fetches
    /// what it needs meanwhile. Returns whether a load started now.
    pub fn want_interior(self: &Arc<Self>, snapshot: &Arc<Snapshot>) -> bool {
        if snapshot.interior == 0 || snapshot.interior > self.cache_size / 4 {
            return false;
        }
        let Some(load) = self.interior.begin(snapshot) else {
            return false;
        };
        let (database, snapshot) = (self.clone(), snapshot.clone());
        // Should the thread not start, the load is dropped with it, and readers go on.
        let _ = std::thread::Builder::new()
            .name("s3vfs-interior".into())
            .spawn(move || {
                let index = database.load_interior(&snapshot);
                if let Some(index) = &index {
                    database.cache.reserve(index.bytes());
                }
                load.finish(index);
            });
        true
    }

    fn load_interior(&self, snapshot: &Snapshot) -> Option<Arc<InteriorPages>> {
        let name = format!(
            "interior-{:020}-{}",
            snapshot.base_version.0, snapshot.base_txid
        );
        let key = self
            .location
            .interior_key(snapshot.base_version, snapshot.base_txid);
        if let Some(body) = self
            .disk
            .as_ref()
            .and_then(|disk| disk.get_named(&name, snapshot.interior))
        {
            if let Ok(index) = InteriorPages::decode(&key, &body) {
                return Some(Arc::new(index));
            }
        }
        let fetched = {
            let (backend, location, snapshot) = (
                self.backend.clone(),
                self.location.clone(),
                snapshot.clone(),
            );
            runtime::block_on(
                async move { log::fetch_interior(&backend, &location, &snapshot).await },
            )
        };
        match fetched {
            Ok(Some((body, index))) => {
                if let Some(disk) = &self.disk {
                    disk.put_named(&name, &body);
                }
                Some(index)
            }
            Ok(None) => None,
            Err(error) => {
                ::log::warn!("s3vfs: {key} could not be read, blocks serve its pages: {error}");
                None
            }
        }
    }

    /// Page `number` as of `snapshot` from the loaded interior-page index (after a load under
    /// way), if the index holds it for that version.
    pub fn interior_page(&self, snapshot: &Snapshot, number: u32) -> Option<Bytes> {
        self.interior.page(number, snapshot)
    }

    /// Whether the loaded interior-page index holds page `number` for `snapshot`.
    pub fn interior_covers(&self, snapshot: &Snapshot, number: u32) -> bool {
        self.interior.covers(number, snapshot)
    }

    /// The loaded interior-page index, if it is the one of `snapshot`'s checkpoint.
    pub fn loaded_interior(&self, snapshot: &Snapshot) -> Option<Arc<InteriorPages>> {
        self.interior.of(snapshot)
    }

    /// The pages of recently read commit records, shared by this database's connections.
    pub fn patch_cache(&self) -> Arc<PatchCache> {
        self.records.clone()
    }

    /// Patches the cached blocks of `known` that `next`, the version after it, changed with
    /// pages, so that a reader following the log does not fetch them again.
    fn patch_cached(&self, known: &Snapshot, next: &Snapshot) {
        self.records.insert(next.version, next.patches.clone());
        if next.version.0 != known.version.0 + 1 {
            return;
        }
        for (index, patch) in next.patches.iter() {
            let (Some(before), Some(after)) = (known.block_ref(*index), next.block_ref(*index))
            else {
                continue;
            };
            let Some(old) = self.cache.peek(&BlockKey::of(*index, before)) else {
                continue;
            };
            let mut content = old.to_vec();
            let fits = patch.apply(&mut content).is_some();
            if fits
                && after
                    .sum
                    .is_some_and(|sum| block::checksum(&content) == sum)
            {
                self.cache
                    .insert(BlockKey::of(*index, after), Bytes::from(content));
            }
        }
    }

    /// A block if this process has it cached; never fetches.
    pub fn cached_block(&self, key: &BlockKey) -> Option<Bytes> {
        self.cache.peek(key)
    }

    pub fn forget_block(&self, key: &BlockKey) {
        self.cache.forget(key);
    }

    /// Keeps a block this process just wrote, in the cache and the disk cache.
    pub fn remember_block(&self, key: BlockKey, data: Bytes) {
        if let Some(disk) = &self.disk {
            disk.put(&key, &data);
        }
        self.cache.insert(key, data);
    }

    /// Blocks through the cache by key; misses go to `fetch` together (see
    /// [`BlockCache::get_many`]).
    pub fn cached_blocks(
        &self,
        keys: &[BlockKey],
        fetch: impl FnOnce(Vec<BlockKey>) -> Result<Vec<Result<Bytes>>>,
    ) -> Result<Vec<Bytes>> {
        self.cache.get_many(keys, fetch)
    }

    /// Records the size a connection saw of a database of the sqlite-s3vfs layout.
    pub fn set_legacy_size(&self, size: u64) {
        self.legacy_size.store(size, Ordering::Relaxed);
    }

    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    pub fn stats(&self) -> DatabaseStats {
        let snapshot = self.latest();
        let size = match self.layout {
            Layout::Versioned => snapshot.size,
            Layout::SqliteS3vfs => self.legacy_size.load(Ordering::Relaxed),
        };
        DatabaseStats {
            layout: self.layout.name(),
            bucket: self.location.bucket.clone(),
            prefix: self.location.prefix.clone(),
            version: snapshot.version.0,
            size,
            block_size: snapshot.block_size.bytes(),
            compression: snapshot.codec.to_string(),
            encryption: match self.sealer {
                Some(_) => crate::crypto::CIPHER,
                None => "none",
            },
            key_fingerprint: self.sealer.as_ref().and_then(|sealer| {
                let own = sealer.fingerprint();
                // A database with no object yet will be sealed with the ring's first key.
                own.or_else(|| sealer.ring().fingerprints().next())
                    .map(|fingerprint| fingerprint.to_string())
            }),
            requests: self.metrics.snapshot(),
            cache: self.cache.stats(),
            disk_cache: self.disk.as_ref().map(DiskCache::stats),
            prefetch: self.prefetch.lock().stats,
            interior: self.interior.stats(),
        }
    }

    pub fn version(&self) -> Version {
        self.latest().version
    }
}

/// Where each of `keys` comes from, and its length: `wanted` in the same order.
fn sources(
    keys: &[BlockKey],
    wanted: &[(BlockIndex, BlockRef, u64)],
) -> HashMap<BlockKey, (BlockRef, u64)> {
    keys.iter()
        .zip(wanted)
        .map(|(key, (_, entry, len))| (*key, (entry.clone(), *len)))
        .collect()
}

/// The disk cache of the database `config` names, if it asks for one and the directory can be
/// used (otherwise that is reported once, and blocks come from the store).
fn disk_cache(config: &Config, block_size: u64) -> Option<DiskCache> {
    let (root, budget) = config.disk_cache.as_ref()?;
    if config.layout != Layout::Versioned {
        return None;
    }
    let directory = DiskDirectory::open(root, *budget, block_size, crate::logging::warn)?;
    let namespace = format!(
        "{}|{}|{}",
        config.endpoint.url.as_deref().unwrap_or("aws"),
        config.location.bucket,
        config.location.prefix
    );
    Some(directory.database(&namespace))
}

/// Marks a freshness check under way; when it ends, however it ends (an error or a panic
/// included), the connections waiting for it are woken.
struct CheckUnderWay<'a>(&'a Database);

impl Drop for CheckUnderWay<'_> {
    fn drop(&mut self) {
        *self.0.checking.lock() = false;
        self.0.check_done.notify_all();
    }
}

/// Refuses to create a database of the versioned layout where one of the sqlite-s3vfs layout
/// is (`P/0000000000` exists): the two would mix their objects under one prefix.
fn refuse_legacy_data(backend: &Arc<dyn Backend>, location: &Location) -> Result<()> {
    let (backend, first) = (
        backend.clone(),
        crate::vfs::legacy::block_key(&location.prefix, crate::storage::BlockIndex(0)),
    );
    let found =
        runtime::block_on(async move { Ok(backend.list(&first, None).await?.into_iter().next()) })?;
    match found {
        Some(object) => Err(Error::Format(format!(
            "{} holds a database of the sqlite-s3vfs layout (s3://{}/{} exists); open it with \
             layout=sqlite-s3vfs and the block_size it was written with",
            location.url(),
            location.bucket,
            object.key
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Arc<crate::storage::block::PatchCache> {
        Arc::new(crate::storage::block::PatchCache::new(1 << 20))
    }
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{BackendResult, ObjectInfo, PutOutcome};
    use crate::storage::BlockSize;

    /// The in-memory store with 5 ms per request, so that checks overlap.
    #[derive(Default)]
    struct Slow(MemoryBackend);

    #[async_trait::async_trait]
    impl Backend for Slow {
        fn bucket(&self) -> &str {
            self.0.bucket()
        }
        async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.0.get(key).await
        }
        async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
            self.0.put(key, body).await
        }
        async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
            self.0.put_if_absent(key, body).await
        }
        async fn list(
            &self,
            prefix: &str,
            start_after: Option<&str>,
        ) -> BackendResult<Vec<ObjectInfo>> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.0.list(prefix, start_after).await
        }
        async fn delete(&self, keys: &[String]) -> BackendResult<()> {
            self.0.delete(keys).await
        }
    }

    #[test]
    fn threads_share_freshness_checks_and_each_sees_what_was_committed_before_it_began() {
        let mut config =
            Config::parse("shared.db", &[("bucket".into(), "memory".into())], |_| None)
                .expect("valid");
        config.block_size = BlockSize::new(512);
        let backend: Arc<dyn Backend> = Arc::new(Slow::default());
        let writer = Database::with_backend(&config, backend.clone(), RetryPolicy::default())
            .expect("opens");
        let reader =
            Database::with_backend(&config, backend, RetryPolicy::default()).expect("opens");
        let commit = |database: &Arc<Database>| -> Version {
            let (parent, checked) = database.refresh_checked(Duration::ZERO).expect("checks");
            let mut transaction =
                log::Transaction::new(parent, crate::storage::TxId::random(), 512, checked);
            transaction.upload = vec![(crate::storage::BlockIndex(0), Bytes::from(vec![7u8; 512]))];
            let (backend, location) = (database.backend(), database.location.clone());
            let started = Instant::now();
            let snapshot =
                runtime::block_on(log::commit(backend, location, transaction, records()))
                    .expect("commits");
            database.published(snapshot.clone(), started);
            snapshot.version
        };
        let first = commit(&writer);
        assert_eq!(
            reader.refresh(Duration::ZERO).expect("checks").version,
            first
        );
        let threads = 8;
        let rounds = 40;
        let before = reader.metrics.snapshot();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..rounds {
                        reader.refresh(Duration::ZERO).expect("checks");
                    }
                });
            }
        });
        let used = reader.metrics.snapshot();
        let checks = used.get - before.get;
        assert_eq!(
            used.list, before.list,
            "no LIST while the last proof is fresh"
        );
        assert!(
            checks * 2 <= threads * rounds,
            "{checks} GETs for {} freshness checks",
            threads * rounds
        );
        eprintln!("{checks} GETs for {} freshness checks", threads * rounds);
        // Strict: a check begun after a commit completed always sees it.
        for _ in 0..3 {
            let committed = commit(&writer);
            assert_eq!(
                reader.refresh(Duration::ZERO).expect("checks").version,
                committed
            );
        }
    }

    #[test]
    fn a_reader_following_the_log_patches_its_cached_blocks_instead_of_fetching_them() {
        use crate::storage::log::{Edit, Transaction};
        use crate::storage::{BlockIndex, TxId};
        let mut config =
            Config::parse("follow.db", &[("bucket".into(), "memory".into())], |_| None)
                .expect("valid");
        config.block_size = BlockSize::new(4096);
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let writer = Database::with_backend(&config, backend.clone(), RetryPolicy::default())
            .expect("opens");
        let reader =
            Database::with_backend(&config, backend, RetryPolicy::default()).expect("opens");
        let commit = |edit: Option<(BlockIndex, Bytes, Bytes)>| {
            let (parent, checked) = writer.refresh_checked(Duration::ZERO).expect("checks");
            let mut transaction = Transaction::new(parent, TxId::random(), 4 * 4096, checked);
            match edit {
                Some((index, original, data)) => {
                    transaction.edits.push((index, Edit { data, original }))
                }
                None => {
                    transaction.upload = (0..4)
                        .map(|i| (BlockIndex(i), Bytes::from(vec![i as u8; 4096])))
                        .collect()
                }
            }
            let started = Instant::now();
            let snapshot = runtime::block_on(log::commit(
                writer.backend(),
                writer.location.clone(),
                transaction,
                writer.patch_cache(),
            ))
            .expect("commits");
            writer.published(snapshot.clone(), started);
            snapshot
        };
        let read = |snapshot: &Snapshot| -> Vec<Bytes> {
            let wanted: Vec<_> = (0..4)
                .map(|i| {
                    let index = BlockIndex(i);
                    let entry = snapshot.block_ref(index).expect("in file").clone();
                    (index, entry, snapshot.block_len(index))
                })
                .collect();
            reader.read_blocks(&wanted).expect("reads")
        };
        commit(None);
        let first = reader.refresh(Duration::ZERO).expect("checks");
        let blocks = read(&first);
        let mut changed = blocks[2].to_vec();
        changed[100..110].fill(0xee);
        let second = commit(Some((
            BlockIndex(2),
            blocks[2].clone(),
            Bytes::from(changed.clone()),
        )));
        assert!(second.patches.contains_key(&BlockIndex(2)), "sent as pages");

        let before = reader.stats().requests;
        let followed = reader.refresh(Duration::ZERO).expect("checks");
        assert_eq!(followed.version, second.version);
        let blocks = read(&followed);
        let after = reader.stats().requests;
        assert_eq!(blocks[2][..], changed[..]);
        // The record of the new version and the probe for the one after it: no block GET.
        assert_eq!(after.get - before.get, 2, "{after:?}");
    }

    /// A store that ignores `If-None-Match: *`, as some S3-compatible servers do.
    #[derive(Default)]
    struct Careless(MemoryBackend);

    #[async_trait::async_trait]
    impl Backend for Careless {
        fn bucket(&self) -> &str {
            self.0.bucket()
        }
        async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
            self.0.put(key, body).await
        }
        async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
            self.0.put(key, body).await.map(|_| PutOutcome::Created)
        }
        async fn list(
            &self,
            prefix: &str,
            start_after: Option<&str>,
        ) -> BackendResult<Vec<ObjectInfo>> {
            self.0.list(prefix, start_after).await
        }
        async fn delete(&self, keys: &[String]) -> BackendResult<()> {
            self.0.delete(keys).await
        }
    }

    #[test]
    fn a_server_that_ignores_if_none_match_is_refused_before_the_first_commit() {
        let config = |name: &str, single_writer: &str| {
            Config::parse(
                name,
                &[
                    ("bucket".into(), "careless".into()),
                    ("single_writer".into(), single_writer.into()),
                ],
                |_| None,
            )
            .expect("valid")
        };
        let careless = Arc::new(Careless::default());
        let database = Database::with_backend(
            &config("careless.db", "0"),
            careless.clone(),
            RetryPolicy::default(),
        )
        .expect("opens");
        let error = database.check_conditional_writes().expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("If-None-Match") && message.contains("single_writer=1"),
            "{message}"
        );
        assert!(
            careless.0.keys().is_empty(),
            "the probe object is deleted: {:?}",
            careless.0.keys()
        );
        // Opting out: one writer only.
        let single = Database::with_backend(
            &config("careless-single.db", "1"),
            careless,
            RetryPolicy::default(),
        )
        .expect("opens");
        single.check_conditional_writes().expect("skipped");

        // A server that honours it passes once per process, endpoint and bucket.
        let memory = Arc::new(MemoryBackend::new());
        let counted = Arc::new(Metrics::default());
        let metered: Arc<dyn Backend> = Arc::new(crate::backend::metered::MeteredBackend::new(
            memory.clone(),
            vec![counted.clone()],
        ));
        let honest =
            Database::with_backend(&config("honest.db", "0"), metered, RetryPolicy::default())
                .expect("opens");
        let opened = counted.snapshot();
        honest.check_conditional_writes().expect("passes");
        let checked = counted.snapshot();
        assert_eq!(
            (
                checked.put_if_absent - opened.put_if_absent,
                checked.delete - opened.delete
            ),
            (2, 1)
        );
        honest.check_conditional_writes().expect("passes");
        assert_eq!(
            counted.snapshot().requests(),
            checked.requests(),
            "checked once"
        );
        assert!(memory.keys().is_empty());
    }
}
