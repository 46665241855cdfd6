//! Whole databases in and out: a committed version streamed out as a plain SQLite file, and a
//! plain SQLite file made the content of a database in one commit.
//!
//! Both directions move one window of blocks at a time (at most [`WINDOW_BYTES`], and at most
//! [`MAX_IN_FLIGHT`] blocks), so memory stays bounded whatever the database's size.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::backend::run_bounded;
use crate::cache::BlockKey;
use crate::config::Layout;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::runtime;
use crate::storage::block::{self, checksum};
use crate::storage::interior::InteriorPages;
use crate::storage::log::{self, Transaction, MAX_IN_FLIGHT};
use crate::storage::{
    header_page_size, header_u32, is_page_size, set_change_counter, BlockIndex, BlockSize,
    Snapshot, TxId, CHANGE_COUNTER, PAGE_COUNT, SQLITE_HEADER_LEN, SQLITE_MAGIC, VERSION_VALID_FOR,
};
use crate::vfs::legacy::{self, FileImage, NewFile};
use crate::vfs::{Database, Past};

const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// The bytes of blocks one transfer has in flight at once (a window); a serialize holds two
/// windows, the one being written and the next one being fetched.
pub const WINDOW_BYTES: u64 = 4 << 20;

/// How many blocks of `block_size` make a window: at least 1, at most [`MAX_IN_FLIGHT`].
pub fn window_blocks(block_size: BlockSize) -> u64 {
    (WINDOW_BYTES / block_size.bytes()).clamp(1, MAX_IN_FLIGHT as u64)
}

/// A commit that loses the race to another writer is tried again this many times.
const COMMIT_ATTEMPTS: usize = 5;

/// A plain SQLite database file, as its header describes it, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// `None` for an empty (0-byte) file, which SQLite treats as an empty database.
    pub page_size: Option<u32>,
    pub size: u64,
}

/// Whether an existing database or file may be overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Refuse,
    Replace,
}

fn invalid(name: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{name} {why}"))
}

/// The number at `at` of a header already checked to be whole.
fn read_u32(header: &[u8], at: usize) -> u32 {
    header_u32(header, at).unwrap_or_default()
}

/// Checks that `header` (the file's first bytes) and `size` describe a whole SQLite database
/// in a rollback-journal mode; `name` says what the input is, for messages.
pub fn check_image(header: &[u8], size: u64, name: &str) -> Result<Image> {
    if size < SQLITE_HEADER_LEN as u64 || header.len() < SQLITE_HEADER_LEN {
        return Err(invalid(
            name,
            format_args!("is not a SQLite database: {size} bytes is shorter than its header"),
        ));
    }
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(invalid(
            name,
            "is not a SQLite database (it does not start with \"SQLite format 3\")",
        ));
    }
    let page_size = header_page_size(header).unwrap_or_default();
    if !is_page_size(u64::from(page_size)) {
        return Err(invalid(
            name,
            format_args!(
                "is damaged: page size {page_size} is not a power of two from 512 to 65536"
            ),
        ));
    }
    let (write_version, read_version) = (header[18], header[19]);
    if write_version == 2 || read_version == 2 {
        return Err(invalid(
            name,
            "is in WAL mode (header bytes 18-19 are 2): run PRAGMA journal_mode=DELETE on it \
             with sqlite3 first",
        ));
    }
    if write_version != 1 || read_version != 1 {
        return Err(invalid(
            name,
            format_args!("has an unknown file format version ({write_version}, {read_version})"),
        ));
    }
    if !size.is_multiple_of(u64::from(page_size)) {
        return Err(invalid(
            name,
            format_args!(
                "is truncated or damaged: {size} bytes is not a whole number of {page_size}-byte pages"
            ),
        ));
    }
    // The page count at 28 is valid when the "version valid for" at 92 equals the change
    // counter at 24 (SQLite 3.7.0 and later).
    let pages = read_u32(header, PAGE_COUNT);
    if pages > 0 && read_u32(header, VERSION_VALID_FOR) == read_u32(header, CHANGE_COUNTER) {
        let expected = u64::from(pages) * u64::from(page_size);
        if size < expected {
            return Err(invalid(
                name,
                format_args!(
                    "is truncated: its header counts {pages} pages ({expected} bytes) but it has {size} bytes"
                ),
            ));
        }
    }
    Ok(Image {
        page_size: Some(page_size),
        size,
    })
}

