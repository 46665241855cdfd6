//! The history of a database: opening a past version (by number or by time), listing the
//! versions the store still has, and restoring an old version as a new commit.
//!
//! Every committed version stays readable until `s3vfs_gc` ([`super::gc`]) collects it: its
//! commit record and its base checkpoint describe it completely (two GETs).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::block::{self, PatchCache};
use super::log::{self, find_record, snapshot_of, Transaction, MAX_IN_FLIGHT};
use super::{
    header_u32, set_change_counter, BlockIndex, Location, Snapshot, TxId, Version, CHANGE_COUNTER,
    SCHEMA_COOKIE, SQLITE_HEADER_LEN,
};
use crate::backend::{run_bounded, Backend, ObjectInfo};
use crate::error::{Error, Result};
use crate::time::format_time;

/// Which past version a read-only connection reads (`version=` or `as_of=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Exactly this version.
    Version(Version),
    /// The newest version committed at or before this time (Unix milliseconds).
    AsOf(u64),
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Version(version) => write!(f, "version={}", version.0),
            Pin::AsOf(time_ms) => write!(f, "as_of={}", format_time(*time_ms)),
        }
    }
}

/// One version as `s3vfs_versions()` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    /// Commit time, Unix milliseconds (never earlier than the previous version's).
    pub time_ms: u64,
    pub size: u64,
    pub blocks_changed: u64,
    pub txid: String,
}

/// Every commit record the store has, oldest first, with its LIST metadata.
pub async fn list_records(
    backend: &Arc<dyn Backend>,
    location: &Location,
) -> Result<Vec<(Version, ObjectInfo)>> {
    let listed = backend.list(&location.log_prefix(), None).await?;
    Ok(listed
        .into_iter()
        .filter_map(|object| Some((location.version_of_log_key(&object.key)?, object)))
        .collect())
}

fn not_retained(location: &Location, asked: &str, listed: &[(Version, ObjectInfo)]) -> Error {
    let range = match (listed.first(), listed.last()) {
        (Some((oldest, _)), Some((newest, _))) => {
            format!("the store has versions {} to {}", oldest.0, newest.0)
        }
        _ => "the store has no version".to_string(),
    };
    Error::NoSuchVersion(format!(
        "{}: {asked} is not in the store ({range}; versions outside the retention window are \
         deleted by s3vfs_gc)",
        location.url()
    ))
}

/// The snapshot of exactly `version`: its commit record and its base checkpoint (two GETs).
pub async fn load_version(
    backend: Arc<dyn Backend>,
    location: Location,
    version: Version,
) -> Result<Arc<Snapshot>> {
    let Some(record) = find_record(&backend, &location, version).await? else {
        let listed = list_records(&backend, &location).await?;
        return Err(not_retained(
            &location,
            &format!("version {}", version.0),
            &listed,
        ));
    };
    let base_key = location.checkpoint_key(record.base_version, record.base_txid);
    match snapshot_of(&backend, &location, record, None).await {
        Ok(snapshot) => Ok(Arc::new(snapshot)),
        // The record outlived its checkpoint only if the collector is deleting this version.
        Err(Error::Corrupt { key, .. }) if key == base_key => Err(Error::Collected {
            key,
            version: Some(version),
        }),
        Err(error) => Err(error),
    }
}

