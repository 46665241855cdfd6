//! Reading and extending the commit log: finding the newest version, loading its block map,
//! and publishing a new version with one conditional PUT.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{ParsedCheckpoint, ParsedRecord};
use super::{
    BlockIndex, BlockSize, Checkpoint, CommitRecord, Head, Location, Snapshot, TxId, Version,
    FORMAT_VERSION,
};
use crate::backend::{run_bounded, Backend, PutOutcome};
use crate::error::{Error, Result};

/// A new checkpoint is written when the changes since the last one name more blocks than this.
pub const CHECKPOINT_MAX_CHANGES: usize = 1024;
/// ... or when this many versions were committed since the last one.
pub const CHECKPOINT_INTERVAL: u64 = 100;
/// At most this many object requests of one operation are in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;

pub(crate) async fn get_record(
    backend: &Arc<dyn Backend>,
    location: &Location,
    version: Version,
) -> Result<ParsedRecord> {
    find_record(backend, location, version)
        .await?
        .ok_or_else(|| Error::Corrupt {
            key: location.log_key(version),
            why: "listed commit record is missing".into(),
        })
}

/// The commit record of `version`, or `None` when the store has none.
async fn find_record(
    backend: &Arc<dyn Backend>,
    location: &Location,
    version: Version,
) -> Result<Option<ParsedRecord>> {
    let key = location.log_key(version);
    let Some(body) = backend.get(&key).await? else {
        return Ok(None);
    };
    let record = CommitRecord::decode(&key, &body)?;
    if record.version != version {
        return Err(Error::Corrupt {
            key,
            why: format!("names version {}", record.version.0),
        });
    }
    Ok(Some(record))
}

pub(crate) async fn get_checkpoint(
    backend: &Arc<dyn Backend>,
    location: &Location,
    version: Version,
    txid: TxId,
) -> Result<ParsedCheckpoint> {
    let key = location.checkpoint_key(version, txid);
    let body = backend.get(&key).await?.ok_or_else(|| Error::Corrupt {
        key: key.clone(),
        why: "checkpoint named by a commit record is missing".into(),
    })?;
    Checkpoint::decode(&key, &body)
}

/// The newest committed version after `after` (or from the head hint when `after` is
/// `None`), or `None` when there is nothing newer. Costs one LIST when nothing changed.
async fn newest_version(
    backend: &Arc<dyn Backend>,
    location: &Location,
    after: Option<Version>,
) -> Result<Option<Version>> {
    let start = match after {
        Some(version) => version,
        None => match backend.get(&location.head_key()).await? {
            Some(body) => Head::decode(&location.head_key(), &body)?,
            None => Version(0),
        },
    };
    let start_after = (start.0 > 0).then(|| location.log_key(start));
    let keys = backend
        .list(&location.log_prefix(), start_after.as_deref())
        .await?;
    let newest = keys
        .iter()
        .filter_map(|object| location.version_of_log_key(&object.key))
        .max();
    Ok(match (newest, after) {
        (Some(version), _) => Some(version),
        // The head hint named a committed version and nothing came after it.
        (None, None) if start.0 > 0 => Some(start),
        (None, _) => None,
    })
}

/// Builds the snapshot of `record`, reusing `known`'s checkpoint when they share it.
pub(crate) async fn snapshot_of(
    backend: &Arc<dyn Backend>,
    location: &Location,
    record: ParsedRecord,
    known: Option<&Snapshot>,
) -> Result<Snapshot> {
    let base = match known {
        Some(snapshot)
            if snapshot.base_version == record.base_version
                && snapshot.base_txid == record.base_txid =>
        {
            snapshot.base.clone()
        }
        _ => {
            let checkpoint =
                get_checkpoint(backend, location, record.base_version, record.base_txid).await?;
            if checkpoint.block_size != record.block_size {
                return Err(Error::Corrupt {
                    key: location.checkpoint_key(record.base_version, record.base_txid),
                    why: "block size differs from the commit record's".into(),
                });
            }
            Arc::new(checkpoint.blocks)
        }
    };
    Ok(Snapshot {
        version: record.version,
        size: record.size,
        block_size: record.block_size,
        txid: record.txid,
        time_ms: record.time_ms,
        base_version: record.base_version,
        base_txid: record.base_txid,
        base,
        changes: Arc::new(record.changes),
        gc_margin: record.gc_margin,
    })
}

