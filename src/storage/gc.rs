//! The collector: deletes the commit records, checkpoints and blocks that no version inside
//! the retention window needs, and the blocks of transactions that never committed.
//!
//! It deletes an unreferenced object only when the object is older than the database's
//! safety margin by the store's own clock (its LastModified against the LastModified of the
//! marker `P/collector` the collector writes first), and it always keeps the newest version,
//! the head hint's version, and every version superseded less than a margin ago. Writers, in
//! turn, never land a commit record later than half a margin after the freshness check that
//! chose its parent (see `log::commit`). README.md ("Retention and garbage collection") gives
//! the argument that together these make collecting safe while others read and write.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::format::{ParsedRecord, DEFAULT_GC_MARGIN_MS, FORMAT_VERSION};
use super::history::list_records;
use super::log::{get_checkpoint, get_record, now_ms, MAX_IN_FLIGHT};
use super::{Head, Location, TxId, Version};
use crate::backend::{run_bounded, Backend, ObjectInfo};
use crate::error::{Error, Result};

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
        parse_span(text).map(Keep::Within)
    }
}

/// Parses a span of time with a unit: `500ms`, `90s`, `30m`, `24h`, `7d`, `2w`.
pub fn parse_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let millis: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(number.checked_mul(millis)?))
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Versions(count) => write!(f, "{count} versions"),
            Keep::Within(window) => write!(f, "{} s", window.as_secs_f64()),
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

fn parse_checkpoint_key(location: &Location, key: &str) -> Option<(Version, TxId)> {
    let rest = key.strip_prefix(&format!("{}/checkpoints/", location.prefix))?;
    let (version, txid) = rest.split_once('-')?;
    (version.len() == 20).then_some(())?;
    Some((Version(version.parse().ok()?), TxId::parse(txid)?))
}

/// The index (into `listed`) of the version that was current at `time_ms`: the newest one
/// committed at or before it, by a binary search over commit times; `None` if all are later.
async fn current_at(
    backend: &Arc<dyn Backend>,
    listed: &[(Version, ObjectInfo)],
    time_ms: u64,
) -> Result<Option<usize>> {
    let (mut low, mut high) = (0usize, listed.len());
    while low < high {
        let middle = (low + high) / 2;
        let time = match backend.get(&listed[middle].1.key).await? {
            Some(body) => {
                super::CommitRecord::decode(&listed[middle].1.key, &body)?.time_ms
            }
            None => 0,
        };
        if time <= time_ms {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(low.checked_sub(1))
}

/// Runs the collector once on the database at `location`.
pub async fn collect(
    backend: Arc<dyn Backend>,
    location: Location,
    keep: Keep,
) -> Result<GcReport> {
    let now = store_now(&backend, &location).await?;
    let (checkpoint_prefix, block_prefix, head_key) = (
        format!("{}/checkpoints/", location.prefix),
        format!("{}/blocks/", location.prefix),
        location.head_key(),
    );
    let (records, checkpoints, blocks, head) = tokio::join!(
        list_records(&backend, &location),
        backend.list(&checkpoint_prefix, None),
        backend.list(&block_prefix, None),
        backend.get(&head_key),
    );
    let (records, checkpoints, blocks) = (records?, checkpoints?, blocks?);
    let head = match head? {
        Some(body) => Some(Head::decode(&location.head_key(), &body)?),
        None => None,
    };

    let newest = match records.last() {
        Some((version, _)) => Some(get_record(&backend, &location, *version).await?),
        None => None,
    };
    let margin_ms = newest
        .as_ref()
        .map_or(DEFAULT_GC_MARGIN_MS, |record| {
            record.gc_margin.as_millis() as u64
        });
    // An object is old enough to delete when even its earliest possible creation time is more
    // than a margin before the collector's start.
    let old_enough = |object: &ObjectInfo| {
        object.modified_ms + margin_ms + CLOCK_RESOLUTION_MS < now
    };

    // The versions to keep, as indexes into `records`.
    let mut retained: BTreeSet<usize> = BTreeSet::new();
    if let Some(last) = records.len().checked_sub(1) {
        retained.insert(last);
        match keep {
            Keep::Versions(count) => {
                let newest_version = records[last].0;
                retained.extend(
                    (0..records.len()).filter(|index| records[*index].0 .0 + count > newest_version.0),
                );
            }
            Keep::Within(window) => {
                let start = now.saturating_sub(window.as_millis() as u64);
                let first = current_at(&backend, &records, start)
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
            if head == Some(records[index].0) {
                retained.insert(index);
            }
        }
    }

    // Everything the retained versions reference.
    let fetches: Vec<_> = retained
        .iter()
        .map(|index| {
            let (backend, location, version) = (backend.clone(), location.clone(), records[*index].0);
            async move {
                match get_record(&backend, &location, version).await {
                    Ok(record) => Ok(Some(record)),
                    // Deleted meanwhile by another collector with a shorter window.
                    Err(Error::Corrupt { .. }) if backend.get(&location.log_key(version)).await?.is_none() => Ok(None),
                    Err(error) => Err(error),
                }
            }
        })
        .collect();
    let retained_records: Vec<ParsedRecord> = run_bounded(MAX_IN_FLIGHT, fetches)
        .await?
        .into_iter()
        .flatten()
        .collect();
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
    let bases: BTreeMap<(Version, TxId), Vec<TxId>> = run_bounded(MAX_IN_FLIGHT, fetches)
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
            let txid = record
                .changes
                .get(&super::BlockIndex(index))
                .or_else(|| base.get(index as usize));
            if let Some(txid) = txid {
                referenced.insert((index, *txid));
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
    let mut sort = |object: &ObjectInfo, needed: bool, removed_tally: &mut Tally, kept_tally: &mut Tally| {
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
        sort(object, needed, &mut removed.checkpoints, &mut kept.checkpoints);
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
    for batch in doomed.chunks(DELETE_BATCH) {
        backend.delete(batch).await?;
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