/// The index (into `listed`, the log's records oldest first) of the version that was current
/// at `time_ms`: the newest one committed at or before it, by a binary search over commit
/// times (log2 of the count GETs); `None` if all are later.
pub(crate) async fn current_at(
    backend: &Arc<dyn Backend>,
    location: &Location,
    listed: &[(Version, ObjectInfo)],
    time_ms: u64,
) -> Result<Option<usize>> {
    // Commit times never decrease with the version: find the first version after `time_ms`.
    let (mut low, mut high) = (0usize, listed.len());
    while low < high {
        let middle = (low + high) / 2;
        let time = match find_record(backend, location, listed[middle].0).await? {
            Some(record) => record.time_ms,
            // Collected meanwhile: it is older than anything still listed after it.
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

/// The newest version committed at or before `time_ms`: one LIST (a page per 1,000
/// versions) and a binary search over commit times (log2 of the versions' count GETs).
pub async fn version_as_of(
    backend: Arc<dyn Backend>,
    location: Location,
    time_ms: u64,
) -> Result<Version> {
    let (backend, location) = (&backend, &location);
    let listed = list_records(backend, location).await?;
    match current_at(backend, location, &listed, time_ms)
        .await?
        .map(|index| listed[index].0)
    {
        Some(version) => Ok(version),
        None => Err(not_retained(
            location,
            &format!("a version as of {}", format_time(time_ms)),
            &listed,
        )),
    }
}

/// The snapshot `pin` names.
pub async fn load_pinned(
    backend: Arc<dyn Backend>,
    location: Location,
    pin: Pin,
) -> Result<Arc<Snapshot>> {
    let version = match pin {
        Pin::Version(version) => version,
        Pin::AsOf(time_ms) => version_as_of(backend.clone(), location.clone(), time_ms).await?,
    };
    load_version(backend, location, version).await
}

/// Every version the store has, oldest first: one LIST and one GET per version.
pub async fn list_versions(
    backend: Arc<dyn Backend>,
    location: Location,
) -> Result<Vec<VersionInfo>> {
    let listed = list_records(&backend, &location).await?;
    let fetches: Vec<_> = listed
        .iter()
        .map(|(version, _)| {
            let (backend, location, version) = (backend.clone(), location.clone(), *version);
            async move { find_record(&backend, &location, version).await }
        })
        .collect();
    let records = run_bounded(MAX_IN_FLIGHT, fetches).await?;
    Ok(records
        .into_iter()
        .flatten()
        .map(|record| VersionInfo {
            version: record.version.0,
            time_ms: record.time_ms,
            size: record.size,
            blocks_changed: record.blocks_written,
            txid: record.txid.to_string(),
        })
        .collect())
}

/// Commits, on top of `parent` (the newest version, found by a freshness check that started
/// at `checked`), a new version whose content is that of `old`.
///
/// Blocks the two versions share are referenced, as any commit references its parent's
/// blocks; every other block of `old` is copied (GET and PUT) under the new transaction, so
/// the new version never depends on an object only `old` references, which the collector may
/// delete at any time once `old` leaves the retention window. SQLite's change counter and
/// schema cookie continue from `parent`'s, so that no connection mistakes the restored file
/// for a version whose pages or schema it has cached.
pub async fn restore(
    backend: Arc<dyn Backend>,
    location: Location,
    parent: Arc<Snapshot>,
    checked: Instant,
    old: Arc<Snapshot>,
    records: Arc<PatchCache>,
) -> Result<Arc<Snapshot>> {
    if old.block_size != parent.block_size {
        return Err(Error::Format(format!(
            "{}: version {} has block size {}, the database {}: it cannot be restored",
            location.url(),
            old.version.0,
            old.block_size.bytes(),
            parent.block_size.bytes()
        )));
    }
    let count = old.block_count();
    let shared = |index: BlockIndex| {
        old.block_ref(index) == parent.block_ref(index)
            && old.block_len(index) == parent.block_len(index)
    };
    let mut copy: BTreeSet<BlockIndex> = (0..count)
        .map(BlockIndex)
        .filter(|index| !shared(*index))
        .collect();
    if count > 0 {
        // Block 0 carries the header, rewritten below.
        copy.insert(BlockIndex(0));
    }
    let fetches: Vec<_> = copy
        .iter()
        .map(|index| {
            let (backend, location, records) = (backend.clone(), location.clone(), records.clone());
            let (index, entry, len) = (
                *index,
                old.block_ref(*index).cloned(),
                old.block_len(*index),
            );
            let (version, codec) = (old.version, old.codec);
            async move {
                let entry = entry.ok_or_else(|| Error::Corrupt {
                    key: location.url(),
                    why: format!("version {} has no block {}", version.0, index.0),
                })?;
                let data = block::fetch(&backend, &location, codec, index, &entry, len, &records)
                    .await
                    .map_err(|error| match error {
                        Error::Collected { key, .. } => Error::Collected {
                            key,
                            version: Some(version),
                        },
                        other => other,
                    })?;
                Ok::<(BlockIndex, Bytes), Error>((index, data))
            }
        })
        .collect();
    let mut upload = run_bounded(MAX_IN_FLIGHT, fetches).await?;
    let parent_header = match parent.block_ref(BlockIndex(0)) {
        Some(entry) => Some(
            block::fetch(
                &backend,
                &location,
                parent.codec,
                BlockIndex(0),
                entry,
                parent.block_len(BlockIndex(0)),
                &records,
            )
            .await?,
        ),
        None => None,
    };
    if let (Some((_, first)), Some(parent_header)) = (upload.first_mut(), parent_header) {
        let mut header = first.to_vec();
        if let (Some(counter), Some(cookie), true) = (
            header_u32(&parent_header, CHANGE_COUNTER),
            header_u32(&parent_header, SCHEMA_COOKIE),
            header.len() >= SQLITE_HEADER_LEN,
        ) {
            set_change_counter(&mut header, counter.wrapping_add(1), true);
            let cookie = cookie.wrapping_add(1).to_be_bytes();
            header[SCHEMA_COOKIE..SCHEMA_COOKIE + 4].copy_from_slice(&cookie);
            *first = Bytes::from(header);
        }
    }
    let mut transaction = Transaction::new(parent, TxId::random(), old.size, checked);
    transaction.upload = upload;
    log::commit(backend, location, transaction, records).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::runtime::block_on;
    use crate::storage::BlockSize;

    fn location() -> Location {
        Location {
            bucket: "memory".into(),
            prefix: "db".into(),
        }
    }

    /// Commits `fills.len()` versions of a 3-block file; version `i + 1` has block 1 filled
    /// with `fills[i]`.
    fn history(backend: &Arc<dyn Backend>, fills: &[u8]) -> Vec<Arc<Snapshot>> {
        let mut parent = Arc::new(Snapshot::empty(BlockSize::new(512).expect("valid")));
        let mut snapshots = Vec::new();
        for (round, fill) in fills.iter().enumerate() {
            let mut upload = vec![(BlockIndex(1), Bytes::from(vec![*fill; 512]))];
            if round == 0 {
                upload.push((BlockIndex(0), Bytes::from(vec![0u8; 512])));
                upload.push((BlockIndex(2), Bytes::from(vec![2u8; 100])));
            }
            let mut transaction =
                Transaction::new(parent.clone(), TxId::random(), 1124, Instant::now());
            transaction.upload = upload;
            parent = block_on(log::commit(
                backend.clone(),
                location(),
                transaction,
                Arc::new(PatchCache::new(1 << 20)),
            ))
            .expect("commits");
            snapshots.push(parent.clone());
        }
        snapshots
    }

    #[test]
    fn every_version_loads_exactly_as_committed() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let fills: Vec<u8> = (1..=250).map(|i| i as u8).collect();
        let snapshots = history(&backend, &fills);
        for committed in &snapshots {
            let loaded = block_on(load_version(backend.clone(), location(), committed.version))
                .expect("loads");
            assert_eq!(loaded.full_map(), committed.full_map());
            assert_eq!(loaded.size, committed.size);
        }
        let error = block_on(load_version(backend.clone(), location(), Version(999)))
            .expect_err("no such version");
        assert!(error.to_string().contains("versions 1 to 250"), "{error}");
    }

    #[test]
    fn as_of_finds_the_newest_version_at_or_before_a_time() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let snapshots = history(&backend, &[1, 2, 3, 4, 5, 6, 7]);
        for snapshot in &snapshots {
            let found = block_on(version_as_of(backend.clone(), location(), snapshot.time_ms))
                .expect("found");
            // Several versions may share a millisecond: the newest of them is found.
            let newest_at_time = snapshots
                .iter()
                .filter(|other| other.time_ms <= snapshot.time_ms)
                .map(|other| other.version)
                .max();
            assert_eq!(Some(found), newest_at_time);
        }
        let before = snapshots[0].time_ms - 1;
        assert!(block_on(version_as_of(backend.clone(), location(), before)).is_err());
        let listed = block_on(list_versions(backend, location())).expect("lists");
        assert_eq!(listed.len(), 7);
        assert!(listed
            .windows(2)
            .all(|pair| pair[0].time_ms <= pair[1].time_ms));
        assert_eq!(listed[0].blocks_changed, 3);
        assert_eq!(listed[1].blocks_changed, 1);
    }

    #[test]
    fn restore_commits_the_old_content_as_a_new_version() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let snapshots = history(&backend, &[1, 2, 3]);
        let old = snapshots[0].clone();
        let restored = block_on(restore(
            backend.clone(),
            location(),
            snapshots[2].clone(),
            Instant::now(),
            old.clone(),
            Arc::new(PatchCache::new(1 << 20)),
        ))
        .expect("restores");
        assert_eq!(restored.version, Version(4));
        // Block 1 differed: copied under the new transaction. Block 2 is shared.
        assert_eq!(restored.block_txid(BlockIndex(1)), Some(restored.txid));
        assert_eq!(
            restored.block_txid(BlockIndex(2)),
            old.block_txid(BlockIndex(2))
        );
        let block = memory
            .object(&location().block_key(BlockIndex(1), restored.txid))
            .expect("copied");
        assert_eq!(block, Bytes::from(vec![1u8; 512]));
        // History is intact.
        let third = block_on(load_version(backend, location(), Version(3))).expect("loads");
        assert_eq!(third.full_map(), snapshots[2].full_map());
    }

    #[test]
    fn opening_any_version_of_a_10000_commit_history_costs_a_few_requests() {
        use crate::backend::metered::{MeteredBackend, Metrics};
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let fills: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let snapshots = history(&backend, &fills);
        let metered = |metrics: &Arc<Metrics>| -> Arc<dyn Backend> {
            Arc::new(MeteredBackend::new(backend.clone(), vec![metrics.clone()]))
        };

        let latest = Arc::new(Metrics::default());
        let loaded = block_on(log::load_latest(metered(&latest), location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(loaded.version, Version(10_000));
        // head, LIST (from the head on), the newest record, its checkpoint.
        assert_eq!(latest.snapshot().requests(), 4, "{:?}", latest.snapshot());

        let pinned = Arc::new(Metrics::default());
        let old =
            block_on(load_version(metered(&pinned), location(), Version(4321))).expect("loads");
        assert_eq!(old.full_map(), snapshots[4320].full_map());
        // The record and its checkpoint.
        assert_eq!(pinned.snapshot().requests(), 2, "{:?}", pinned.snapshot());

        let as_of = Arc::new(Metrics::default());
        let time = snapshots[6000].time_ms;
        let version = block_on(load_pinned(metered(&as_of), location(), Pin::AsOf(time)))
            .expect("loads")
            .version;
        assert_eq!(snapshots[version.0 as usize - 1].time_ms, time);
        assert!(snapshots
            .get(version.0 as usize)
            .is_none_or(|next| next.time_ms > time));
        // One LIST (10 pages of 1,000 keys on S3), a binary search of at most 14 GETs, 2 GETs.
        let counts = as_of.snapshot();
        assert_eq!(counts.list, 1, "{counts:?}");
        assert!(counts.get <= 16, "{counts:?}");
        eprintln!(
            "10,000 commits: open newest {} requests; version= {} requests; as_of= {} LIST + {} GETs",
            latest.snapshot().requests(),
            pinned.snapshot().requests(),
            counts.list,
            counts.get
        );
    }
}