/// The newest committed snapshot, or `None` for a database with no commits.
/// With `known`, a database already loaded, this costs one LIST when nothing changed.
pub async fn load_latest(
    backend: Arc<dyn Backend>,
    location: Location,
    known: Option<Arc<Snapshot>>,
) -> Result<Option<Arc<Snapshot>>> {
    let after = known
        .as_ref()
        .map(|snapshot| snapshot.version)
        .filter(|version| version.0 > 0);
    let Some(newest) = newest_version(&backend, &location, after).await? else {
        return Ok(known.filter(|snapshot| snapshot.version.0 > 0));
    };
    let record = get_record(&backend, &location, newest).await?;
    let snapshot = snapshot_of(&backend, &location, record, known.as_deref()).await?;
    Ok(Some(Arc::new(snapshot)))
}

/// How a freshness check looks for versions after the one a process knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// GET the next version's commit record. A missing record proves that the known version is
    /// still the newest, provided the last proof of that is younger than half the collector's
    /// margin: the collector deletes a record only once its successor is older than the margin,
    /// so a next record created after that proof cannot be gone yet. One GET, and when a new
    /// version exists the GET brings its record.
    NextRecord,
    /// LIST the log after the known version: a proof at any age.
    List,
}

/// The newest committed snapshot after `known`, or `None` when `known` is still the newest.
/// [`Probe::NextRecord`] costs one GET when nothing changed, and two GETs (plus the checkpoint
/// when it changed) when one version was added; further behind, it lists the log.
pub async fn newer_than(
    backend: Arc<dyn Backend>,
    location: Location,
    known: Arc<Snapshot>,
    probe: Probe,
) -> Result<Option<Arc<Snapshot>>> {
    let newest = match probe {
        Probe::List => match newest_version(&backend, &location, Some(known.version)).await? {
            Some(newest) => get_record(&backend, &location, newest).await?,
            None => return Ok(None),
        },
        Probe::NextRecord => {
            let next = Version(known.version.0 + 1);
            let Some(record) = find_record(&backend, &location, next).await? else {
                return Ok(None);
            };
            let after = Version(next.0 + 1);
            if find_record(&backend, &location, after).await?.is_none() {
                record
            } else {
                let newest = newest_version(&backend, &location, Some(after))
                    .await?
                    .unwrap_or(after);
                get_record(&backend, &location, newest).await?
            }
        }
    };
    let snapshot = snapshot_of(&backend, &location, newest, Some(&known)).await?;
    Ok(Some(Arc::new(snapshot)))
}