/// Refuses a database file that has a hot rollback journal or a WAL file beside it: its
/// content on its own is not a committed state.
pub fn check_no_journal(path: &Path) -> Result<()> {
    let name = path.display();
    let beside = |suffix: &str| {
        let mut other = path.as_os_str().to_owned();
        other.push(suffix);
        std::path::PathBuf::from(other)
    };
    let wal = beside("-wal");
    if std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > 0) {
        return Err(Error::Invalid(format!(
            "{name} has a WAL file {}: open it with sqlite3 and run PRAGMA journal_mode=DELETE first",
            wal.display()
        )));
    }
    let journal = beside("-journal");
    let mut start = [0u8; 8];
    let hot = std::fs::File::open(&journal)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok()
        && start == JOURNAL_MAGIC;
    if hot {
        return Err(Error::Invalid(format!(
            "{name} has a hot journal {}: a write to it was interrupted; open it once with sqlite3 \
             (SQLite rolls the write back), then retry",
            journal.display()
        )));
    }
    Ok(())
}

fn spawn<T: Send + 'static>(
    future: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    Ok(runtime::handle()?.spawn(future))
}

fn join<T: Send + 'static>(handle: JoinHandle<Result<T>>) -> Result<T> {
    runtime::block_on(async move {
        handle
            .await
            .map_err(|error| Error::Runtime(format!("a transfer task failed: {error}")))?
    })
}

/// Starts fetching blocks `first..end` of `snapshot`: cached blocks are taken from the cache,
/// the rest fetched concurrently and not cached (an export must not evict the working set).
fn fetch_range(
    database: &Database,
    snapshot: &Snapshot,
    first: u64,
    end: u64,
) -> Result<JoinHandle<Result<Vec<Bytes>>>> {
    let mut fetches = Vec::new();
    for index in (first..end).map(BlockIndex) {
        let entry = snapshot
            .block_ref(index)
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                key: database.location.url(),
                why: format!("version {} has no block {}", snapshot.version.0, index.0),
            })?;
        let cached = database.cached_block(&BlockKey::of(index, &entry));
        let (backend, location, records, len, codec) = (
            database.backend(),
            database.location.clone(),
            database.patch_cache(),
            snapshot.block_len(index),
            snapshot.codec,
        );
        fetches.push(async move {
            match cached {
                Some(data) => Ok(data),
                None => {
                    block::fetch(&backend, &location, codec, index, &entry, len, &records).await
                }
            }
        });
    }
    spawn(run_bounded(fetches.len(), fetches))
}

/// The blocks of one version in order, fetched a window at a time: the next window is
/// in flight while the current one is consumed.
pub struct VersionBlocks<'a> {
    database: &'a Database,
    snapshot: &'a Snapshot,
    ready: VecDeque<Bytes>,
    pending: Option<JoinHandle<Result<Vec<Bytes>>>>,
    next_first: u64,
}

impl<'a> VersionBlocks<'a> {
    pub fn new(database: &'a Database, snapshot: &'a Snapshot) -> Result<VersionBlocks<'a>> {
        let mut blocks = VersionBlocks {
            database,
            snapshot,
            ready: VecDeque::new(),
            pending: None,
            next_first: 0,
        };
        blocks.start_batch()?;
        Ok(blocks)
    }

    fn start_batch(&mut self) -> Result<()> {
        let (first, count) = (self.next_first, self.snapshot.block_count());
        if first < count {
            let end = (first + window_blocks(self.snapshot.block_size)).min(count);
            self.pending = Some(fetch_range(self.database, self.snapshot, first, end)?);
            self.next_first = end;
        }
        Ok(())
    }

    /// The next block, or `None` after the last one.
    pub fn next_block(&mut self) -> Result<Option<Bytes>> {
        if self.ready.is_empty() {
            let Some(pending) = self.pending.take() else {
                return Ok(None);
            };
            self.ready = join(pending)?.into();
            self.start_batch()?;
        }
        Ok(self.ready.pop_front())
    }
}

