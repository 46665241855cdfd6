//! The object layout of the Python package sqlite-s3vfs (`layout=sqlite-s3vfs`): keys, what a
//! LIST says about a file, the checks that refuse a wrong `block_size`, and whole-file reads and
//! writes for migrating a database to and from the versioned layout.
//!
//! The layout, as the package's source defines it: a file named `P` (the name exactly as SQLite
//! passes it to the VFS) is the objects `P/{index:010}`, one per block of a block size the
//! writer chose and stored nowhere; every block is full except the last; the file's size is
//! the sum of the objects' sizes. The rollback journal of database `P` is the file `P-journal`,
//! stored the same way. Blocks are overwritten in place and nothing is locked. The file as one
//! connection sees and changes it is [`file::LegacyFile`].

pub mod file;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{run_bounded, Backend};
use crate::error::{Error, Result};
use crate::storage::log::MAX_IN_FLIGHT;
use crate::storage::{BlockIndex, BlockSize, TxId};

/// What SQLite appends to a database's name to name its rollback journal.
pub const JOURNAL_SUFFIX: &str = "-journal";

/// The key of block `index` of the file named `name`.
pub fn block_key(name: &str, index: BlockIndex) -> String {
    format!("{name}/{:010}", index.0)
}

/// The prefix every object of the file named `name` starts with.
pub fn file_prefix(name: &str) -> String {
    format!("{name}/")
}

/// The block a key of the file named `name` holds, if it is one (exactly ten digits).
pub fn index_of_key(name: &str, key: &str) -> Option<BlockIndex> {
    let digits = key.strip_prefix(name)?.strip_prefix('/')?;
    (digits.len() == 10 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| digits.parse().ok().map(BlockIndex))
        .flatten()
}

/// A content tag: the first 64 bits of the MD5 of a block, which is what S3 reports as the
/// ETag of a single-part PUT. Cached blocks are keyed by it, so a cached block is only ever
/// used for an object whose listed ETag says it has exactly that content.
pub fn content_tag(data: &[u8]) -> TxId {
    use md5::Digest;
    let digest = md5::Md5::digest(data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    TxId(u64::from_be_bytes(first))
}

/// The content tag an ETag stands for, when it is a plain MD5 (32 hex digits); multipart and
/// encrypted objects have other ETags, and such blocks are never served from the cache.
pub fn tag_of_etag(etag: &str) -> Option<TxId> {
    (etag.len() == 32 && etag.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(&etag[..16], 16).ok().map(TxId))
        .flatten()
}

/// One block object as a LIST reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub len: u64,
    pub tag: Option<TxId>,
}

/// A file's block objects, in index order, as the store last reported them (or as this
/// process last wrote them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub blocks: Vec<Listed>,
}

impl Listing {
    /// The file size, as the package computes it: the sum of the objects' sizes.
    pub fn size(&self) -> u64 {
        self.blocks.iter().map(|block| block.len).sum()
    }
}

/// Lists the file named `name` and checks that its objects are a file of `block_size` blocks.
///
/// Refused, with a message saying why: a key under `name/` that is not a block (a database of
/// the versioned layout, or another database nested under this name), a missing block, and any
/// object but the last whose size is not `block_size` (the database was written with another
/// block size, which nothing in the bucket records).
pub async fn list(
    backend: &Arc<dyn Backend>,
    name: &str,
    block_size: BlockSize,
) -> Result<Listing> {
    let objects = backend.list(&file_prefix(name), None).await?;
    let mut blocks = Vec::with_capacity(objects.len());
    let bucket = backend.bucket().to_string();
    for object in &objects {
        let Some(index) = index_of_key(name, &object.key) else {
            let native = ["log/", "blocks/", "checkpoints/", "head"]
                .iter()
                .any(|part| object.key[name.len() + 1..].starts_with(part));
            return Err(Error::Format(if native {
                format!(
                    "s3://{bucket}/{name} holds a database of the versioned s3vfs layout \
                     ({} exists); open it without layout=sqlite-s3vfs",
                    object.key
                )
            } else {
                format!(
                    "s3://{bucket}/{} is not a block of a sqlite-s3vfs-layout file (blocks are \
                     {name}/NNNNNNNNNN); refusing to treat s3://{bucket}/{name} as one",
                    object.key
                )
            }));
        };
        if index.0 != blocks.len() as u64 {
            return Err(Error::Format(format!(
                "s3://{bucket}/{} is missing: the blocks of s3://{bucket}/{name} must be \
                 numbered from 0 without gaps (the file is damaged)",
                block_key(name, BlockIndex(blocks.len() as u64))
            )));
        }
        blocks.push(Listed {
            len: object.size,
            tag: object.etag.as_deref().and_then(tag_of_etag),
        });
    }
    let last = blocks.len().saturating_sub(1);
    for (index, block) in blocks.iter().enumerate() {
        let wrong = if index < last {
            block.len != block_size.bytes()
        } else {
            block.len > block_size.bytes()
        };
        if wrong {
            return Err(Error::Format(format!(
                "block_size={} contradicts s3://{bucket}/{}, an object of {} bytes: in this \
                 layout every block but the last is exactly block_size bytes. The block size is \
                 not stored anywhere and cannot be detected: open the database with the \
                 block_size it was written with (sqlite-s3vfs's default is 4096)",
                block_size.bytes(),
                block_key(name, BlockIndex(index as u64)),
                block.len
            )));
        }
    }
    Ok(Listing { blocks })
}

