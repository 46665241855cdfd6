//! Whole databases out: the blocks of a version (or of a sqlite-s3vfs-layout file) streamed
//! a window at a time, as a `Read` or into a file written atomically.

use super::*;

pub(super) fn spawn<T: Send + 'static>(
    future: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    Ok(runtime::handle()?.spawn(future))
}

pub(super) fn join<T: Send + 'static>(handle: JoinHandle<Result<T>>) -> Result<T> {
    runtime::block_on(async move {
        handle
            .await
            .map_err(|error| Error::Runtime(format!("a transfer task failed: {error}")))?
    })
}

/// Starts fetching blocks `first..end` of `snapshot`: cached blocks are taken from the cache,
/// the rest fetched concurrently and not cached (an export must not evict the working set).
pub(super) fn fetch_range(
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
pub(super) fn from_io(error: &std::io::Error) -> Option<Error> {
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
