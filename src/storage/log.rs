//! Reading and extending the commit log: finding the newest version, loading its block map,
//! and publishing a new version with one conditional PUT.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::block::{self, checksum, diff, extend, BlockRef, Patch, PatchCache};
use super::codec::Codec;
use super::format::{ParsedCheckpoint, ParsedRecord};
use super::interior::{self, InteriorPages};
use super::{
    BlockIndex, BlockSize, Checkpoint, CommitRecord, Head, Location, Snapshot, TxId, Version,
    FORMAT_VERSION,
};
use crate::backend::{run_bounded, Backend, BackendErrorKind, PutOutcome};
use crate::error::{Error, Result};

/// A new checkpoint is written when the changes since the last one name more blocks than this.
pub const CHECKPOINT_MAX_CHANGES: usize = 1024;
/// ... or when this many versions were committed since the last one.
pub const CHECKPOINT_INTERVAL: u64 = 100;
/// At most this many object requests of one operation are in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// A block whose pages (everything that differs from its object) would exceed this many
/// bytes, or a quarter of the block, is written whole instead.
pub const MAX_PATCH_BYTES: u64 = 12 * 1024;
/// A commit record carries at most this many bytes of pages; a larger transaction writes
/// whole blocks, uploaded concurrently before its record.
pub const MAX_RECORD_PAGES: u64 = 1024 * 1024;
/// A GET whose body fails its checksum is sent up to this many times before the object is
/// reported corrupt: a byte changed in transit is not a byte changed at rest. Eight: even if
/// 15% of replies arrived damaged, one object in four million would be reported wrongly.
pub(crate) const VERIFY_ATTEMPTS: usize = 8;