/// Fetches the blocks `wanted` (index, expected length) of the file named `name`, at most
/// [`MAX_IN_FLIGHT`] at a time, each checked for its length.
pub async fn fetch_blocks(
    backend: &Arc<dyn Backend>,
    name: &str,
    wanted: Vec<(BlockIndex, u64)>,
) -> Result<Vec<Bytes>> {
    let fetches: Vec<_> = wanted
        .into_iter()
        .map(|(index, expected)| {
            let backend = backend.clone();
            let key = block_key(name, index);
            async move {
                let data = backend.get(&key).await?.unwrap_or_default();
                if data.len() as u64 != expected {
                    return Err(changed(&key, expected, data.len()));
                }
                Ok(data)
            }
        })
        .collect();
    run_bounded(MAX_IN_FLIGHT, fetches).await
}

/// A block whose size is not what the last LIST said: another process wrote the file.
pub fn changed(key: &str, expected: u64, found: usize) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        why: format!(
            "{found} bytes, but {expected} when this transaction started: another process \
             changed the database during the transaction (the sqlite-s3vfs layout has no \
             locking between processes)"
        ),
    }
}

/// Uploads `blocks` of the file named `name`, at most [`MAX_IN_FLIGHT`] at a time.
pub async fn upload_blocks(
    backend: &Arc<dyn Backend>,
    name: &str,
    blocks: Vec<(BlockIndex, Bytes)>,
) -> Result<()> {
    let uploads: Vec<_> = blocks
        .into_iter()
        .map(|(index, data)| {
            let backend = backend.clone();
            let key = block_key(name, index);
            async move { backend.put(&key, data).await.map_err(Error::from) }
        })
        .collect();
    run_bounded(MAX_IN_FLIGHT, uploads).await.map(|_| ())
}

/// Deletes blocks `range` of the file named `name`.
pub async fn delete_blocks(
    backend: &Arc<dyn Backend>,
    name: &str,
    range: Range<u64>,
) -> Result<()> {
    let keys: Vec<String> = range
        .map(|index| block_key(name, BlockIndex(index)))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    backend.delete(&keys).await.map_err(Error::from)
}

/// Deletes every object of the file named `name` (the package's xDelete).
pub async fn delete_file(backend: &Arc<dyn Backend>, name: &str) -> Result<()> {
    let keys: Vec<String> = backend
        .list(&file_prefix(name), None)
        .await?
        .into_iter()
        .map(|object| object.key)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    backend.delete(&keys).await.map_err(Error::from)
}

/// Whether the file named `name` has any object (the package's xAccess).
pub async fn file_exists(backend: &Arc<dyn Backend>, name: &str) -> Result<bool> {
    Ok(!backend.list(&file_prefix(name), None).await?.is_empty())
}

/// A whole sqlite-s3vfs-layout file, for reading it out block by block (migration): its
/// size and its blocks, fetched concurrently.
pub struct FileImage {
    backend: Arc<dyn Backend>,
    name: String,
    block_size: BlockSize,
    listing: Listing,
}

impl FileImage {
    /// Lists and checks the file named `name` (see [`list`]).
    pub async fn open(
        backend: Arc<dyn Backend>,
        name: &str,
        block_size: BlockSize,
    ) -> Result<FileImage> {
        let listing = list(&backend, name, block_size).await?;
        Ok(FileImage {
            backend,
            name: name.to_string(),
            block_size,
            listing,
        })
    }

    pub fn size(&self) -> u64 {
        self.listing.size()
    }

    pub fn block_size(&self) -> BlockSize {
        self.block_size
    }

    pub fn block_count(&self) -> u64 {
        self.listing.blocks.len() as u64
    }

    /// Blocks `range` in order; a block whose size changed since the listing is an error.
    pub async fn read_blocks(&self, range: Range<u64>) -> Result<Vec<Bytes>> {
        let end = range.end.min(self.block_count());
        let wanted = (range.start.min(end)..end)
            .map(|index| (BlockIndex(index), self.listing.blocks[index as usize].len))
            .collect();
        fetch_blocks(&self.backend, &self.name, wanted).await
    }
}

/// Writes a whole new file into an empty name, block by block as bytes arrive (migration).
/// Nothing else may write the name meanwhile; the file is complete once [`finish`] returns.
///
/// [`finish`]: NewFile::finish
pub struct NewFile {
    backend: Arc<dyn Backend>,
    name: String,
    block_size: BlockSize,
    pending: Vec<u8>,
    ready: Vec<(BlockIndex, Bytes)>,
    next: u64,
    written: u64,
}

