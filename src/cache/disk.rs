//! The disk cache (`cache_dir=`): block objects kept in a directory that any number of
//! processes of a host share, so that a new process (a restart, a deploy, the next CLI
//! command) reads what an earlier one fetched without asking the store.
//!
//! Only block objects are kept: they are immutable (a new version names new objects), so a
//! copy never goes stale. Nothing mutable (commit records, the head hint, listings) is.
//!
//! Each block is one file, `DIR/{database}/{index:010}-{txid}`, where `{database}` is a digest
//! of the endpoint, bucket and prefix. A file is the 8-byte magic `S3VFSBK1`, the MD5 of the
//! block, then the block. It is written under a temporary name in `DIR/tmp/` and renamed into
//! place, so a reader sees a whole file or none, and a process killed while writing leaves
//! only a temporary file, which no reader opens and the eviction removes. A file whose magic,
//! length or digest is wrong (a torn write by a crashed host, a byte changed on disk) is a
//! miss: it is deleted and the block fetched again. A block of an encrypted database is kept
//! sealed with the database's key (see [`crate::crypto`]), bound to its file name, so the
//! directory holds none of its content in plain.
//!
//! The directory is kept within its byte budget by every process that writes into it: after
//! each eighth of the budget written, a process lists the directory and deletes the least
//! recently used files (reads touch a file's modification time) down to nine tenths of the
//! budget. Between those sweeps the directory can exceed the budget by what the processes
//! wrote since their last sweep.
//!
//! Failures (a directory that cannot be created or written, a full disk) never fail a read:
//! the block comes from the store, and the first failure of each directory is reported once.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use md5::Digest;
use parking_lot::Mutex;

use super::BlockKey;
use crate::crypto::Sealer;

const MAGIC: &[u8; 8] = b"S3VFSBK1";
const HEADER_LEN: usize = MAGIC.len() + 16;
/// Temporary files older than this were left by a process that died while writing.
const STALE_TEMPORARY: Duration = Duration::from_secs(600);

/// A disk cache directory, shared by the databases of this process that name it.
pub struct DiskDirectory {
    root: PathBuf,
    budget: u64,
    written_since_sweep: AtomicU64,
    /// Whether a failure of this directory was reported already.
    reported: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Reports a failure (once per directory): a message for a person.
    report: fn(&str),
}

/// What `s3vfs_stats()` reports of the disk cache.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DiskStats {
    pub dir: String,
    pub budget: u64,
    pub hits: u64,
    pub misses: u64,
}

/// The block files of one database in a [`DiskDirectory`].
pub struct DiskCache {
    directory: Arc<DiskDirectory>,
    folder: PathBuf,
    /// An encrypted database's sealer: its files are sealed with the database's key.
    sealer: Option<Arc<Sealer>>,
}

impl DiskDirectory {
    /// The directory `root` with `budget` bytes, shared in this process. A directory that
    /// cannot be created, or a budget below `min_budget` (one block), is refused with a message
    /// saying so, once per directory; the caller then reads from the store alone.
    pub fn open(
        root: &Path,
        budget: u64,
        min_budget: u64,
        report: fn(&str),
    ) -> Option<Arc<DiskDirectory>> {
        static DIRECTORIES: OnceLock<Mutex<HashMap<PathBuf, Arc<DiskDirectory>>>> = OnceLock::new();
        static REFUSED: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
        let mut directories = DIRECTORIES.get_or_init(Default::default).lock();
        if let Some(directory) = directories.get(root) {
            return Some(directory.clone());
        }
        let refuse = |why: String| {
            let mut refused = REFUSED.get_or_init(Default::default).lock();
            if !refused.iter().any(|path| path == root) {
                refused.push(root.to_path_buf());
                report(&format!(
                    "s3vfs: the disk cache {} is not used: {why}; reading from the store",
                    root.display()
                ));
            }
            None
        };
        if budget < min_budget {
            return refuse(format!(
                "its budget, {budget} bytes, is smaller than one block ({min_budget} bytes); \
                 raise disk_cache_size"
            ));
        }
        if let Err(error) = fs::create_dir_all(root.join("tmp")) {
            return refuse(format!("it cannot be created ({error})"));
        }
        let directory = Arc::new(DiskDirectory {
            root: root.to_path_buf(),
            budget,
            written_since_sweep: AtomicU64::new(0),
            reported: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            report,
        });
        directories.insert(root.to_path_buf(), directory.clone());
        Some(directory)
    }

