//! The collector: deletes the commit records, checkpoints and blocks that no version inside
//! the retention window needs, and the blocks of transactions that never committed.
//!
//! It deletes an unreferenced object only when the object is older than the database's
//! safety margin by the store's own clock (its LastModified against the LastModified of the
//! marker `P/collector` the collector writes first), and it always keeps the newest version
//! and every version superseded less than a margin ago. Writers, in
//! turn, never land a commit record later than half a margin after the freshness check that
//! chose its parent (see `log::commit`). README.md ("Retention and garbage collection") gives
//! the argument that together these make collecting safe while others read and write.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::block::BlockRef;
use super::format::{ParsedRecord, DEFAULT_GC_MARGIN_MS, FORMAT_VERSION};
use super::history::{current_at, list_records};
use super::log::{get_checkpoint, get_record, now_ms, MAX_IN_FLIGHT};
use super::{Location, TxId, Version};
use crate::backend::{run_bounded, Backend, ObjectInfo};
use crate::error::{Error, Result};
use crate::time::parse_duration;

/// The store reports LastModified to the second: an object may be up to this much older than
/// its LastModified says.
const CLOCK_RESOLUTION_MS: u64 = 1000;
/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;

/// Which versions the collector keeps readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The newest `n` versions (at least 1).
    Versions(u64),
    /// Every version committed within this long before the collector runs, and the version
    /// that was current at the start of that window (so `as_of=` works across the window).
    Within(Duration),
}

impl Keep {
    /// The default: versions of the last 24 hours.
    pub const DEFAULT: Keep = Keep::Within(Duration::from_secs(24 * 60 * 60));

    /// Parses `100` (versions) or a duration: `7d`, `24h`, `30m`, `90s`, `500ms`.
    pub fn parse(text: &str) -> Option<Keep> {
        let text = text.trim();
        if let Ok(count) = text.parse::<u64>() {
            return (count >= 1).then_some(Keep::Versions(count));
        }
        parse_duration(text)?.ok().map(Keep::Within)
    }
}

impl std::fmt::Display for Keep {
    /// As [`Keep::parse`] reads it: `100`, `7d`, `24h`, `90s`, `500ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Versions(count) => write!(f, "{count}"),
            Keep::Within(window) => {
                let millis = window.as_millis();
                let units = [
                    (86_400_000, "d"),
                    (3_600_000, "h"),
                    (60_000, "m"),
                    (1000, "s"),
                ];
                match units
                    .iter()
                    .find(|(size, _)| millis > 0 && millis % size == 0)
                {
                    Some((size, unit)) => write!(f, "{}{unit}", millis / size),
                    None => write!(f, "{millis}ms"),
                }
            }
        }
    }
}

/// A count of objects and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub objects: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, object: &ObjectInfo) {
        self.objects += 1;
        self.bytes += object.size;
    }
}

/// Objects by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Kinds {
    pub records: Tally,
    pub checkpoints: Tally,
    pub blocks: Tally,
    pub total: Tally,
}

impl Kinds {
    fn finish(mut self) -> Kinds {
        self.total = Tally {
            objects: self.records.objects + self.checkpoints.objects + self.blocks.objects,
            bytes: self.records.bytes + self.checkpoints.bytes + self.blocks.bytes,
        };
        self
    }
}

/// What one run of the collector did, as `s3vfs_gc()` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub keep: String,
    pub margin_ms: u64,
    /// The store's time when the collector started (Unix milliseconds).
    pub store_time_ms: u64,
    pub newest_version: Option<u64>,
    /// The versions whose every object was kept.
    pub retained_versions: u64,
    pub oldest_retained_version: Option<u64>,
    pub removed: Kinds,
    pub kept: Kinds,
    /// Objects that were unreferenced but younger than the margin, so kept for now.
    pub kept_for_margin: Tally,
}