impl NewFile {
    /// Starts a file named `name`; refused unless neither it nor its journal has objects.
    pub async fn create(
        backend: Arc<dyn Backend>,
        name: &str,
        block_size: BlockSize,
    ) -> Result<NewFile> {
        for taken in [name.to_string(), format!("{name}{JOURNAL_SUFFIX}")] {
            if file_exists(&backend, &taken).await? {
                return Err(Error::Format(format!(
                    "s3://{}/{taken}/ is not empty: a new file is only written into an empty name",
                    backend.bucket()
                )));
            }
        }
        Ok(NewFile {
            backend,
            name: name.to_string(),
            block_size,
            pending: Vec::new(),
            ready: Vec::new(),
            next: 0,
            written: 0,
        })
    }

    /// Appends `data`; full blocks are uploaded in batches of [`MAX_IN_FLIGHT`].
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        let block = self.block_size.bytes() as usize;
        while !data.is_empty() {
            let take = (block - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == block {
                self.seal();
                if self.ready.len() >= MAX_IN_FLIGHT {
                    self.upload().await?;
                }
            }
        }
        Ok(())
    }

    fn seal(&mut self) {
        let data = Bytes::from(std::mem::take(&mut self.pending));
        self.written += data.len() as u64;
        self.ready.push((BlockIndex(self.next), data));
        self.next += 1;
    }

    async fn upload(&mut self) -> Result<()> {
        let ready = std::mem::take(&mut self.ready);
        upload_blocks(&self.backend, &self.name, ready).await
    }

    /// Uploads the rest, the short last block included, and returns the file size.
    pub async fn finish(mut self) -> Result<u64> {
        if !self.pending.is_empty() {
            self.seal();
        }
        self.upload().await?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn memory() -> (Arc<MemoryBackend>, Arc<dyn Backend>) {
        let memory = Arc::new(MemoryBackend::new());
        let backend: Arc<dyn Backend> = memory.clone();
        (memory, backend)
    }

    fn block(n: u64) -> BlockSize {
        BlockSize::new(n).expect("valid")
    }

    #[test]
    fn keys_are_the_packages() {
        assert_eq!(
            block_key("db.sqlite", BlockIndex(7)),
            "db.sqlite/0000000007"
        );
        assert_eq!(
            index_of_key("db.sqlite", "db.sqlite/0000000123"),
            Some(BlockIndex(123))
        );
        assert_eq!(index_of_key("db.sqlite", "db.sqlite/123"), None);
        assert_eq!(
            index_of_key("db.sqlite", "db.sqlite-journal/0000000000"),
            None
        );
        let tag = content_tag(b"hello");
        // MD5("hello") = 5d41402abc4b2a76b9719d911017c592
        assert_eq!(tag_of_etag("5d41402abc4b2a76b9719d911017c592"), Some(tag));
        assert_eq!(tag_of_etag("5d41402abc4b2a76b9719d911017c592-2"), None);
    }

    #[tokio::test]
    async fn listing_checks_the_block_size() {
        let (memory, backend) = memory();
        memory.set_object("d/0000000000", Bytes::from(vec![1u8; 4096]));
        memory.set_object("d/0000000001", Bytes::from(vec![2u8; 100]));
        let listing = list(&backend, "d", block(4096)).await.expect("valid");
        assert_eq!(listing.size(), 4196);
        assert_eq!(listing.blocks[1].tag, Some(content_tag(&[2u8; 100])));
        let error = list(&backend, "d", block(8192)).await.unwrap_err();
        assert!(error.to_string().contains("contradicts"), "{error}");
        let error = list(&backend, "d", block(1024)).await.unwrap_err();
        assert!(error.to_string().contains("block_size=1024"), "{error}");
        memory.set_object("d/0000000003", Bytes::from(vec![2u8; 100]));
        let error = list(&backend, "d", block(4096)).await.unwrap_err();
        assert!(
            error.to_string().contains("d/0000000002 is missing"),
            "{error}"
        );
        memory.set_object("n/log/00000000000000000001", Bytes::from_static(b"{}"));
        let error = list(&backend, "n", block(4096)).await.unwrap_err();
        assert!(error.to_string().contains("versioned"), "{error}");
    }

    #[tokio::test]
    async fn a_new_file_reads_back_block_by_block() {
        let (_, backend) = memory();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = NewFile::create(backend.clone(), "m", block(4096))
            .await
            .expect("empty");
        for chunk in data.chunks(7000) {
            file.write(chunk).await.expect("writes");
        }
        assert_eq!(file.finish().await.expect("finishes"), data.len() as u64);
        let image = FileImage::open(backend.clone(), "m", block(4096))
            .await
            .expect("lists");
        assert_eq!(image.size(), data.len() as u64);
        let blocks = image
            .read_blocks(0..image.block_count())
            .await
            .expect("reads");
        assert_eq!(blocks.concat(), data);
        let refused = NewFile::create(backend, "m", block(4096)).await;
        assert!(refused.is_err(), "a name with objects is refused");
    }
}