    /// The block files of the database `namespace` names (its endpoint, bucket and prefix).
    pub fn database(self: &Arc<Self>, namespace: &str) -> DiskCache {
        let digest = md5::Md5::digest(namespace.as_bytes());
        let folder: String = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        DiskCache {
            directory: self.clone(),
            folder: self.root.join(folder),
            sealer: None,
        }
    }

    pub fn stats(&self) -> DiskStats {
        DiskStats {
            dir: self.root.display().to_string(),
            budget: self.budget,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn failed(&self, what: &str, error: &std::io::Error) {
        if !self.reported.swap(true, Ordering::Relaxed) {
            (self.report)(&format!(
                "s3vfs: the disk cache {} failed to {what} ({error}); blocks are read from the \
                 store meanwhile (reported once)",
                self.root.display()
            ));
        }
    }

    /// Deletes the least recently used files down to nine tenths of the budget, and the
    /// temporary files of processes that died while writing.
    fn sweep(&self) {
        let mut files = Vec::new();
        let mut total = 0u64;
        let Ok(folders) = fs::read_dir(&self.root) else {
            return;
        };
        let now = SystemTime::now();
        for folder in folders.flatten() {
            let temporary = folder.file_name() == "tmp";
            let Ok(entries) = fs::read_dir(folder.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                let modified = metadata.modified().unwrap_or(now);
                if temporary {
                    let age = now.duration_since(modified).unwrap_or_default();
                    if age > STALE_TEMPORARY {
                        let _ = fs::remove_file(entry.path());
                    }
                    continue;
                }
                total += metadata.len();
                files.push((modified, metadata.len(), entry.path()));
            }
        }
        if total <= self.budget {
            return;
        }
        files.sort();
        let target = self.budget / 10 * 9;
        for (_, len, path) in files {
            if total <= target {
                break;
            }
            // Another process may have deleted it first.
            let _ = fs::remove_file(path);
            total = total.saturating_sub(len);
        }
    }
}

impl DiskCache {
    /// These files, sealed with `sealer`'s key when there is one.
    pub fn sealed_by(self, sealer: Option<Arc<Sealer>>) -> DiskCache {
        DiskCache { sealer, ..self }
    }

    /// The associated data a file named `name` is sealed with.
    fn sealed_name(name: &str) -> String {
        format!("cache/{name}")
    }

    fn name(key: &BlockKey) -> String {
        format!("{:010}-{}", key.index.0, key.txid)
    }

    #[cfg(test)]
    fn path(&self, key: &BlockKey) -> PathBuf {
        self.folder.join(Self::name(key))
    }

    /// The block `key`, if a whole, intact copy of `len` bytes is on disk.
    pub fn get(&self, key: &BlockKey, len: u64) -> Option<Bytes> {
        self.get_named(&Self::name(key), len)
    }

    /// Keeps a copy of block `key`: written under a temporary name and renamed into place.
    pub fn put(&self, key: &BlockKey, data: &[u8]) {
        self.put_named(&Self::name(key), data)
    }

    /// The immutable object kept as `name` (another kind than blocks, such as an
    /// interior-page index), if a whole, intact copy of `len` bytes is on disk.
    pub fn get_named(&self, name: &str, len: u64) -> Option<Bytes> {
        let path = self.folder.join(name);
        let found = fs::read(&path).ok().and_then(|file| {
            let body = file.get(HEADER_LEN..)?;
            let intact = file.starts_with(MAGIC)
                && md5::Md5::digest(body)[..] == file[MAGIC.len()..HEADER_LEN];
            let content = match &self.sealer {
                _ if !intact => None,
                None => Some(Bytes::copy_from_slice(body)),
                Some(sealer) => sealer.open(&Self::sealed_name(name), body).ok(),
            }
            .filter(|content| content.len() as u64 == len);
            if content.is_none() {
                // Torn or changed on disk: fetch it again, and write it anew.
                let _ = fs::remove_file(&path);
            }
            content
        });
        let counter = match found {
            Some(_) => &self.directory.hits,
            None => &self.directory.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if found.is_some() {
            // Recently used: the sweep deletes the least recently used first.
            if let Ok(file) = fs::File::options().append(true).open(&path) {
                let _ = file.set_modified(SystemTime::now());
            }
        }
        found
    }

    /// Keeps a copy of the immutable object `name`, as [`DiskCache::put`] does a block.
    pub fn put_named(&self, name: &str, data: &[u8]) {
        let sealed = self
            .sealer
            .as_ref()
            .map(|sealer| sealer.seal(&Self::sealed_name(name), data));
        let data = sealed.as_deref().unwrap_or(data);
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let directory = &self.directory;
        let temporary = directory.root.join("tmp").join(format!(
            "{}-{}-{}",
            std::process::id(),
            name,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| -> std::io::Result<()> {
            fs::create_dir_all(&self.folder)?;
            let mut file = fs::File::create(&temporary)?;
            file.write_all(MAGIC)?;
            file.write_all(&md5::Md5::digest(data))?;
            file.write_all(data)?;
            drop(file);
            match fs::rename(&temporary, self.folder.join(name)) {
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    // The tmp folder was swept away by another process: recreate it next time.
                    fs::create_dir_all(directory.root.join("tmp"))
                }
                other => other,
            }
        })();
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            directory.failed("write a block", &error);
            return;
        }
        let since = directory
            .written_since_sweep
            .fetch_add(data.len() as u64 + HEADER_LEN as u64, Ordering::Relaxed);
        if since + data.len() as u64 >= directory.budget / 8 {
            directory.written_since_sweep.store(0, Ordering::Relaxed);
            directory.sweep();
        }
    }

    pub fn stats(&self) -> DiskStats {
        self.directory.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{BlockIndex, TxId};

    fn quiet(_: &str) {}

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "s3vfs-disk-{name}-{}-{}",
            std::process::id(),
            TxId::random()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn key(index: u64) -> BlockKey {
        BlockKey {
            index: BlockIndex(index),
            txid: TxId(0xabc0 + index),
        }
    }

    #[test]
    fn an_encrypted_database_keeps_its_blocks_sealed_on_disk() {
        use crate::crypto::{Key, Keyring};
        let sealer = |hex: &str| {
            let ring = Keyring::new(vec![Key::from_hex(hex).expect("key")], "test");
            Some(Arc::new(Sealer::new(ring.expect("ring"))))
        };
        let root = scratch("sealed");
        let directory = DiskDirectory::open(&root, 1 << 20, 512, quiet).expect("opens");
        let key_a = "aa".repeat(32);
        let cache = directory.database("e|b|db").sealed_by(sealer(&key_a));
        let block = b"SQLite format 3\0".repeat(256);
        cache.put(&key(1), &block);
        let file = fs::read(cache.path(&key(1))).expect("file");
        assert!(!file.windows(15).any(|window| window == b"SQLite format 3"));
        assert_eq!(
            cache.get(&key(1), block.len() as u64).expect("hit")[..],
            block[..]
        );
        // Read without the key, or with another, a sealed file is a miss (and goes).
        let plain = directory.database("e|b|db");
        assert!(plain.get(&key(1), block.len() as u64).is_none());
        cache.put(&key(1), &block);
        let other = directory
            .database("e|b|db")
            .sealed_by(sealer(&"bb".repeat(32)));
        assert!(other.get(&key(1), block.len() as u64).is_none());
        assert!(!cache.path(&key(1)).exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn blocks_come_back_whole_and_damaged_files_are_misses() {
        let root = scratch("damage");
        let cache = DiskDirectory::open(&root, 1 << 20, 512, quiet)
            .expect("opens")
            .database("endpoint|bucket|db");
        let block = vec![7u8; 4096];
        assert!(cache.get(&key(1), 4096).is_none());
        cache.put(&key(1), &block);
        assert_eq!(cache.get(&key(1), 4096).expect("hit")[..], block[..]);
        // Another database's files are its own.
        let other = DiskDirectory::open(&root, 1 << 20, 512, quiet)
            .expect("opens")
            .database("endpoint|bucket|other");
        assert!(other.get(&key(1), 4096).is_none());
        // A byte changed on disk, a truncated file, a wrong length: misses, and the file goes.
        let path = cache.path(&key(1));
        let mut bytes = fs::read(&path).expect("file");
        bytes[HEADER_LEN + 100] ^= 1;
        fs::write(&path, &bytes).expect("write");
        assert!(cache.get(&key(1), 4096).is_none());
        assert!(!path.exists(), "a damaged file is deleted");
        cache.put(&key(1), &block);
        fs::write(&path, &fs::read(&path).expect("file")[..2000]).expect("truncate");
        assert!(cache.get(&key(1), 4096).is_none());
        cache.put(&key(1), &block);
        assert!(
            cache.get(&key(1), 8192).is_none(),
            "a length the snapshot does not expect"
        );
        assert_eq!(cache.stats().hits, 1);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_directory_stays_within_its_budget_and_keeps_the_recently_used() {
        let root = scratch("budget");
        let cache = DiskDirectory::open(&root, 64 * 1024, 4096, quiet)
            .expect("opens")
            .database("e|b|p");
        let block = vec![1u8; 4096];
        for index in 0..64 {
            cache.put(&key(index), &block);
            // Block 0 stays in use.
            if index % 4 == 0 {
                std::thread::sleep(Duration::from_millis(2));
                assert!(
                    cache.get(&key(0), 4096).is_some(),
                    "the block in use is kept"
                );
            }
        }
        let total: u64 = fs::read_dir(&cache.folder)
            .expect("folder")
            .flatten()
            .map(|entry| entry.metadata().expect("metadata").len())
            .sum();
        // The last sweep left at most the budget; the writes after it add at most an eighth.
        assert!(
            total <= 64 * 1024 + 64 * 1024 / 8 + 4096 + 24,
            "{total} bytes on disk"
        );
        assert!(
            cache.get(&key(63), 4096).is_some(),
            "the newest block is kept"
        );
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_temporary_file_of_a_dead_process_is_never_read_and_is_swept() {
        let root = scratch("torn");
        let cache = DiskDirectory::open(&root, 1 << 20, 512, quiet)
            .expect("opens")
            .database("e|b|p");
        let torn = root.join("tmp").join("999999-dead-0");
        fs::write(&torn, b"S3VFSBK1 half a block").expect("write");
        let old = SystemTime::now() - STALE_TEMPORARY - Duration::from_secs(1);
        fs::File::options()
            .append(true)
            .open(&torn)
            .expect("open")
            .set_modified(old)
            .expect("age");
        assert!(cache.get(&key(3), 21).is_none());
        cache.directory.sweep();
        assert!(!torn.exists(), "swept");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_directory_that_cannot_be_used_is_refused_once_and_reads_go_to_the_store() {
        static REPORTS: AtomicU64 = AtomicU64::new(0);
        fn count(_: &str) {
            REPORTS.fetch_add(1, Ordering::Relaxed);
        }
        let file = scratch("not-a-dir");
        fs::write(&file, b"a file where the directory should be").expect("write");
        let root = file.join("cache");
        assert!(DiskDirectory::open(&root, 1 << 20, 512, count).is_none());
        assert!(DiskDirectory::open(&root, 1 << 20, 512, count).is_none());
        assert_eq!(REPORTS.load(Ordering::Relaxed), 1, "said once");
        let small = scratch("small");
        assert!(DiskDirectory::open(&small, 1000, 4096, count).is_none());
        assert_eq!(REPORTS.load(Ordering::Relaxed), 2);
        let _ = fs::remove_file(&file);
    }
}