/// A `Read` over a sequence of blocks; an error of the sequence reaches the reader inside an
/// `io::Error` and is recovered by [`from_io`].
pub struct BlockReader<F> {
    next: F,
    current: Bytes,
}

impl<F: FnMut() -> Result<Option<Bytes>>> BlockReader<F> {
    pub fn new(next: F) -> BlockReader<F> {
        BlockReader {
            next,
            current: Bytes::new(),
        }
    }
}

impl<F: FnMut() -> Result<Option<Bytes>>> Read for BlockReader<F> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match (self.next)() {
                Ok(Some(block)) => self.current = block,
                Ok(None) => return Ok(0),
                Err(error) => return Err(std::io::Error::other(error)),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The s3vfs error inside an `io::Error` from a [`BlockReader`], if that is what it carries.
fn from_io(error: &std::io::Error) -> Option<Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .cloned()
}

/// The blocks of a database of the sqlite-s3vfs layout, in order, a window at a
/// time. That layout has no versions: a block that changes after the listing is an error
/// (its size and content are checked against it), and a file with a journal is refused.
pub struct LegacyBlocks {
    image: Arc<FileImage>,
    ready: VecDeque<Bytes>,
    next: u64,
}

impl LegacyBlocks {
    pub fn open(database: &Database) -> Result<LegacyBlocks> {
        let (backend, name) = (database.backend(), database.location.prefix.clone());
        let block_size = database.latest().block_size;
        let image = runtime::block_on(async move {
            let journal = format!("{name}{}", legacy::JOURNAL_SUFFIX);
            if legacy::file_exists(&backend, &journal).await? {
                return Err(Error::Invalid(format!(
                    "s3://{}/{journal}/ exists: a write to {name} is under way or was \
                     interrupted; open it once with layout=sqlite-s3vfs (SQLite rolls an \
                     interrupted write back) and retry",
                    backend.bucket()
                )));
            }
            FileImage::open(backend, &name, block_size).await
        })?;
        Ok(LegacyBlocks {
            image: Arc::new(image),
            ready: VecDeque::new(),
            next: 0,
        })
    }

    pub fn size(&self) -> u64 {
        self.image.size()
    }

    pub fn next_block(&mut self) -> Result<Option<Bytes>> {
        if self.ready.is_empty() && self.next < self.image.block_count() {
            let (image, first) = (self.image.clone(), self.next);
            let window = window_blocks(self.image.block_size());
            let range = first..first + window;
            self.ready = runtime::block_on(async move { image.read_blocks(range).await })?.into();
            self.next += window;
        }
        Ok(self.ready.pop_front())
    }
}

/// Writes blocks from `next` to `out`; returns the bytes written.
pub fn write_blocks(
    mut next: impl FnMut() -> Result<Option<Bytes>>,
    out: &mut dyn Write,
) -> Result<u64> {
    let write_failed =
        |error: std::io::Error| Error::Invalid(format!("cannot write the output: {error}"));
    let mut written = 0;
    while let Some(block) = next()? {
        out.write_all(&block).map_err(write_failed)?;
        written += block.len() as u64;
    }
    out.flush().map_err(write_failed)?;
    Ok(written)
}