/// The store's current time: the LastModified of the marker the collector writes (a PUT and
/// a LIST of one key).
async fn store_now(backend: &Arc<dyn Backend>, location: &Location) -> Result<u64> {
    let key = format!("{}/collector", location.prefix);
    let body = serde_json::json!({ "format": FORMAT_VERSION, "started_ms": now_ms() });
    backend
        .put(&key, bytes::Bytes::from(body.to_string()))
        .await?;
    let listed = backend.list(&key, None).await?;
    listed
        .iter()
        .find(|object| object.key == key)
        .map(|object| object.modified_ms)
        .ok_or_else(|| Error::Corrupt {
            key,
            why: "the collector's marker is not listed right after it was written".into(),
        })
}

fn parse_block_key(location: &Location, key: &str) -> Option<(u64, TxId)> {
    let rest = key.strip_prefix(&format!("{}/blocks/", location.prefix))?;
    let (index, txid) = rest.split_once('/')?;
    (index.len() == 10).then_some(())?;
    Some((index.parse().ok()?, TxId::parse(txid)?))
}

/// The checkpoint `key` names, or whose interior-page index it is.
fn parse_checkpoint_key(location: &Location, key: &str) -> Option<(Version, TxId)> {
    let key = key.strip_suffix(super::INTERIOR_SUFFIX).unwrap_or(key);
    let rest = key.strip_prefix(&format!("{}/checkpoints/", location.prefix))?;
    let (version, txid) = rest.split_once('-')?;
    (version.len() == 20).then_some(())?;
    Some((Version(version.parse().ok()?), TxId::parse(txid)?))
}

/// Runs the collector once on the database at `location`.
pub async fn collect(
    backend: Arc<dyn Backend>,
    location: Location,
    keep: Keep,
) -> Result<GcReport> {
    collect_reporting(backend, location, keep, |_, _| {}).await
}