/// Everything a transaction hands over to be committed.
pub struct Transaction {
    pub parent: Arc<Snapshot>,
    pub txid: TxId,
    pub size: u64,
    /// Blocks still to upload, each exactly as long as it is in the new version.
    pub upload: Vec<(BlockIndex, Bytes)>,
    /// Blocks this transaction already uploaded under its txid (spilled early).
    pub uploaded: BTreeSet<BlockIndex>,
    /// When the freshness check that found `parent` to be the newest version started (the
    /// LIST request was sent after this instant).
    pub checked: Instant,
    /// When the first of `uploaded` was sent, if any.
    pub first_upload: Option<Instant>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

/// Uploads `blocks` under `txid`, concurrently, at most [`MAX_IN_FLIGHT`] at a time.
pub async fn upload_blocks(
    backend: &Arc<dyn Backend>,
    location: &Location,
    txid: TxId,
    blocks: Vec<(BlockIndex, Bytes)>,
) -> Result<()> {
    let uploads = blocks.into_iter().map(|(index, data)| {
        let backend = backend.clone();
        let key = location.block_key(index, txid);
        async move { backend.put(&key, data).await.map_err(Error::from) }
    });
    run_bounded(MAX_IN_FLIGHT, uploads.collect())
        .await
        .map(|_| ())
}

/// Publishes a transaction as version `parent + 1`: uploads its blocks (and a checkpoint when
/// one is due), then creates the commit record with `If-None-Match: *`. Until that PUT
/// succeeds nothing of the transaction is visible; a conflict leaves no visible trace.
pub async fn commit(
    backend: Arc<dyn Backend>,
    location: Location,
    transaction: Transaction,
) -> Result<Arc<Snapshot>> {
    let Transaction {
        parent,
        txid,
        size,
        upload,
        uploaded,
        mut checked,
        first_upload,
    } = transaction;
    let version = parent.version.next();
    let margin = parent.gc_margin;
    // The collector deletes no unreferenced object younger than `margin` (by the store's
    // clock). A record created after the freshness check, or a block uploaded early by this
    // transaction, is therefore safe for `margin` after the check or the upload; this
    // transaction must land its record well within that: by half of it.
    if let Some(first) = first_upload {
        if first.elapsed() >= margin / 2 {
            return Err(too_slow(
                &location,
                version,
                "its first block upload",
                margin,
            ));
        }
    }
    if checked.elapsed() >= margin / 2 {
        // A check that old no longer protects: check again (one LIST).
        let recheck = Instant::now();
        if newest_version(&backend, &location, Some(parent.version))
            .await?
            .is_some()
        {
            return Err(Error::Conflict {
                bucket: location.bucket.clone(),
                prefix: location.prefix.clone(),
                version,
            });
        }
        checked = recheck;
    }
    let block_size: BlockSize = parent.block_size;
    let count = block_size.block_count(size);
    let mut written: BTreeSet<BlockIndex> = uploaded;
    written.extend(upload.iter().map(|(index, _)| *index));

    let mut changes: BTreeMap<BlockIndex, TxId> = parent
        .changes
        .iter()
        .filter(|(index, _)| index.0 < count)
        .map(|(index, txid)| (*index, *txid))
        .collect();
    for index in &written {
        changes.insert(*index, txid);
    }
    let due = changes.len() > CHECKPOINT_MAX_CHANGES
        || version.0 - parent.base_version.0 >= CHECKPOINT_INTERVAL
        || parent.version.0 == 0;

    let mut snapshot = Snapshot {
        version,
        size,
        block_size,
        txid,
        // Commit times never go backwards, whatever the writers' clocks: `as_of=` relies on it.
        time_ms: now_ms().max(parent.time_ms),
        base_version: parent.base_version,
        base_txid: parent.base_txid,
        base: parent.base.clone(),
        changes: Arc::new(changes),
        gc_margin: margin,
    };
    let mut checkpoint_upload = None;
    if due {
        let blocks = snapshot.full_map();
        let checkpoint = Checkpoint {
            format: FORMAT_VERSION,
            version: version.0,
            size,
            block_size: block_size.bytes(),
            blocks: blocks.iter().map(TxId::to_string).collect(),
        };
        checkpoint_upload = Some((location.checkpoint_key(version, txid), checkpoint.encode()));
        snapshot.base_version = version;
        snapshot.base_txid = txid;
        snapshot.base = Arc::new(blocks);
        snapshot.changes = Arc::new(BTreeMap::new());
    }

    let checkpoint_put = {
        let backend = backend.clone();
        async move {
            match checkpoint_upload {
                Some((key, body)) => backend.put(&key, body).await.map_err(Error::from),
                None => Ok(()),
            }
        }
    };
    let (blocks_result, checkpoint_result) = tokio::join!(
        upload_blocks(&backend, &location, txid, upload),
        checkpoint_put
    );
    blocks_result?;
    checkpoint_result?;

    let record = CommitRecord {
        format: FORMAT_VERSION,
        version: version.0,
        txid: txid.to_string(),
        time_ms: snapshot.time_ms,
        size,
        block_size: block_size.bytes(),
        base_version: snapshot.base_version.0,
        base_txid: snapshot.base_txid.to_string(),
        changes: snapshot
            .changes
            .iter()
            .map(|(index, txid)| (index.0, txid.to_string()))
            .collect(),
        blocks_written: written.len() as u64,
        gc_margin_ms: margin.as_millis() as u64,
    };
    let key = location.log_key(version);
    let deadline_start = first_upload.map_or(checked, |first| first.min(checked));
    if deadline_start.elapsed() >= margin / 2 {
        return Err(too_slow(&location, version, "its freshness check", margin));
    }
    match backend.put_if_absent(&key, record.encode()).await? {
        PutOutcome::Created => {}
        PutOutcome::AlreadyExists => {
            // A lost reply is not a lost commit: the record that exists may be ours.
            let existing = match find_record(&backend, &location, version).await? {
                Some(existing) => existing,
                None => {
                    return Err(Error::NotCommitted(format!(
                        "{}: the store refused to create the commit record of version {} \
                         ({key} exists, it said) but has no such record; nothing was committed, \
                         retry the transaction",
                        location.url(),
                        version.0
                    )))
                }
            };
            if existing.txid != txid {
                return Err(Error::Conflict {
                    bucket: location.bucket.clone(),
                    prefix: location.prefix.clone(),
                    version,
                });
            }
        }
    }
    if due {
        let head = Head {
            format: FORMAT_VERSION,
            version: version.0,
        };
        // Best effort: the head only shortens the next cold open's LIST.
        let _ = backend.put(&location.head_key(), head.encode()).await;
    }
    Ok(Arc::new(snapshot))
}

fn too_slow(location: &Location, version: Version, since: &str, margin: Duration) -> Error {
    Error::TooSlow(format!(
        "{}: the transaction that would have committed version {} took longer than half the \
         collector's safety margin ({} s) since {since}; nothing of it was committed, retry it",
        location.url(),
        version.0,
        margin.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::faulty::{Fault, FaultyBackend};
    use crate::backend::memory::MemoryBackend;
    use crate::backend::retry::{RetryPolicy, RetryingBackend};
    use crate::runtime::block_on;
    use std::time::Duration;

    fn location() -> Location {
        Location {
            bucket: "memory".into(),
            prefix: "db".into(),
        }
    }

    fn transaction(parent: &Arc<Snapshot>, fill: u8) -> Transaction {
        let block = Bytes::from(vec![fill; 512]);
        Transaction {
            parent: parent.clone(),
            txid: TxId::random(),
            size: 1024,
            upload: vec![(BlockIndex(0), block.clone()), (BlockIndex(1), block)],
            uploaded: BTreeSet::new(),
            checked: Instant::now(),
            first_upload: None,
        }
    }

    fn empty() -> Arc<Snapshot> {
        Arc::new(Snapshot::empty(BlockSize::new(512).expect("valid")))
    }

    #[test]
    fn two_writers_on_one_version_exactly_one_wins() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let parent = empty();
        let first = block_on(commit(backend.clone(), location(), transaction(&parent, 1)))
            .expect("first wins");
        let second = block_on(commit(backend.clone(), location(), transaction(&parent, 2)));
        assert!(
            matches!(
                second,
                Err(Error::Conflict {
                    version: Version(1),
                    ..
                })
            ),
            "{second:?}"
        );
        let loaded = block_on(load_latest(backend, location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(loaded.version, first.version);
        assert_eq!(
            loaded.block_txid(BlockIndex(1)),
            first.block_txid(BlockIndex(1))
        );
    }

    #[test]
    fn a_lost_commit_reply_is_not_a_lost_commit() {
        let memory = Arc::new(MemoryBackend::new());
        let faulty = Arc::new(FaultyBackend::new(memory.clone()));
        faulty.inject("PUT If-None-Match", Fault::LoseReply);
        let policy = RetryPolicy {
            budget: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let backend: Arc<dyn Backend> = Arc::new(RetryingBackend::new(faulty, policy));
        let committed =
            block_on(commit(backend, location(), transaction(&empty(), 3))).expect("ours");
        assert_eq!(committed.version, Version(1));
        assert!(memory.object(&location().log_key(Version(1))).is_some());
    }

    #[test]
    fn a_refused_commit_with_no_record_behind_it_commits_nothing_and_says_so() {
        let memory = Arc::new(MemoryBackend::new());
        let faulty = Arc::new(FaultyBackend::new(memory.clone()));
        faulty.inject("PUT If-None-Match", Fault::RefuseCondition);
        let backend: Arc<dyn Backend> = faulty;
        let error = block_on(commit(backend, location(), transaction(&empty(), 3)))
            .expect_err("nothing was committed");
        let message = error.to_string();
        assert!(matches!(error, Error::NotCommitted(_)), "{error:?}");
        assert!(message.contains("nothing was committed"), "{message}");
        assert_eq!(
            error.sqlite_code(crate::error::Operation::Sync),
            crate::error::code::BUSY
        );
        assert!(memory.object(&location().log_key(Version(1))).is_none());
    }

    #[test]
    fn transient_failures_are_retried_then_reported_with_the_key() {
        let memory = Arc::new(MemoryBackend::new());
        let faulty = Arc::new(FaultyBackend::new(memory));
        for _ in 0..3 {
            faulty.inject("PUT", Fault::FailTransient);
        }
        let policy = RetryPolicy {
            budget: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let backend: Arc<dyn Backend> = Arc::new(RetryingBackend::new(faulty.clone(), policy));
        block_on(commit(backend, location(), transaction(&empty(), 4))).expect("retries succeed");

        let short = RetryPolicy {
            budget: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        for _ in 0..3 {
            faulty.inject("PUT", Fault::FailTransient);
        }
        let backend: Arc<dyn Backend> = Arc::new(RetryingBackend::new(faulty, short));
        let parent = block_on(load_latest(backend.clone(), location(), None))
            .expect("loads")
            .expect("exists");
        let error =
            block_on(commit(backend, location(), transaction(&parent, 5))).expect_err("gives up");
        let message = error.to_string();
        assert!(
            message.contains("s3://memory/db/blocks/") && message.contains("503"),
            "{message}"
        );
    }

    #[test]
    fn opening_costs_bounded_requests_however_long_the_history() {
        use crate::backend::metered::{MeteredBackend, Metrics};
        let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut parent = empty();
        for round in 0..(3 * CHECKPOINT_INTERVAL + 7) {
            parent = block_on(commit(
                memory.clone(),
                location(),
                transaction(&parent, round as u8),
            ))
            .expect("commits");
        }
        let metrics = Arc::new(Metrics::default());
        let metered: Arc<dyn Backend> =
            Arc::new(MeteredBackend::new(memory, vec![metrics.clone()]));
        let loaded = block_on(load_latest(metered, location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(loaded.version, parent.version);
        // head, LIST, newest record, its checkpoint.
        assert_eq!(metrics.snapshot().requests(), 4, "{:?}", metrics.snapshot());
    }

    #[test]
    fn a_check_by_the_next_record_costs_one_get_and_follows_any_distance() {
        use crate::backend::metered::{MeteredBackend, Metrics};
        let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let metrics = Arc::new(Metrics::default());
        let metered: Arc<dyn Backend> =
            Arc::new(MeteredBackend::new(memory.clone(), vec![metrics.clone()]));
        let check = |known: &Arc<Snapshot>| {
            let before = metrics.snapshot();
            let found = block_on(newer_than(
                metered.clone(),
                location(),
                known.clone(),
                Probe::NextRecord,
            ))
            .expect("checks");
            let after = metrics.snapshot();
            (found, after.get - before.get, after.list - before.list)
        };
        let empty = empty();
        assert!(matches!(check(&empty), (None, 1, 0)));
        let first =
            block_on(commit(memory.clone(), location(), transaction(&empty, 1))).expect("commits");
        let (found, gets, lists) = check(&empty);
        assert_eq!(found.expect("newer").version, Version(1));
        // The record of 1, no record 2, the checkpoint 1 is based on.
        assert_eq!((gets, lists), (3, 0));
        let (found, gets, lists) = check(&first);
        assert!(found.is_none());
        assert_eq!((gets, lists), (1, 0), "nothing new: one GET, no LIST");
        let mut parent = first.clone();
        for round in 0..5 {
            parent = block_on(commit(
                memory.clone(),
                location(),
                transaction(&parent, round),
            ))
            .expect("commits");
        }
        let (found, gets, lists) = check(&first);
        let found = found.expect("newer");
        assert_eq!(found.version, parent.version);
        assert_eq!(
            found.block_txid(BlockIndex(1)),
            parent.block_txid(BlockIndex(1))
        );
        assert_eq!(lists, 1, "far behind: one LIST");
        assert_eq!(gets, 3, "records 2 and 3, then the newest");
        let (found, _, lists) = {
            let before = metrics.snapshot();
            let found = block_on(newer_than(
                metered.clone(),
                location(),
                parent.clone(),
                Probe::List,
            ))
            .expect("checks");
            (found, 0, metrics.snapshot().list - before.list)
        };
        assert!(found.is_none());
        assert_eq!(lists, 1);
    }

    #[test]
    fn a_refresh_with_nothing_new_costs_one_list() {
        use crate::backend::metered::{MeteredBackend, Metrics};
        let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let parent = block_on(commit(memory.clone(), location(), transaction(&empty(), 1)))
            .expect("commits");
        let metrics = Arc::new(Metrics::default());
        let metered: Arc<dyn Backend> =
            Arc::new(MeteredBackend::new(memory, vec![metrics.clone()]));
        let same = block_on(load_latest(metered, location(), Some(parent.clone())))
            .expect("loads")
            .expect("exists");
        assert_eq!(same.version, parent.version);
        assert_eq!(metrics.snapshot().list, 1);
        assert_eq!(metrics.snapshot().requests(), 1);
    }
}