/// GETs `key` and decodes it; a body that does not decode is fetched again (it may have been
/// damaged in transit), and reported only when every attempt fails. `None` when missing.
pub(crate) async fn get_verified<T>(
    backend: &Arc<dyn Backend>,
    key: &str,
    decode: impl Fn(&Bytes) -> Result<T>,
) -> Result<Option<T>> {
    let mut attempt = 1;
    loop {
        let body = match backend.get(key).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            // A sealed body that does not open (see `backend::sealed`): damaged like any other.
            Err(error) if error.kind == BackendErrorKind::Damaged && attempt < VERIFY_ATTEMPTS => {
                attempt += 1;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        match decode(&body) {
            Err(Error::Corrupt { .. }) if attempt < VERIFY_ATTEMPTS => attempt += 1,
            outcome => return outcome.map(Some),
        }
    }
}

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
pub(crate) async fn find_record(
    backend: &Arc<dyn Backend>,
    location: &Location,
    version: Version,
) -> Result<Option<ParsedRecord>> {
    let key = location.log_key(version);
    get_verified(backend, &key, |body| {
        let record = CommitRecord::decode(&key, body)?;
        if record.version != version {
            return Err(Error::Corrupt {
                key: key.clone(),
                why: format!("names version {}", record.version.0),
            });
        }
        Ok(record)
    })
    .await
}

pub(crate) async fn get_checkpoint(
    backend: &Arc<dyn Backend>,
    location: &Location,
    version: Version,
    txid: TxId,
) -> Result<ParsedCheckpoint> {
    let key = location.checkpoint_key(version, txid);
    get_verified(backend, &key, |body| Checkpoint::decode(&key, body))
        .await?
        .ok_or_else(|| Error::Corrupt {
            key: key.clone(),
            why: "checkpoint named by a commit record is missing".into(),
        })
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
        // Only a hint: one that does not decode (damaged, or of another format) is ignored
        // and the log is listed from its start; the newest record decides the format.
        None => match backend.get(&location.head_key()).await {
            Ok(Some(body)) => Head::decode(&location.head_key(), &body).unwrap_or(Version(0)),
            Ok(None) => Version(0),
            // Sealed, but damaged on the way (see `backend::sealed`): a hint all the same.
            Err(error) if error.kind == BackendErrorKind::Damaged => Version(0),
            Err(error) => return Err(error.into()),
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
    let (base, interior) = match known {
        Some(snapshot)
            if snapshot.base_version == record.base_version
                && snapshot.base_txid == record.base_txid =>
        {
            (snapshot.base.clone(), snapshot.interior)
        }
        _ => {
            let checkpoint =
                get_checkpoint(backend, location, record.base_version, record.base_txid).await?;
            if checkpoint.codec != record.codec && record.format >= 2 {
                return Err(Error::Corrupt {
                    key: location.checkpoint_key(record.base_version, record.base_txid),
                    why: "stored with another codec than the commit record".into(),
                });
            }
            if checkpoint.block_size != record.block_size {
                return Err(Error::Corrupt {
                    key: location.checkpoint_key(record.base_version, record.base_txid),
                    why: "block size differs from the commit record's".into(),
                });
            }
            (Arc::new(checkpoint.blocks), checkpoint.interior)
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
        interior,
        changes: Arc::new(record.changes),
        patches: record.patches,
        gc_margin: record.gc_margin,
        format: record.format,
        codec: record.codec,
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
    let record = match find_record(&backend, &location, newest).await? {
        Some(record) => record,
        // The head hint named a version that does not exist: list the whole log.
        None if after.is_none() => {
            let listed = newest_version(&backend, &location, Some(Version(0))).await?;
            match listed {
                Some(newest) => get_record(&backend, &location, newest).await?,
                None => return Ok(None),
            }
        }
        None => get_record(&backend, &location, newest).await?,
    };
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

/// A block a transaction changed, with the content it had at the parent version.
pub struct Edit {
    pub data: Bytes,
    pub original: Bytes,
}

/// Everything a transaction hands over to be committed.
pub struct Transaction {
    pub parent: Arc<Snapshot>,
    pub txid: TxId,
    pub size: u64,
    /// Blocks to upload whole, each exactly as long as it is in the new version.
    pub upload: Vec<(BlockIndex, Bytes)>,
    /// Blocks changed from a known committed content: sent as pages inside the commit record
    /// when small, else whole.
    pub edits: Vec<(BlockIndex, Edit)>,
    /// Blocks this transaction already uploaded under its txid (spilled early), with the
    /// checksum of each.
    pub uploaded: BTreeMap<BlockIndex, u32>,
    /// The parent's content of blocks that [`to_consolidate`] names, when the caller has it;
    /// the others are fetched.
    pub known: BTreeMap<BlockIndex, Bytes>,
    /// When the freshness check that found `parent` to be the newest version started (the
    /// request was sent after this instant).
    pub checked: Instant,
    /// When the first of `uploaded` was sent, if any.
    pub first_upload: Option<Instant>,
    /// Interior pages of the new version the caller holds, tagged with the content names
    /// their blocks have in it, for the interior-page index of a checkpoint.
    pub interior: Option<InteriorPages>,
    /// The index of the parent's checkpoint, when the caller has it loaded; otherwise a
    /// checkpoint fetches it to carry its still valid pages forward.
    pub previous_interior: Option<Arc<InteriorPages>>,
    /// Writes a checkpoint even if none is due (a transfer that replaces the whole file).
    pub checkpoint: bool,
}

impl Transaction {
    /// The blocks this transaction hands over with their new content (`upload` and `edits`;
    /// not those uploaded early).
    pub fn written(&self) -> impl Iterator<Item = (BlockIndex, &Bytes)> {
        let edited = self.edits.iter().map(|(index, edit)| (*index, &edit.data));
        self.upload
            .iter()
            .map(|(index, data)| (*index, data))
            .chain(edited)
    }

    /// A transaction on `parent` that changes nothing yet.
    pub fn new(parent: Arc<Snapshot>, txid: TxId, size: u64, checked: Instant) -> Transaction {
        Transaction {
            parent,
            txid,
            size,
            upload: Vec::new(),
            edits: Vec::new(),
            uploaded: BTreeMap::new(),
            known: BTreeMap::new(),
            checked,
            first_upload: None,
            interior: None,
            previous_interior: None,
            checkpoint: false,
        }
    }
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
    codec: Codec,
    txid: TxId,
    blocks: Vec<(BlockIndex, Bytes)>,
) -> Result<()> {
    let uploads = blocks.into_iter().map(|(index, data)| {
        let backend = backend.clone();
        let key = location.block_key(index, txid);
        async move {
            let stored = match codec {
                Codec::Raw => data,
                // Compressing a block takes a few milliseconds: off the runtime's threads.
                Codec::Zstd(_) => tokio::task::spawn_blocking(move || codec.encode(&data))
                    .await
                    .map_err(|error| Error::Runtime(format!("compressing a block: {error}")))?,
            };
            backend.put(&key, stored).await.map_err(Error::from)
        }
    });
    run_bounded(MAX_IN_FLIGHT, uploads.collect())
        .await
        .map(|_| ())
}

/// Whether the version after `parent` gets a checkpoint.
pub fn checkpoint_due(parent: &Snapshot) -> bool {
    parent.version.0 == 0
        || parent.format < FORMAT_VERSION
        || parent.changes.len() >= CHECKPOINT_MAX_CHANGES
        || parent.version.0 + 1 - parent.base_version.0 >= CHECKPOINT_INTERVAL
}

/// The blocks a commit on `parent` (to a file of `size` bytes) writes whole although they may
/// be unchanged: when a checkpoint is due, every block still made of patches, since no patch
/// may outlive the checkpoint after it.
pub fn to_consolidate(parent: &Snapshot, size: u64) -> Vec<BlockIndex> {
    if !checkpoint_due(parent) {
        return Vec::new();
    }
    let count = parent.block_size.block_count(size);
    parent
        .changes
        .iter()
        .filter(|(index, entry)| index.0 < count && entry.patch.is_some())
        .map(|(index, _)| *index)
        .collect()
}

/// Publishes a transaction as version `parent + 1`: uploads the blocks it writes whole (and a
/// checkpoint when one is due), then creates the commit record, carrying the pages of small
/// changes, with `If-None-Match: *`. A small transaction is that one request. Until it
/// succeeds nothing of the transaction is visible; a conflict leaves no visible trace.
///
/// Every commit (a file's, a transfer's, a restore's) goes through here, in four steps: the
/// freshness rule (`ensure_fresh`), what planning needs from the store (`gather`), the
/// plan itself, which does no I/O (`plan`), and publishing it (`publish`).
pub async fn commit(
    backend: Arc<dyn Backend>,
    location: Location,
    transaction: Transaction,
    records: Arc<PatchCache>,
) -> Result<Arc<Snapshot>> {
    let checked = ensure_fresh(&backend, &location, &transaction).await?;
    let deadline_start = transaction
        .first_upload
        .map_or(checked, |first| first.min(checked));
    let due = transaction.checkpoint || checkpoint_due(&transaction.parent);
    let fetched = gather(&backend, &location, &transaction, due, &records).await?;
    let plan = plan(&location, transaction, due, fetched, now_ms());
    publish(&backend, &location, plan, deadline_start, &records).await
}

/// The collector deletes no unreferenced object younger than the margin (by the store's
/// clock). A record created after the freshness check, or a block uploaded early by this
/// transaction, is therefore safe for the margin after the check or the upload; a transaction
/// must land its record well within that: by half of it. Returns when the last proof that the
/// parent is the newest version started: the transaction's, or a new one (a LIST) when that
/// is too old.
async fn ensure_fresh(
    backend: &Arc<dyn Backend>,
    location: &Location,
    transaction: &Transaction,
) -> Result<Instant> {
    let parent = &transaction.parent;
    let (version, margin) = (parent.version.next(), parent.gc_margin);
    if let Some(first) = transaction.first_upload {
        if first.elapsed() >= margin / 2 {
            return Err(too_slow(
                location,
                version,
                "its first block upload",
                margin,
            ));
        }
    }
    if transaction.checked.elapsed() < margin / 2 {
        return Ok(transaction.checked);
    }
    // A check that old no longer protects: check again (one LIST).
    let recheck = Instant::now();
    if newest_version(backend, location, Some(parent.version))
        .await?
        .is_some()
    {
        return Err(Error::Conflict {
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            version,
        });
    }
    Ok(recheck)
}

/// What planning a commit needs from the store.
struct Fetched {
    /// The pages the parent's records carry for blocks the transaction edits: its own pages
    /// extend them (none at a checkpoint).
    earlier: BTreeMap<BlockIndex, Patch>,
    /// At a checkpoint, the content of every block still patched, to be written whole.
    patched: BTreeMap<BlockIndex, Bytes>,
    /// At a checkpoint, the index of the parent's checkpoint, to carry its valid pages.
    previous_interior: Option<Arc<InteriorPages>>,
}

/// The blocks of the parent that stay patched in the new version: those the transaction does
/// not write, within its size.
fn still_patched(transaction: &Transaction) -> Vec<(BlockIndex, BlockRef)> {
    let parent = &transaction.parent;
    let count = parent.block_size.block_count(transaction.size);
    let written: BTreeSet<BlockIndex> = transaction
        .uploaded
        .keys()
        .copied()
        .chain(transaction.upload.iter().map(|(index, _)| *index))
        .chain(transaction.edits.iter().map(|(index, _)| *index))
        .collect();
    parent
        .changes
        .iter()
        .filter(|(index, entry)| {
            index.0 < count && entry.patch.is_some() && !written.contains(index)
        })
        .map(|(index, entry)| (*index, entry.clone()))
        .collect()
}

/// Fetches what [`plan`] needs, concurrently: the parent's pages of edited blocks (usually
/// cached: this process read or wrote them), and at a checkpoint the blocks still patched and
/// the previous interior-page index (unless the caller has them).
async fn gather(
    backend: &Arc<dyn Backend>,
    location: &Location,
    transaction: &Transaction,
    due: bool,
    records: &Arc<PatchCache>,
) -> Result<Fetched> {
    let parent = &transaction.parent;
    if !due {
        let wanted: BTreeSet<Version> = transaction
            .edits
            .iter()
            .filter_map(|(index, _)| parent.block_ref(*index)?.patch)
            .collect();
        let fetches: Vec<_> = wanted
            .iter()
            .map(|&version| {
                let (backend, location, records) =
                    (backend.clone(), location.clone(), records.clone());
                async move { block::pages_of(&backend, &location, version, &records).await }
            })
            .collect();
        let pages: BTreeMap<Version, block::Pages> = wanted
            .iter()
            .copied()
            .zip(run_bounded(MAX_IN_FLIGHT, fetches).await?)
            .collect();
        let earlier = transaction
            .edits
            .iter()
            .filter_map(|(index, _)| {
                let version = parent.block_ref(*index)?.patch?;
                Some((*index, pages.get(&version)?.get(index)?.clone()))
            })
            .collect();
        return Ok(Fetched {
            earlier,
            patched: BTreeMap::new(),
            previous_interior: None,
        });
    }
    let chained = still_patched(transaction);
    let fetches: Vec<_> = chained
        .iter()
        .map(|(index, entry)| {
            let (backend, location, records) = (backend.clone(), location.clone(), records.clone());
            let (index, entry, len) = (*index, entry.clone(), parent.block_len(*index));
            let (cached, codec) = (transaction.known.get(&index).cloned(), parent.codec);
            async move {
                match cached {
                    Some(data) => Ok(data),
                    None => {
                        block::fetch(&backend, &location, codec, index, &entry, len, &records).await
                    }
                }
            }
        })
        .collect();
    // A forced checkpoint replaces every block: nothing of the parent's index carries.
    let previous = async {
        match &transaction.previous_interior {
            _ if transaction.checkpoint => None,
            Some(previous) => Some(previous.clone()),
            None => previous_index(backend, location, parent).await,
        }
    };
    let (contents, previous_interior) = tokio::join!(run_bounded(MAX_IN_FLIGHT, fetches), previous);
    Ok(Fetched {
        earlier: BTreeMap::new(),
        patched: chained
            .into_iter()
            .map(|(index, _)| index)
            .zip(contents?)
            .collect(),
        previous_interior,
    })
}

/// What a commit writes, decided before any of it is sent.
struct Plan {
    /// The new version, as readers will see it.
    snapshot: Snapshot,
    /// Blocks to upload whole under the transaction's txid.
    upload: Vec<(BlockIndex, Bytes)>,
    /// The checkpoint's objects (its interior-page index, then the checkpoint), when one is due.
    checkpoint: Vec<(String, Bytes)>,
    /// The commit record.
    record: ParsedRecord,
}

/// Decides what `transaction` writes as version `parent + 1`, at `now_ms` by the writer's
/// clock, without I/O: the block map (a small change as pages in the record, a larger one as
/// a whole block), and at a checkpoint (`due`) every block whole and the checkpoint's objects.
fn plan(
    location: &Location,
    transaction: Transaction,
    due: bool,
    fetched: Fetched,
    now_ms: u64,
) -> Plan {
    let Transaction {
        parent,
        txid,
        size,
        mut upload,
        edits,
        uploaded,
        interior,
        ..
    } = transaction;
    let version = parent.version.next();
    let block_size: BlockSize = parent.block_size;
    let count = block_size.block_count(size);
    let blocks_written = (upload.len() + edits.len() + uploaded.len()) as u64;

    let mut entries: BTreeMap<BlockIndex, BlockRef> = parent
        .changes
        .iter()
        .filter(|(index, _)| index.0 < count)
        .map(|(index, entry)| (*index, entry.clone()))
        .collect();
    for (index, sum) in &uploaded {
        entries.insert(*index, BlockRef::whole(txid, Some(*sum)));
    }
    for (index, data) in &upload {
        entries.insert(*index, BlockRef::whole(txid, Some(checksum(data))));
    }
    let patch_limit = MAX_PATCH_BYTES.min(block_size.bytes() / 4);
    let mut patches: BTreeMap<BlockIndex, Patch> = BTreeMap::new();
    let mut page_bytes = 0u64;
    for (index, edit) in edits {
        let sum = checksum(&edit.data);
        let patched = match parent.block_ref(index) {
            Some(entry) if !due && block_size.block_len(index, parent.size) > 0 => {
                match (entry.patch, fetched.earlier.get(&index)) {
                    (None, _) => Some((entry, diff(&edit.original, &edit.data))),
                    (Some(_), Some(earlier)) => {
                        Some((entry, extend(earlier, &edit.original, &edit.data)))
                    }
                    (Some(_), None) => None,
                }
            }
            _ => None,
        };
        match patched {
            Some((entry, patch))
                if patch.bytes() <= patch_limit
                    && page_bytes + patch.bytes() <= MAX_RECORD_PAGES =>
            {
                page_bytes += patch.bytes();
                entries.insert(
                    index,
                    BlockRef {
                        txid,
                        object: entry.object,
                        patch: Some(version),
                        sum: Some(sum),
                    },
                );
                patches.insert(index, patch);
            }
            _ => {
                entries.insert(index, BlockRef::whole(txid, Some(sum)));
                upload.push((index, edit.data));
            }
        }
    }
    // No patch outlives a checkpoint: what is still patched is written whole, keeping the
    // name of its content.
    for (index, data) in fetched.patched {
        if let Some(entry) = entries.get(&index).cloned() {
            entries.insert(
                index,
                BlockRef {
                    txid: entry.txid,
                    object: txid,
                    patch: None,
                    sum: Some(checksum(&data)),
                },
            );
            upload.push((index, data));
        }
    }

    let mut snapshot = Snapshot {
        version,
        size,
        block_size,
        txid,
        // Commit times never go backwards, whatever the writers' clocks: `as_of=` relies on it.
        time_ms: now_ms.max(parent.time_ms),
        base_version: parent.base_version,
        base_txid: parent.base_txid,
        base: parent.base.clone(),
        interior: parent.interior,
        changes: Arc::new(entries),
        patches: Arc::new(patches),
        gc_margin: parent.gc_margin,
        format: parent.codec.format(),
        codec: parent.codec,
    };
    let mut checkpoint = Vec::new();
    if due {
        let blocks = snapshot.full_map();
        let index = interior_index(interior, fetched.previous_interior.as_deref(), &snapshot);
        let index_body = index.as_ref().map(|index| index.encode(parent.codec));
        let parsed = ParsedCheckpoint {
            version,
            size,
            block_size,
            blocks: blocks.clone(),
            interior: index_body.as_ref().map_or(0, |body| body.len() as u64),
            codec: parent.codec,
        };
        if let Some(body) = index_body {
            checkpoint.push((location.interior_key(version, txid), body));
        }
        checkpoint.push((
            location.checkpoint_key(version, txid),
            Checkpoint::encode(&parsed),
        ));
        snapshot.base_version = version;
        snapshot.base_txid = txid;
        snapshot.base = Arc::new(blocks);
        snapshot.interior = parsed.interior;
        snapshot.changes = Arc::new(BTreeMap::new());
    }
    let record = ParsedRecord {
        version,
        txid,
        time_ms: snapshot.time_ms,
        size,
        block_size,
        base_version: snapshot.base_version,
        base_txid: snapshot.base_txid,
        changes: (*snapshot.changes).clone(),
        blocks_written,
        gc_margin: snapshot.gc_margin,
        patches: snapshot.patches.clone(),
        format: parent.codec.format(),
        codec: parent.codec,
    };
    Plan {
        snapshot,
        upload,
        checkpoint,
        record,
    }
}

/// Sends `plan`: its blocks and checkpoint objects concurrently, then the record with
/// `If-None-Match: *` if the transaction is still within its deadline (half the margin after
/// `deadline_start`), then at a checkpoint the head hint.
async fn publish(
    backend: &Arc<dyn Backend>,
    location: &Location,
    plan: Plan,
    deadline_start: Instant,
    records: &PatchCache,
) -> Result<Arc<Snapshot>> {
    let Plan {
        snapshot,
        upload,
        checkpoint,
        record,
    } = plan;
    let (version, txid, codec, margin) = (
        snapshot.version,
        snapshot.txid,
        snapshot.codec,
        snapshot.gc_margin,
    );
    let due = !checkpoint.is_empty();
    let checkpoint_put = {
        let puts: Vec<_> = checkpoint
            .into_iter()
            .map(|(key, body)| {
                let backend = backend.clone();
                async move { backend.put(&key, body).await.map_err(Error::from) }
            })
            .collect();
        async move { run_bounded(MAX_IN_FLIGHT, puts).await.map(|_| ()) }
    };
    let (blocks_result, checkpoint_result) = tokio::join!(
        upload_blocks(backend, location, codec, txid, upload),
        checkpoint_put
    );
    blocks_result?;
    checkpoint_result?;

    let key = location.log_key(version);
    if deadline_start.elapsed() >= margin / 2 {
        return Err(too_slow(location, version, "its freshness check", margin));
    }
    match backend
        .put_if_absent(&key, CommitRecord::encode(&record))
        .await?
    {
        PutOutcome::Created => {}
        PutOutcome::AlreadyExists => {
            // A lost reply is not a lost commit: the record that exists may be ours.
            let existing = match find_record(backend, location, version).await? {
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
    records.insert(version, snapshot.patches.clone());
    if due {
        let head = Head {
            format: codec.format(),
            version: version.0,
        };
        // Best effort: the head only shortens the next cold open's LIST.
        let _ = backend.put(&location.head_key(), head.encode()).await;
    }
    Ok(Arc::new(snapshot))
}

/// The interior-page index of the checkpoint at `next`: the pages the caller holds, then those
/// of the previous checkpoint's index, each kept only if its tag is its block's content name
/// at `next`. `None` when it would be empty.
fn interior_index(
    held: Option<InteriorPages>,
    previous: Option<&InteriorPages>,
    next: &Snapshot,
) -> Option<InteriorPages> {
    let mut index = match (held, previous) {
        (Some(held), _) => held,
        (None, Some(previous)) => InteriorPages::new(previous.page_size()),
        (None, None) => return None,
    };
    if let Some(previous) = previous {
        index.fill_from(previous);
    }
    index.retain_valid(next);
    (!index.is_empty()).then_some(index)
}

/// The index of `parent`'s checkpoint, for a checkpoint to carry its still valid pages
/// forward. Best effort: one that cannot be fetched (or is implausibly large) is left out,
/// never an error.
async fn previous_index(
    backend: &Arc<dyn Backend>,
    location: &Location,
    parent: &Snapshot,
) -> Option<Arc<InteriorPages>> {
    if parent.interior > 2 * interior::MAX_INDEX_BYTES {
        return None;
    }
    let fetched = fetch_interior(backend, location, parent).await;
    fetched.ok().flatten().map(|(_, index)| index)
}

/// The interior-page index of `snapshot`'s checkpoint, with the object's body, `None` when it
/// has none or it is gone.
pub async fn fetch_interior(
    backend: &Arc<dyn Backend>,
    location: &Location,
    snapshot: &Snapshot,
) -> Result<Option<(Bytes, Arc<InteriorPages>)>> {
    if snapshot.interior == 0 {
        return Ok(None);
    }
    let key = location.interior_key(snapshot.base_version, snapshot.base_txid);
    get_verified(backend, &key, |body| {
        let index = InteriorPages::decode(&key, body)?;
        Ok((body.clone(), Arc::new(index)))
    })
    .await
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

    fn records() -> Arc<crate::storage::block::PatchCache> {
        Arc::new(crate::storage::block::PatchCache::new(1 << 20))
    }

    fn location() -> Location {
        Location {
            bucket: "memory".into(),
            prefix: "db".into(),
        }
    }

    #[test]
    fn a_commit_is_planned_without_the_store() {
        let parent = Arc::new(Snapshot::empty(BlockSize::new(4096).expect("valid")));
        let transaction = || {
            let mut transaction = Transaction::new(parent.clone(), TxId(7), 6000, Instant::now());
            transaction.upload = vec![
                (BlockIndex(0), Bytes::from(vec![1u8; 4096])),
                (BlockIndex(1), Bytes::from(vec![2u8; 1904])),
            ];
            transaction
        };
        let nothing = || Fetched {
            earlier: BTreeMap::new(),
            patched: BTreeMap::new(),
            previous_interior: None,
        };
        let planned = plan(&location(), transaction(), false, nothing(), 1234);
        assert_eq!(planned.snapshot.version, Version(1));
        assert_eq!(planned.record.time_ms, 1234);
        assert_eq!(planned.upload.len(), 2);
        assert!(planned.checkpoint.is_empty());
        assert_eq!(planned.record.changes.len(), 2);
        assert_eq!(planned.record.blocks_written, 2);
        assert_eq!(planned.record.base_version, Version(0));
        // At a checkpoint the map moves into it, and the record names it as its base.
        let planned = plan(&location(), transaction(), true, nothing(), 1234);
        assert_eq!(planned.checkpoint.len(), 1);
        assert_eq!(
            planned.checkpoint[0].0,
            location().checkpoint_key(Version(1), TxId(7))
        );
        assert!(planned.record.changes.is_empty());
        assert_eq!(planned.record.base_version, Version(1));
        assert_eq!(planned.snapshot.full_map().len(), 2);
    }

    fn transaction(parent: &Arc<Snapshot>, fill: u8) -> Transaction {
        let block = Bytes::from(vec![fill; 512]);
        let mut transaction =
            Transaction::new(parent.clone(), TxId::random(), 1024, Instant::now());
        transaction.upload = vec![(BlockIndex(0), block.clone()), (BlockIndex(1), block)];
        transaction
    }

    fn empty() -> Arc<Snapshot> {
        Arc::new(Snapshot::empty(BlockSize::new(512).expect("valid")))
    }

    #[test]
    fn two_writers_on_one_version_exactly_one_wins() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let parent = empty();
        let first = block_on(commit(
            backend.clone(),
            location(),
            transaction(&parent, 1),
            records(),
        ))
        .expect("first wins");
        let second = block_on(commit(
            backend.clone(),
            location(),
            transaction(&parent, 2),
            records(),
        ));
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
        let committed = block_on(commit(
            backend,
            location(),
            transaction(&empty(), 3),
            records(),
        ))
        .expect("ours");
        assert_eq!(committed.version, Version(1));
        assert!(memory.object(&location().log_key(Version(1))).is_some());
    }

    #[test]
    fn a_refused_commit_with_no_record_behind_it_commits_nothing_and_says_so() {
        let memory = Arc::new(MemoryBackend::new());
        let faulty = Arc::new(FaultyBackend::new(memory.clone()));
        faulty.inject("PUT If-None-Match", Fault::RefuseCondition);
        let backend: Arc<dyn Backend> = faulty;
        let error = block_on(commit(
            backend,
            location(),
            transaction(&empty(), 3),
            records(),
        ))
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
        block_on(commit(
            backend,
            location(),
            transaction(&empty(), 4),
            records(),
        ))
        .expect("retries succeed");

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
        let error = block_on(commit(
            backend,
            location(),
            transaction(&parent, 5),
            records(),
        ))
        .expect_err("gives up");
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
                records(),
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
        let first = block_on(commit(
            memory.clone(),
            location(),
            transaction(&empty, 1),
            records(),
        ))
        .expect("commits");
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
                records(),
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
        let parent = block_on(commit(
            memory.clone(),
            location(),
            transaction(&empty(), 1),
            records(),
        ))
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

    /// A database of `blocks` blocks of 4096 bytes, block `i` filled with `i`.
    fn database(backend: &Arc<dyn Backend>, blocks: u64) -> (Arc<Snapshot>, Vec<Vec<u8>>) {
        let parent = Arc::new(Snapshot::empty(BlockSize::new(4096).expect("valid")));
        let content: Vec<Vec<u8>> = (0..blocks).map(|i| vec![i as u8; 4096]).collect();
        let mut transaction =
            Transaction::new(parent, TxId::random(), blocks * 4096, Instant::now());
        transaction.upload = content
            .iter()
            .enumerate()
            .map(|(i, data)| (BlockIndex(i as u64), Bytes::from(data.clone())))
            .collect();
        let snapshot =
            block_on(commit(backend.clone(), location(), transaction, records())).expect("commits");
        (snapshot, content)
    }

    /// A commit on `parent` that changes `bytes` bytes of block `index` at `at`.
    fn edit(
        backend: &Arc<dyn Backend>,
        parent: &Arc<Snapshot>,
        content: &mut [Vec<u8>],
        index: u64,
        at: usize,
        fill: &[u8],
    ) -> Arc<Snapshot> {
        let original = Bytes::from(content[index as usize].clone());
        content[index as usize][at..at + fill.len()].copy_from_slice(fill);
        let mut transaction =
            Transaction::new(parent.clone(), TxId::random(), parent.size, Instant::now());
        transaction.edits.push((
            BlockIndex(index),
            Edit {
                data: Bytes::from(content[index as usize].clone()),
                original,
            },
        ));
        block_on(commit(backend.clone(), location(), transaction, records())).expect("commits")
    }

    fn put(backend: &Arc<dyn Backend>, key: &str, body: Bytes) {
        let (backend, key) = (backend.clone(), key.to_string());
        block_on(async move { backend.put(&key, body).await.map_err(Error::from) }).expect("puts");
    }

    fn read(backend: &Arc<dyn Backend>, snapshot: &Snapshot, index: u64) -> Result<Bytes> {
        let entry = snapshot
            .block_ref(BlockIndex(index))
            .expect("in file")
            .clone();
        let (backend, len) = (backend.clone(), snapshot.block_len(BlockIndex(index)));
        block_on(async move {
            block::fetch(
                &backend,
                &location(),
                Codec::Raw,
                BlockIndex(index),
                &entry,
                len,
                &records(),
            )
            .await
        })
    }

    #[test]
    fn a_small_change_is_one_conditional_put_carrying_only_its_bytes() {
        use crate::backend::metered::{MeteredBackend, Metrics};
        let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let metrics = Arc::new(Metrics::default());
        let metered: Arc<dyn Backend> =
            Arc::new(MeteredBackend::new(memory.clone(), vec![metrics.clone()]));
        let (parent, mut content) = database(&memory, 8);
        let before = metrics.snapshot();
        let next = edit(&metered, &parent, &mut content, 3, 1000, b"one new row");
        let after = metrics.snapshot();
        assert_eq!(after.requests() - before.requests(), 1, "{after:?}");
        assert_eq!(after.put_if_absent - before.put_if_absent, 1);
        assert!(
            after.bytes_up - before.bytes_up < 1024,
            "{} bytes up for 11 changed",
            after.bytes_up - before.bytes_up
        );
        // Read cold, from the store: the object of block 3 and the record patching it.
        let loaded = block_on(load_latest(memory.clone(), location(), None))
            .expect("loads")
            .expect("exists");
        assert_eq!(loaded.version, next.version);
        assert_eq!(
            read(&memory, &loaded, 3).expect("reads")[..],
            content[3][..]
        );
        assert_eq!(
            read(&memory, &loaded, 2).expect("reads")[..],
            content[2][..]
        );
    }

    #[test]
    fn patches_are_bounded_and_never_outlive_a_checkpoint() {
        let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let (mut parent, mut content) = database(&memory, 4);
        let mut versions = vec![(parent.clone(), content.clone())];
        for round in 0..(CHECKPOINT_INTERVAL + 20) {
            let index = if round % 3 == 0 { 2 } else { 1 };
            let at = (round as usize * 37) % 4000;
            parent = edit(
                &memory,
                &parent,
                &mut content,
                index,
                at,
                &[round as u8 + 1; 9],
            );
            for entry in parent.changes.values() {
                assert!(entry.patch.is_none_or(|v| v > parent.base_version));
            }
            for patch in parent.patches.values() {
                assert!(patch.bytes() <= MAX_PATCH_BYTES.min(1024), "{patch:?}");
            }
            assert!(parent.base.iter().all(|entry| entry.patch.is_none()));
            versions.push((parent.clone(), content.clone()));
        }
        // Every version reads back exactly, from the store alone.
        for (snapshot, expected) in versions.iter().step_by(7) {
            let loaded = block_on(crate::storage::history::load_version(
                memory.clone(),
                location(),
                snapshot.version,
            ))
            .expect("loads");
            for index in 0..4 {
                let data = read(&memory, &loaded, index).expect("reads");
                assert_eq!(
                    data[..],
                    expected[index as usize][..],
                    "{:?}",
                    snapshot.version
                );
            }
        }
    }

    #[test]
    fn a_byte_changed_in_transit_is_fetched_again_and_one_changed_at_rest_is_reported() {
        let memory = Arc::new(MemoryBackend::new());
        let plain: Arc<dyn Backend> = memory.clone();
        let (parent, mut content) = database(&plain, 2);
        let next = edit(&plain, &parent, &mut content, 1, 10, b"patched");
        let faulty = Arc::new(FaultyBackend::new(memory.clone()));
        let backend: Arc<dyn Backend> = faulty.clone();
        // In transit: the object, then the record, arrive damaged once each.
        faulty.inject("GET", Fault::FlipByte);
        assert_eq!(
            read(&backend, &next, 1).expect("fetched again")[..],
            content[1][..]
        );
        faulty.inject("GET", Fault::FlipByte);
        faulty.inject("GET", Fault::FlipByte);
        assert_eq!(
            read(&backend, &next, 0).expect("fetched again")[..],
            content[0][..]
        );
        faulty.inject("GET", Fault::FlipByte);
        let (owned, version) = (backend.clone(), next.version);
        let found = block_on(async move { find_record(&owned, &location(), version).await })
            .expect("fetched again")
            .expect("exists");
        assert_eq!(found.txid, next.txid);
        // At rest: never returned, reported with the key.
        let key = location().block_key(
            BlockIndex(0),
            parent.block_ref(BlockIndex(0)).expect("in file").object,
        );
        let mut stored = memory.object(&key).expect("stored").to_vec();
        stored[4000] ^= 1;
        put(&plain, &key, Bytes::from(stored));
        let error = read(&plain, &next, 0).expect_err("corrupt");
        assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
        assert!(error.to_string().contains(&key), "{error}");
        assert_eq!(
            error.sqlite_code(crate::error::Operation::Read),
            crate::error::code::IOERR_DATA
        );
    }

    #[test]
    fn a_format_1_database_opens_and_its_next_commit_writes_format_2() {
        use crate::storage::format::format1;
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let (mut parent, mut content) = database(&backend, 3);
        parent = {
            let mut transaction =
                Transaction::new(parent.clone(), TxId::random(), parent.size, Instant::now());
            content[1] = vec![9u8; 4096];
            transaction.upload = vec![(BlockIndex(1), Bytes::from(content[1].clone()))];
            block_on(commit(backend.clone(), location(), transaction, records())).expect("commits")
        };
        // Rewrite the record and checkpoint as a format-1 build wrote them.
        for version in [Version(1), Version(2)] {
            let key = location().log_key(version);
            let owned = backend.clone();
            let record = block_on(async move { get_record(&owned, &location(), version).await })
                .expect("record");
            put(&backend, &key, format1::record(&record));
        }
        let key = location().checkpoint_key(Version(1), parent.base_txid);
        let (owned, base) = (backend.clone(), parent.base_txid);
        let checkpoint =
            block_on(async move { get_checkpoint(&owned, &location(), Version(1), base).await })
                .expect("checkpoint");
        put(&backend, &key, format1::checkpoint(&checkpoint));
        let old = block_on(load_latest(backend.clone(), location(), None))
            .expect("opens")
            .expect("exists");
        assert_eq!(old.version, Version(2));
        assert!(old.block_ref(BlockIndex(1)).expect("in file").sum.is_none());
        for index in 0..3 {
            assert_eq!(
                read(&backend, &old, index).expect("reads")[..],
                content[index as usize][..]
            );
        }
        let next = edit(&backend, &old, &mut content, 1, 5, b"format 2");
        let body = memory
            .object(&location().log_key(next.version))
            .expect("record");
        assert!(body.contains(&b'\n'), "the new record is format 2");
        let loaded = block_on(load_latest(backend.clone(), location(), None))
            .expect("opens")
            .expect("exists");
        assert!(loaded
            .block_ref(BlockIndex(1))
            .expect("in file")
            .sum
            .is_some());
        for index in 0..3 {
            assert_eq!(
                read(&backend, &loaded, index).expect("reads")[..],
                content[index as usize][..]
            );
        }
    }

    #[test]
    fn a_damaged_head_hint_or_one_naming_a_missing_record_falls_back_to_listing() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        let (mut parent, mut content) = database(&backend, 2);
        for round in 0..3 {
            parent = edit(&backend, &parent, &mut content, 1, round, b"x");
        }
        for hint in [
            &b"{\"format\":2,\"vers"[..],
            b"garbage",
            b"{\"format\":2,\"version\":99}",
        ] {
            put(
                &backend,
                &location().head_key(),
                Bytes::copy_from_slice(hint),
            );
            let loaded = block_on(load_latest(backend.clone(), location(), None))
                .expect("opens")
                .expect("exists");
            assert_eq!(
                loaded.version,
                parent.version,
                "{}",
                String::from_utf8_lossy(hint)
            );
        }
    }
}