/// What a transfer reads: one version of a versioned database, or a whole file of the
/// sqlite-s3vfs layout.
pub enum Source<'a> {
    Version(&'a Database, Arc<Snapshot>),
    Legacy(&'a Database),
}

impl<'a> Source<'a> {
    /// What `database` holds at `past` (a URI's `version=` or `as_of=`, or the version a
    /// connection reads), else at its newest committed version; a database of the
    /// sqlite-s3vfs layout, which keeps no versions, as it is.
    pub fn of(database: &'a Database, past: Option<Past>) -> Result<Source<'a>> {
        if database.layout == Layout::SqliteS3vfs {
            return Ok(Source::Legacy(database));
        }
        let snapshot = match past {
            Some(Past::Pin(pin)) => database.pinned_snapshot(pin)?,
            Some(Past::Snapshot(snapshot)) => snapshot,
            None => database.refresh(Duration::ZERO)?,
        };
        if snapshot.version.0 == 0 {
            return Err(Error::Invalid(format!(
                "{} has no committed version",
                database.location.url()
            )));
        }
        Ok(Source::Version(database, snapshot))
    }
}

impl Source<'_> {
    fn database(&self) -> &Database {
        match self {
            Source::Version(database, _) | Source::Legacy(database) => database,
        }
    }

    /// Hands each block, in order, to `sink`; returns the file's size as the source states it.
    pub fn stream<T>(
        &self,
        sink: impl FnOnce(u64, &mut dyn FnMut() -> Result<Option<Bytes>>) -> Result<T>,
    ) -> Result<T> {
        match self {
            Source::Version(database, snapshot) => {
                let mut blocks = VersionBlocks::new(database, snapshot)?;
                sink(snapshot.size, &mut || blocks.next_block())
            }
            Source::Legacy(database) => {
                let mut blocks = LegacyBlocks::open(database)?;
                sink(blocks.size(), &mut || blocks.next_block())
            }
        }
    }
}

/// Writes `source` to `out` as a plain SQLite file, fetching the next blocks while the
/// current ones are written. Returns the bytes written.
pub fn serialize(source: &Source, out: &mut dyn Write) -> Result<u64> {
    let label = format!("serialize {}", source.database().location.url());
    source.stream(|size, next| {
        let mut progress = Progress::new(label, Unit::Bytes, Some(size))?;
        let written = write_blocks(counted(next, &mut progress), out)?;
        progress.finish();
        Ok(written)
    })
}

/// `next`, each block it returns advancing `progress`.
fn counted<'a>(
    next: &'a mut dyn FnMut() -> Result<Option<Bytes>>,
    progress: &'a mut Progress,
) -> impl FnMut() -> Result<Option<Bytes>> + 'a {
    move || {
        let block = next()?;
        if let Some(block) = &block {
            progress.advance(block.len() as u64);
        }
        Ok(block)
    }
}

/// Copies `source` into `target` as one commit, streaming block by block: a plain SQLite
/// file never needs to exist anywhere.
pub fn copy(source: &Source, target: &Database, overwrite: Overwrite) -> Result<u64> {
    let name = source.database().location.url();
    if std::ptr::eq(source.database(), target) {
        return Err(Error::Invalid(format!(
            "the source and the target are the same database, {name}"
        )));
    }
    let label = format!("copy {name} to {}", target.location.url());
    source.stream(|size, next| {
        let mut progress = Progress::new(label, Unit::Bytes, Some(size))?;
        let mut reader = BlockReader::new(counted(next, &mut progress));
        let mut header = Vec::with_capacity(SQLITE_HEADER_LEN);
        (&mut reader)
            .take(SQLITE_HEADER_LEN as u64)
            .read_to_end(&mut header)
            .map_err(|error| from_io(&error).unwrap_or_else(|| invalid(&name, error)))?;
        let image = check_image(&header, size, &name)?;
        let mut input = std::io::Cursor::new(header).chain(reader);
        let copied = load(target, &mut input, image, overwrite, &name)?;
        drop(input);
        progress.finish();
        Ok(copied)
    })
}

/// Makes the SQLite file read from `input` the content of `target`, whatever its layout:
/// one commit for the versioned layout, a new file for the sqlite-s3vfs layout. Returns the
/// size in bytes.
pub fn load(
    target: &Database,
    input: &mut dyn Read,
    image: Image,
    overwrite: Overwrite,
    name: &str,
) -> Result<u64> {
    match target.layout {
        Layout::Versioned => {
            deserialize(target, input, image, overwrite, name).map(|snapshot| snapshot.size)
        }
        Layout::SqliteS3vfs => load_legacy(target, input, image, overwrite, name),
    }
}