/// As [`collect`], telling `deleted` how many objects of how many it has deleted after each
/// batch.
pub async fn collect_reporting(
    backend: Arc<dyn Backend>,
    location: Location,
    keep: Keep,
    mut deleted: impl FnMut(u64, u64) + Send,
) -> Result<GcReport> {
    let now = store_now(&backend, &location).await?;
    let (checkpoint_prefix, block_prefix) = (
        format!("{}/checkpoints/", location.prefix),
        format!("{}/blocks/", location.prefix),
    );
    let (records, checkpoints, blocks) = tokio::join!(
        list_records(&backend, &location),
        backend.list(&checkpoint_prefix, None),
        backend.list(&block_prefix, None),
    );
    let (records, checkpoints, blocks) = (records?, checkpoints?, blocks?);

    let newest = match records.last() {
        Some((version, _)) => Some(get_record(&backend, &location, *version).await?),
        None => None,
    };
    let margin_ms = newest.as_ref().map_or(DEFAULT_GC_MARGIN_MS, |record| {
        record.gc_margin.as_millis() as u64
    });
    // An object is old enough to delete when even its earliest possible creation time is more
    // than a margin before the collector's start.
    let old_enough =
        |object: &ObjectInfo| object.modified_ms + margin_ms + CLOCK_RESOLUTION_MS < now;

    // The versions to keep, as indexes into `records`.
    let mut retained: BTreeSet<usize> = BTreeSet::new();
    if let Some(last) = records.len().checked_sub(1) {
        retained.insert(last);
        match keep {
            Keep::Versions(count) => {
                let newest_version = records[last].0;
                retained.extend(
                    (0..records.len())
                        .filter(|index| records[*index].0 .0 + count > newest_version.0),
                );
            }
            Keep::Within(window) => {
                let start = now.saturating_sub(window.as_millis() as u64);
                let first = current_at(&backend, &location, &records, start)
                    .await?
                    .unwrap_or(0);
                retained.extend(first..records.len());
            }
        }
        for index in 0..records.len() {
            // A version that is (or was, less than a margin ago) the newest may be pinned by a
            // reader or be the parent of a commit in flight.
            let recent = |object: &ObjectInfo| !old_enough(object);
            let superseded_recently = records.get(index + 1).is_some_and(|(_, next)| recent(next));
            if recent(&records[index].1) || superseded_recently {
                retained.insert(index);
            }
        }
    }

    // Everything the retained versions reference. A patched block needs the record that
    // carries its pages: the versions from the oldest such record on are retained too, so
    // that every listed version stays readable (pages never reach back past a checkpoint, so
    // this adds at most the versions since the oldest retained version's checkpoint).
    let mut retained_records: BTreeMap<Version, ParsedRecord> = BTreeMap::new();
    loop {
        let fetches: Vec<_> = retained
            .iter()
            .map(|index| records[*index].0)
            .filter(|version| !retained_records.contains_key(version))
            .map(|version| {
                let (backend, location) = (backend.clone(), location.clone());
                async move {
                    match get_record(&backend, &location, version).await {
                        Ok(record) => Ok(Some(record)),
                        // Deleted meanwhile by another collector with a shorter window.
                        Err(Error::Corrupt { .. })
                            if backend.get(&location.log_key(version)).await?.is_none() =>
                        {
                            Ok(None)
                        }
                        Err(error) => Err(error),
                    }
                }
            })
            .collect();
        for record in run_bounded(MAX_IN_FLIGHT, fetches)
            .await?
            .into_iter()
            .flatten()
        {
            retained_records.insert(record.version, record);
        }
        let oldest_patch = retained_records
            .values()
            .flat_map(|record| record.changes.values())
            .filter_map(|entry| entry.patch)
            .min();
        let first_retained = retained.first().map(|index| records[*index].0);
        match (oldest_patch, first_retained) {
            (Some(oldest), Some(first)) if oldest < first => {
                let before = retained.len();
                retained.extend((0..records.len()).filter(|index| records[*index].0 >= oldest));
                if retained.len() == before {
                    break;
                }
            }
            _ => break,
        }
    }
    let retained_records: Vec<ParsedRecord> = retained_records.into_values().collect();
    let needed_checkpoints: BTreeSet<(Version, TxId)> = retained_records
        .iter()
        .map(|record| (record.base_version, record.base_txid))
        .collect();
    let fetches: Vec<_> = needed_checkpoints
        .iter()
        .map(|(version, txid)| {
            let (backend, location, version, txid) =
                (backend.clone(), location.clone(), *version, *txid);
            async move {
                let checkpoint = get_checkpoint(&backend, &location, version, txid).await?;
                Ok::<_, Error>(((version, txid), checkpoint.blocks))
            }
        })
        .collect();
    let bases: BTreeMap<(Version, TxId), Vec<BlockRef>> = run_bounded(MAX_IN_FLIGHT, fetches)
        .await?
        .into_iter()
        .collect();
    let mut referenced: HashSet<(u64, TxId)> = HashSet::new();
    for record in &retained_records {
        let base = bases
            .get(&(record.base_version, record.base_txid))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for index in 0..record.block_size.block_count(record.size) {
            let entry = record
                .changes
                .get(&super::BlockIndex(index))
                .or_else(|| base.get(index as usize));
            if let Some(entry) = entry {
                referenced.insert((index, entry.object));
            }
        }
    }
    let retained_versions: HashSet<Version> =
        retained.iter().map(|index| records[*index].0).collect();

    // What to delete.
    let mut removed = Kinds::default();
    let mut kept = Kinds::default();
    let mut kept_for_margin = Tally::default();
    let mut doomed: Vec<String> = Vec::new();
    let mut sort =
        |object: &ObjectInfo, needed: bool, removed_tally: &mut Tally, kept_tally: &mut Tally| {
            if !needed && old_enough(object) {
                removed_tally.add(object);
                doomed.push(object.key.clone());
            } else {
                if !needed {
                    kept_for_margin.add(object);
                }
                kept_tally.add(object);
            }
        };
    for (version, object) in &records {
        let needed = retained_versions.contains(version);
        sort(object, needed, &mut removed.records, &mut kept.records);
    }
    for object in &checkpoints {
        let needed = match parse_checkpoint_key(&location, &object.key) {
            Some(name) => needed_checkpoints.contains(&name),
            None => true,
        };
        sort(
            object,
            needed,
            &mut removed.checkpoints,
            &mut kept.checkpoints,
        );
    }
    for object in &blocks {
        let needed = match parse_block_key(&location, &object.key) {
            Some(name) => referenced.contains(&name),
            None => true,
        };
        sort(object, needed, &mut removed.blocks, &mut kept.blocks);
    }

    // Records first: a crash midway leaves unreferenced blocks for the next run, never a
    // listed version whose blocks are gone.
    let mut done = 0;
    for batch in doomed.chunks(DELETE_BATCH) {
        backend.delete(batch).await?;
        done += batch.len() as u64;
        deleted(done, doomed.len() as u64);
    }

    let oldest_retained_version = retained_records.iter().map(|record| record.version.0).min();
    Ok(GcReport {
        keep: keep.to_string(),
        margin_ms,
        store_time_ms: now,
        newest_version: records.last().map(|(version, _)| version.0),
        retained_versions: retained_records.len() as u64,
        oldest_retained_version,
        removed: removed.finish(),
        kept: kept.finish(),
        kept_for_margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::runtime::block_on;
    use crate::storage::codec::Codec;
    use crate::storage::history::load_version;
    use crate::storage::interior::InteriorPages;
    use crate::storage::log::{commit, fetch_interior, load_latest, upload_blocks, Transaction};
    use crate::storage::{BlockIndex, BlockSize, Snapshot};
    use bytes::Bytes;
    use std::time::Instant;

    const MARGIN: Duration = Duration::from_secs(10);

    fn records() -> Arc<crate::storage::block::PatchCache> {
        Arc::new(crate::storage::block::PatchCache::new(1 << 20))
    }

    fn location() -> Location {
        Location {
            bucket: "memory".into(),
            prefix: "db".into(),
        }
    }

    fn upload(backend: &Arc<dyn Backend>, txid: TxId, block: (BlockIndex, Bytes)) {
        let backend = backend.clone();
        block_on(async move {
            upload_blocks(&backend, &location(), Codec::Raw, txid, vec![block]).await
        })
        .expect("uploads");
    }

    fn empty() -> Arc<Snapshot> {
        let mut snapshot = Snapshot::empty(BlockSize::new(512).expect("valid"));
        snapshot.gc_margin = MARGIN;
        Arc::new(snapshot)
    }

    /// A commit on `parent` that rewrites block `round % 4` of a 4-block file; its blocks are
    /// pages that look like interior pages, which it offers for the interior-page index.
    fn step(parent: &Arc<Snapshot>, round: u64) -> Transaction {
        let page = |fill: u8| {
            let mut page = vec![fill; 512];
            (page[0], page[100]) = (0x05, 0x05);
            Bytes::from(page)
        };
        let mut upload = vec![(BlockIndex(round % 4), page(round as u8))];
        if parent.version.0 == 0 {
            upload = (0..4).map(|index| (BlockIndex(index), page(0))).collect();
        }
        let txid = TxId::random();
        let mut interior = InteriorPages::new(512);
        for (index, data) in &upload {
            interior.scan(*index, txid, data, parent.block_size);
        }
        let mut transaction = Transaction::new(parent.clone(), txid, 2048, Instant::now());
        transaction.upload = upload;
        transaction.interior = Some(interior);
        transaction
    }

    fn commits(
        backend: &Arc<dyn Backend>,
        mut parent: Arc<Snapshot>,
        count: u64,
    ) -> Vec<Arc<Snapshot>> {
        let mut made = Vec::new();
        for round in 0..count {
            parent = block_on(commit(
                backend.clone(),
                location(),
                step(&parent, round),
                records(),
            ))
            .expect("commits");
            made.push(parent.clone());
        }
        made
    }

    /// Moves every object of the database more than a margin into the past.
    fn age_everything(memory: &MemoryBackend) {
        for key in memory.keys() {
            memory.age_object(&key, 2 * MARGIN.as_millis() as u64 + 5000);
        }
    }

    fn block_keys(memory: &MemoryBackend) -> BTreeSet<String> {
        memory
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("db/blocks/"))
            .collect()
    }

    fn keys_of(snapshot: &Snapshot) -> BTreeSet<String> {
        (0..snapshot.block_count())
            .map(|index| {
                let index = BlockIndex(index);
                location().block_key(index, snapshot.block_txid(index).expect("in file"))
            })
            .collect()
    }

    #[test]
    fn keep_parses_versions_and_durations() {
        assert_eq!(Keep::parse("100"), Some(Keep::Versions(100)));
        assert_eq!(Keep::parse("0"), None);
        assert_eq!(
            Keep::parse("7d"),
            Some(Keep::Within(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(
            Keep::parse("24h"),
            Some(Keep::Within(Duration::from_secs(86_400)))
        );
        assert_eq!(
            Keep::parse("90s"),
            Some(Keep::Within(Duration::from_secs(90)))
        );
        assert_eq!(Keep::parse("soon"), None);
        for text in ["100", "7d", "36h", "90s", "1500ms"] {
            assert_eq!(
                Keep::parse(text).map(|keep| keep.to_string()),
                Some(text.to_string())
            );
        }
    }

    #[test]
    fn the_collector_removes_exactly_what_no_retained_version_needs() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let made = commits(&backend, empty(), 250);
        // A transaction that never committed, long ago, and one in flight now.
        let dead = TxId::random();
        upload(&backend, dead, (BlockIndex(0), Bytes::from(vec![9u8; 512])));
        age_everything(&memory);
        let live = TxId::random();
        upload(&backend, live, (BlockIndex(1), Bytes::from(vec![8u8; 512])));

        let before = memory.keys().len();
        let report =
            block_on(collect(backend.clone(), location(), Keep::Versions(30))).expect("collects");
        let retained: Vec<&Arc<Snapshot>> = made
            .iter()
            .filter(|snapshot| snapshot.version.0 > 220)
            .collect();
        assert_eq!(report.retained_versions, 30);
        assert_eq!(report.oldest_retained_version, Some(221));
        assert_eq!(report.newest_version, Some(250));

        // Exactly the blocks of the retained versions stay, and the in-flight upload.
        let mut expected: BTreeSet<String> = retained
            .iter()
            .flat_map(|snapshot| keys_of(snapshot))
            .collect();
        expected.insert(location().block_key(BlockIndex(1), live));
        assert_eq!(block_keys(&memory), expected);
        assert_eq!(report.kept_for_margin.objects, 1);
        // Exactly their records, and the checkpoints they are based on.
        let records: Vec<String> = memory
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("db/log/"))
            .collect();
        let expected_records: Vec<String> = retained
            .iter()
            .map(|snapshot| location().log_key(snapshot.version))
            .collect();
        assert_eq!(records, expected_records);
        let checkpoints: BTreeSet<String> = memory
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("db/checkpoints/"))
            .collect();
        let expected_checkpoints: BTreeSet<String> = retained
            .iter()
            .flat_map(|snapshot| {
                let (version, txid) = (snapshot.base_version, snapshot.base_txid);
                let key = location().checkpoint_key(version, txid);
                assert!(snapshot.interior > 0, "every checkpoint here has an index");
                [location().interior_key(version, txid), key]
            })
            .collect();
        assert_eq!(checkpoints, expected_checkpoints);
        // Their interior-page indexes load, and serve at a checkpoint's own version the page
        // its commit wrote, and at every version exactly the pages whose block is unchanged.
        for snapshot in &retained {
            let (owned, version) = (backend.clone(), (*snapshot).clone());
            let index =
                block_on(async move { fetch_interior(&owned, &location(), &version).await })
                    .expect("fetches")
                    .expect("exists")
                    .1;
            if snapshot.version == snapshot.base_version {
                let written = ((snapshot.version.0 - 1) % 4) as u32 + 1;
                assert!(index.covers(written, snapshot));
            }
            for number in 1..=4u32 {
                let block = BlockIndex(u64::from(number) - 1);
                let tagged = index.get(number, snapshot).map(|page| page[0]);
                if snapshot.changes.contains_key(&block) {
                    assert_eq!(tagged, None, "page {number} changed since the checkpoint");
                } else if tagged.is_some() {
                    assert_eq!(tagged, Some(0x05));
                }
            }
        }
        assert_eq!(
            report.removed.total.objects as usize,
            before - memory.keys().len() + 1,
            "{report:?}"
        );
        // Every retained version still loads, and each of its blocks exists.
        for snapshot in &retained {
            let loaded = block_on(load_version(backend.clone(), location(), snapshot.version))
                .expect("loads");
            assert_eq!(loaded.full_map(), snapshot.full_map());
        }
        // An old version is reported as collected, not as corrupt.
        let error =
            block_on(load_version(backend.clone(), location(), Version(5))).expect_err("collected");
        assert!(error.to_string().contains("versions 221 to 250"), "{error}");
        // Opening stays cheap and correct, and a second run removes nothing.
        let latest = block_on(load_latest(backend.clone(), location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(latest.version, Version(250));
        let again = block_on(collect(backend, location(), Keep::Versions(30))).expect("collects");
        assert_eq!(again.removed.total.objects, 0, "{again:?}");
    }

    #[test]
    fn young_objects_and_recently_superseded_versions_are_kept() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let made = commits(&backend, empty(), 5);
        // Nothing is older than the margin: keep=1 removes nothing at all.
        let report =
            block_on(collect(backend.clone(), location(), Keep::Versions(1))).expect("collects");
        assert_eq!(report.removed.total.objects, 0, "{report:?}");
        assert_eq!(report.retained_versions, 5);
        // Old history, then two fresh commits: the version they superseded stays readable
        // (a reader may have pinned it as the newest a moment ago).
        age_everything(&memory);
        let fresh = commits(&backend, made[4].clone(), 2);
        let report =
            block_on(collect(backend.clone(), location(), Keep::Versions(1))).expect("collects");
        assert_eq!(report.oldest_retained_version, Some(5), "{report:?}");
        for snapshot in [&made[4], &fresh[0], &fresh[1]] {
            for key in keys_of(snapshot) {
                assert!(
                    memory.object(&key).is_some(),
                    "{key} of version {}",
                    snapshot.version.0
                );
            }
        }
    }

    #[test]
    fn a_duration_window_keeps_the_version_current_at_its_start() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let made = commits(&backend, empty(), 6);
        age_everything(&memory);
        // Every record is old by the store's clock, and commit times are all "now" by the
        // writer's: a window of an hour keeps all of them.
        let report = block_on(collect(
            backend.clone(),
            location(),
            Keep::Within(Duration::from_secs(3600)),
        ))
        .expect("collects");
        assert_eq!(report.retained_versions, 6, "{report:?}");
        // A window of 1 ms (after a pause) keeps the version current at its start: the newest.
        std::thread::sleep(Duration::from_millis(20));
        let report = block_on(collect(
            backend.clone(),
            location(),
            Keep::Within(Duration::from_millis(1)),
        ))
        .expect("collects");
        assert_eq!(report.retained_versions, 1, "{report:?}");
        let latest = block_on(load_latest(backend, location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(latest.full_map(), made[5].full_map());
    }

    #[test]
    fn blocks_uploaded_early_by_a_transaction_in_flight_survive_the_collector() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let made = commits(&backend, empty(), 3);
        age_everything(&memory);
        // A transaction starts (its check is now) and spills a block before committing.
        let mut transaction = step(&made[2], 7);
        let spilled = transaction.upload.remove(0);
        upload(&backend, transaction.txid, spilled.clone());
        transaction
            .uploaded
            .insert(spilled.0, crate::storage::block::checksum(&spilled.1));
        transaction.first_upload = Some(Instant::now());
        block_on(collect(backend.clone(), location(), Keep::Versions(1))).expect("collects");
        let committed =
            block_on(commit(backend.clone(), location(), transaction, records())).expect("commits");
        for key in keys_of(&committed) {
            assert!(memory.object(&key).is_some(), "{key}");
        }
    }

    #[test]
    fn a_writer_never_commits_over_a_collected_record() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let made = commits(&backend, empty(), 2);
        // A writer found version 2 the newest a margin ago; since then others committed 3 and
        // 4, and the collector removed 3.
        let mut slow = step(&made[1], 9);
        slow.checked = Instant::now() - MARGIN;
        let others = commits(&backend, made[1].clone(), 2);
        age_everything(&memory);
        commits(&backend, others[1].clone(), 1);
        block_on(collect(backend.clone(), location(), Keep::Versions(1))).expect("collects");
        assert!(memory.object(&location().log_key(Version(3))).is_none());
        // Its record 3 would be created, and be invisible behind 4 and 5: it must not commit.
        let outcome = block_on(commit(backend.clone(), location(), slow, records()));
        assert!(
            matches!(outcome, Err(Error::Conflict { .. })),
            "{outcome:?}"
        );
        assert!(memory.object(&location().log_key(Version(3))).is_none());

        // Blocks uploaded more than half a margin ago may be gone: refused, nothing visible.
        let latest = block_on(load_latest(backend.clone(), location(), None))
            .expect("loads")
            .expect("exists");
        let mut stale = step(&latest, 3);
        stale.first_upload = Some(Instant::now() - MARGIN / 2);
        let outcome = block_on(commit(backend.clone(), location(), stale, records()));
        assert!(matches!(outcome, Err(Error::TooSlow(_))), "{outcome:?}");
        let after = block_on(load_latest(backend, location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(after.version, latest.version);
    }

    #[test]
    fn an_old_check_with_nothing_newer_is_renewed_and_commits() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let made = commits(&backend, empty(), 2);
        let mut slow = step(&made[1], 5);
        slow.checked = Instant::now() - MARGIN;
        let committed = block_on(commit(backend, location(), slow, records()))
            .expect("commits after a new check");
        assert_eq!(committed.version, Version(3));
    }

    #[test]
    fn every_version_left_listed_reads_back_when_blocks_are_made_of_patches() {
        use crate::storage::block;
        use crate::storage::log::Edit;
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let mut parent = commits(&backend, empty(), 1).pop().expect("made");
        // Block `index` of `snapshot`, from the store.
        let read = |snapshot: &Snapshot, index: u64| -> Result<Bytes> {
            let entry = snapshot
                .block_ref(BlockIndex(index))
                .expect("in file")
                .clone();
            let backend = backend.clone();
            block_on(async move {
                block::fetch(
                    &backend,
                    &location(),
                    Codec::Raw,
                    BlockIndex(index),
                    &entry,
                    512,
                    &records(),
                )
                .await
            })
        };
        let mut content: Vec<Vec<u8>> = (0..4)
            .map(|index| read(&parent, index).expect("reads").to_vec())
            .collect();
        let mut expected = BTreeMap::new();
        for round in 0..230u64 {
            let index = (round % 3) as usize;
            let original = Bytes::from(content[index].clone());
            content[index][(round as usize * 13) % 500] = round as u8;
            let mut transaction =
                Transaction::new(parent.clone(), TxId::random(), 2048, Instant::now());
            transaction.edits.push((
                BlockIndex(index as u64),
                Edit {
                    data: Bytes::from(content[index].clone()),
                    original,
                },
            ));
            parent = block_on(commit(backend.clone(), location(), transaction, records()))
                .expect("commits");
            expected.insert(parent.version, content.clone());
        }
        age_everything(&memory);
        let report =
            block_on(collect(backend.clone(), location(), Keep::Versions(5))).expect("collects");
        assert!(report.retained_versions >= 5, "{report:?}");
        assert!(report.removed.blocks.objects > 0 && report.removed.records.objects > 100);
        let listed = block_on({
            let backend = backend.clone();
            async move { list_records(&backend, &location()).await }
        })
        .expect("lists");
        assert_eq!(listed.len() as u64, report.retained_versions);
        for (version, _) in listed {
            let snapshot = block_on(crate::storage::history::load_version(
                backend.clone(),
                location(),
                version,
            ))
            .expect("a listed version loads");
            for index in 0..4u64 {
                let data = read(&snapshot, index).expect("a listed version reads back");
                if let Some(content) = expected.get(&version) {
                    assert_eq!(data[..], content[index as usize][..], "{version:?}");
                }
            }
        }
    }
}