/// Writes a new file of the sqlite-s3vfs layout. That layout has no atomic commit, so an
/// existing database is never overwritten: the target name must be empty.
fn load_legacy(
    target: &Database,
    input: &mut dyn Read,
    image: Image,
    overwrite: Overwrite,
    name: &str,
) -> Result<u64> {
    let url = target.location.url();
    if overwrite == Overwrite::Replace {
        return Err(Error::Invalid(format!(
            "'replace' is refused for {url}: layout=sqlite-s3vfs overwrites in place without an \
             atomic commit, so s3vfs only writes such a database into an empty name"
        )));
    }
    let (backend, prefix) = (target.backend(), target.location.prefix.clone());
    let block_size = target.latest().block_size;
    let mut file = runtime::block_on(async move {
        NewFile::create(backend, &prefix, block_size)
            .await
            .map_err(|error| match error {
                Error::Format(why) => Error::Invalid(format!("{why}; nothing was written")),
                other => other,
            })
    })?;
    let mut remaining = image.size;
    while remaining > 0 {
        let chunk = read_block(input, remaining.min(1 << 20), name)?;
        remaining -= chunk.len() as u64;
        file = runtime::block_on(async move { file.write(&chunk).await.map(|()| file) })?;
    }
    runtime::block_on(async move { file.finish().await })
}

/// Makes `serialize` write to a file atomically: a temporary file beside `path`, synced, then
/// renamed over it. An existing file is kept unless `overwrite` is `Replace`.
pub fn serialize_to_file(source: &Source, path: &Path, overwrite: Overwrite) -> Result<u64> {
    if overwrite == Overwrite::Refuse && path.exists() {
        return Err(Error::Invalid(format!(
            "{} exists; pass 'replace' as the third argument to overwrite it",
            path.display()
        )));
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".s3vfs-partial-{}", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    let cannot = |what: &str, error: std::io::Error| {
        Error::Invalid(format!("cannot {what} {}: {error}", path.display()))
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|error| cannot("create", error))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let outcome = serialize(source, &mut out).and_then(|written| {
        let file = out
            .into_inner()
            .map_err(|error| cannot("write", error.into_error()))?;
        file.sync_all().map_err(|error| cannot("sync", error))?;
        std::fs::rename(&partial, path).map_err(|error| cannot("rename", error))?;
        Ok(written)
    });
    if outcome.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    outcome
}

/// SQLite keeps its page cache while the 16 bytes at 24..40 of the header are unchanged, so a
/// new content must not carry the same bytes as the version it replaces: when they are equal,
/// the change counter (and the "version valid for" that mirrors it) is moved on by one.
fn distinct_header(block0: &Bytes, current: Option<&Bytes>) -> Bytes {
    let same = match current {
        Some(current)
            if current.len() >= SQLITE_HEADER_LEN && block0.len() >= SQLITE_HEADER_LEN =>
        {
            current[CHANGE_COUNTER..CHANGE_COUNTER + 16]
                == block0[CHANGE_COUNTER..CHANGE_COUNTER + 16]
        }
        _ => false,
    };
    if !same {
        return block0.clone();
    }
    let mut header = block0.to_vec();
    let counter = read_u32(&header, CHANGE_COUNTER);
    let mirrored = read_u32(&header, VERSION_VALID_FOR) == counter;
    set_change_counter(&mut header, counter.wrapping_add(1), mirrored);
    Bytes::from(header)
}

fn check_target(database: &Database, parent: &Snapshot, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && parent.size > 0 {
        return Err(Error::Invalid(format!(
            "{} already holds a database (version {}, {} bytes); pass 'replace' as the third \
             argument to overwrite it",
            database.location.url(),
            parent.version.0,
            parent.size
        )));
    }
    Ok(())
}

fn read_block(input: &mut dyn Read, len: u64, name: &str) -> Result<Bytes> {
    let mut data = vec![0u8; len as usize];
    input
        .read_exact(&mut data)
        .map_err(|error| match error.kind() {
            ErrorKind::UnexpectedEof => invalid(name, "ended early: it is shorter than its size"),
            _ => invalid(name, format_args!("cannot be read: {error}")),
        })?;
    Ok(Bytes::from(data))
}

/// Makes the SQLite file read from `input` (described by `image`) the content of `database`,
/// as one new version. Blocks are uploaded while the input is read; nothing is visible until
/// the commit record is created, and every block of the new version is one of this upload,
/// so no block of an older, larger database survives in it.
pub fn deserialize(
    database: &Database,
    input: &mut dyn Read,
    image: Image,
    overwrite: Overwrite,
    name: &str,
) -> Result<Arc<Snapshot>> {
    database.check_conditional_writes()?;
    let (mut parent, mut checked) = database.refresh_checked(Duration::ZERO)?;
    check_target(database, &parent, overwrite)?;
    let block_size: BlockSize = parent.block_size;
    if let Some(page_size) = image.page_size {
        if u64::from(page_size) > block_size.bytes() {
            return Err(invalid(
                name,
                format_args!(
                    "has {page_size}-byte pages, which do not fit the {}-byte blocks of {}: each \
                     page would span several objects; use a database with block_size={page_size} \
                     or larger",
                    block_size.bytes(),
                    database.location.url()
                ),
            ));
        }
    }
    let txid = TxId::random();
    let codec = parent.codec;
    let count = block_size.block_count(image.size);
    let mut block0 = None;
    let first_upload = (count > 1).then(Instant::now);
    let mut uploads: VecDeque<JoinHandle<Result<()>>> = VecDeque::new();
    let mut sums = BTreeMap::new();
    // The interior pages of the new version, for the interior-page index of its checkpoint.
    let mut held = image.page_size.map(InteriorPages::new);
    for index in (0..count).map(BlockIndex) {
        let data = read_block(input, block_size.block_len(index, image.size), name)?;
        sums.insert(index, checksum(&data));
        if let (Some(held), true) = (held.as_mut(), index.0 > 0) {
            held.scan(index, txid, &data, block_size);
        }
        if index.0 == 0 {
            // Block 0 carries the header, settled against the parent at commit time.
            block0 = Some(data);
            continue;
        }
        if uploads.len() as u64 >= window_blocks(block_size) {
            if let Some(oldest) = uploads.pop_front() {
                join(oldest)?;
            }
        }
        let (backend, location) = (database.backend(), database.location.clone());
        uploads.push_back(spawn(async move {
            log::upload_blocks(&backend, &location, codec, txid, vec![(index, data)]).await
        })?);
    }
    while let Some(upload) = uploads.pop_front() {
        join(upload)?;
    }
    let mut attempt = 1;
    loop {
        let current = match (&block0, parent.block_ref(BlockIndex(0))) {
            (Some(_), Some(entry)) => database
                .read_blocks(&[(
                    BlockIndex(0),
                    entry.clone(),
                    parent.block_len(BlockIndex(0)),
                )])?
                .pop(),
            _ => None,
        };
        let upload = block0
            .as_ref()
            .map(|block0| vec![(BlockIndex(0), distinct_header(block0, current.as_ref()))])
            .unwrap_or_default();
        let mut interior = held.clone();
        if let (Some(interior), Some((index, data))) = (interior.as_mut(), upload.first()) {
            interior.scan(*index, txid, data, block_size);
        }
        let mut transaction = Transaction::new(parent.clone(), txid, image.size, checked);
        transaction.upload = upload;
        transaction.interior = interior;
        // Every block is new: its checkpoint starts the map, and the index, afresh.
        transaction.checkpoint = true;
        transaction.uploaded = sums.clone();
        transaction.uploaded.remove(&BlockIndex(0));
        transaction.first_upload = first_upload;
        let (backend, location) = (database.backend(), database.location.clone());
        let started = Instant::now();
        let records = database.patch_cache();
        match runtime::block_on(log::commit(backend, location, transaction, records)) {
            Ok(snapshot) => {
                database.published(snapshot.clone(), started);
                return Ok(snapshot);
            }
            Err(Error::Conflict { .. }) if attempt < COMMIT_ATTEMPTS => {
                attempt += 1;
                (parent, checked) = database.refresh_checked(Duration::ZERO)?;
                check_target(database, &parent, overwrite)?;
                if parent.block_size != block_size || parent.codec != codec {
                    return Err(Error::Invalid(format!(
                        "{} was created meanwhile with block_size={} and compression={}; nothing \
                         was changed, retry",
                        database.location.url(),
                        parent.block_size.bytes(),
                        parent.codec
                    )));
                }
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::retry::RetryPolicy;
    use crate::config::Config;

    /// A valid header for a database of `pages` pages of `page_size` bytes.
    fn header(page_size: u32, pages: u32, counter: u32) -> Vec<u8> {
        let mut header = vec![0u8; SQLITE_HEADER_LEN];
        header[..16].copy_from_slice(SQLITE_MAGIC);
        let raw = if page_size == 65536 {
            1
        } else {
            page_size as u16
        };
        header[16..18].copy_from_slice(&raw.to_be_bytes());
        header[18] = 1;
        header[19] = 1;
        header[24..28].copy_from_slice(&counter.to_be_bytes());
        header[28..32].copy_from_slice(&pages.to_be_bytes());
        header[92..96].copy_from_slice(&counter.to_be_bytes());
        header
    }

    fn image_bytes(page_size: u32, pages: u32, counter: u32, seed: u8) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..page_size as usize * pages as usize)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        bytes[..SQLITE_HEADER_LEN].copy_from_slice(&header(page_size, pages, counter));
        bytes
    }

    #[test]
    fn headers_are_checked() {
        let good = header(4096, 2, 7);
        assert_eq!(
            check_image(&good, 8192, "x").expect("valid").page_size,
            Some(4096)
        );
        assert!(check_image(&[], 0, "x")
            .expect_err("an empty input is no database")
            .to_string()
            .contains("shorter than its header"));
        let refused = |header: &[u8], size: u64| {
            check_image(header, size, "x")
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(&good[..50], 50).contains("shorter than its header"));
        let mut text = good.clone();
        text[..5].copy_from_slice(b"hello");
        assert!(refused(&text, 8192).contains("not a SQLite database"));
        let mut wal = good.clone();
        wal[18] = 2;
        wal[19] = 2;
        assert!(refused(&wal, 8192).contains("WAL mode"));
        assert!(refused(&good, 4096 + 100).contains("whole number"));
        assert!(refused(&good, 4096).contains("truncated"));
        let mut odd = good.clone();
        odd[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(refused(&odd, 8000).contains("page size"));
        assert_eq!(
            check_image(&header(65536, 1, 1), 65536, "x")
                .expect("valid")
                .page_size,
            Some(65536)
        );
    }

    fn memory_database(block_size: u64) -> Arc<Database> {
        let config = Config::parse(
            "db",
            &[
                ("bucket".to_string(), "memory".to_string()),
                ("block_size".to_string(), block_size.to_string()),
            ],
            |_| None,
        )
        .expect("config");
        Database::with_backend(
            &config,
            Arc::new(MemoryBackend::new()),
            RetryPolicy::default(),
        )
        .expect("open")
    }

    fn load(database: &Database, bytes: &[u8], overwrite: Overwrite) -> Result<Arc<Snapshot>> {
        let image = check_image(bytes, bytes.len() as u64, "input")?;
        deserialize(database, &mut &bytes[..], image, overwrite, "input")
    }

    fn export(database: &Database) -> Vec<u8> {
        let snapshot = database.latest();
        let mut out = Vec::new();
        let written = serialize(&Source::Version(database, snapshot), &mut out).expect("serialize");
        assert_eq!(written, out.len() as u64);
        out
    }

    #[test]
    fn round_trips_are_byte_identical_and_shrinks_leave_nothing_behind() {
        let database = memory_database(4096);
        let big = image_bytes(1024, 300, 5, 1);
        load(&database, &big, Overwrite::Refuse).expect("first load");
        assert_eq!(export(&database), big);
        let refused = load(&database, &big, Overwrite::Refuse).expect_err("protected");
        assert!(refused.to_string().contains("'replace'"), "{refused}");
        let small = image_bytes(1024, 3, 9, 2);
        let snapshot = load(&database, &small, Overwrite::Replace).expect("replace");
        assert_eq!(snapshot.size, small.len() as u64);
        assert_eq!(export(&database), small);
        let empty = load(&database, &[], Overwrite::Replace).expect_err("no database");
        assert!(
            empty.to_string().contains("shorter than its header"),
            "{empty}"
        );
        assert_eq!(export(&database), small, "an empty input replaces nothing");
    }

    #[test]
    fn a_replacement_with_the_same_header_moves_the_change_counter_on() {
        let database = memory_database(512);
        let first = image_bytes(512, 4, 41, 1);
        load(&database, &first, Overwrite::Refuse).expect("load");
        let mut second = image_bytes(512, 4, 41, 7);
        second[24..40].copy_from_slice(&first[24..40]);
        load(&database, &second, Overwrite::Replace).expect("replace");
        let out = export(&database);
        assert_eq!(read_u32(&out, 24), 42);
        assert_eq!(read_u32(&out, 92), 42);
        assert!(out[..24] == second[..24] && out[28..92] == second[28..92]);
        assert!(
            out[96..] == second[96..],
            "only the counter and its mirror change"
        );
    }

    #[test]
    fn short_input_and_oversized_pages_change_nothing() {
        let database = memory_database(1024);
        let bytes = image_bytes(1024, 8, 1, 3);
        let image = check_image(&bytes, bytes.len() as u64, "input").expect("valid");
        let error = deserialize(
            &database,
            &mut &bytes[..4000],
            image,
            Overwrite::Refuse,
            "input",
        )
        .expect_err("short");
        assert!(error.to_string().contains("ended early"), "{error}");
        let large = image_bytes(4096, 2, 1, 3);
        let error = load(&database, &large, Overwrite::Refuse).expect_err("too large pages");
        assert!(error.to_string().contains("block_size=4096"), "{error}");
        assert_eq!(
            database.refresh(Duration::ZERO).expect("refresh").version.0,
            0
        );
    }

    #[test]
    fn many_batches_arrive_in_order() {
        let database = memory_database(512);
        let bytes = image_bytes(512, 2000, 3, 5);
        load(&database, &bytes, Overwrite::Refuse).expect("load");
        assert_eq!(export(&database), bytes);
    }

    #[test]
    fn a_copy_streams_one_version_into_another_database() {
        let source = memory_database(1024);
        let bytes = image_bytes(1024, 150, 4, 9);
        load(&source, &bytes, Overwrite::Refuse).expect("load");
        let target = memory_database(4096);
        let version = || Source::Version(&source, source.latest());
        copy(&version(), &target, Overwrite::Refuse).expect("copy");
        assert_eq!(export(&target), bytes);
        let error = copy(&version(), &source, Overwrite::Replace).expect_err("same");
        assert!(error.to_string().contains("same database"), "{error}");
        let error = copy(&version(), &target, Overwrite::Refuse).expect_err("protected");
        assert!(error.to_string().contains("'replace'"), "{error}");
    }

    #[test]
    fn a_migration_to_the_sqlite_s3vfs_layout_and_back_keeps_every_byte() {
        let backend: Arc<dyn crate::backend::Backend> = Arc::new(MemoryBackend::new());
        let open = |name: &str, layout: &str| {
            let config = Config::parse(
                name,
                &[
                    ("bucket".to_string(), "memory".to_string()),
                    ("layout".to_string(), layout.to_string()),
                    ("block_size".to_string(), "4096".to_string()),
                ],
                |_| None,
            )
            .expect("config");
            Database::with_backend(&config, backend.clone(), RetryPolicy::default()).expect("open")
        };
        let native = open("native.db", "versioned");
        let bytes = image_bytes(1024, 37, 2, 5);
        load(&native, &bytes, Overwrite::Refuse).expect("load");
        let python = open("python.db", "sqlite-s3vfs");
        let size = copy(
            &Source::Version(&native, native.latest()),
            &python,
            Overwrite::Refuse,
        )
        .expect("out");
        assert_eq!(size, bytes.len() as u64);
        let mut out = Vec::new();
        serialize(&Source::Legacy(&python), &mut out).expect("serialize");
        assert_eq!(out, bytes);
        let again = open("again.db", "versioned");
        copy(&Source::Legacy(&python), &again, Overwrite::Refuse).expect("back");
        assert_eq!(export(&again), bytes);
        let error = copy(
            &Source::Version(&native, native.latest()),
            &python,
            Overwrite::Replace,
        )
        .expect_err("no replace in place");
        assert!(error.to_string().contains("empty name"), "{error}");
        let error = copy(
            &Source::Version(&native, native.latest()),
            &python,
            Overwrite::Refuse,
        )
        .expect_err("not empty");
        assert!(error.to_string().contains("not empty"), "{error}");
    }
}
