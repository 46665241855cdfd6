//! A model-based test: random writes, truncates, commits and rollbacks through a DbFile on
//! the in-memory store, checked against a plain Vec<u8>.
use super::*;
use crate::backend::memory::MemoryBackend;
use crate::backend::retry::RetryPolicy;
use crate::backend::Backend;
use crate::cache::readahead::ReadAhead;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::storage::codec::Codec;
use crate::storage::BlockSize;
use std::sync::atomic::Ordering;

use crate::testing::Rng;

fn config(block_size: u64, cache_size: u64) -> Config {
    let mut config =
        Config::parse("model.db", &[("bucket".into(), "memory".into())], |_| None).expect("valid");
    config.block_size = BlockSize::new(block_size);
    config.cache_size = cache_size;
    config
}

fn read_all(file: &mut DbFile) -> Vec<u8> {
    let mut buffer = vec![0u8; file.size() as usize];
    file.read(ByteOffset(0), &mut buffer).expect("reads");
    buffer
}

fn run_model(seed: u64, block_size: u64, cache_size: u64) {
    run_model_stored(seed, block_size, cache_size, Codec::Raw, None);
}

/// The model run on a database created with `codec`, and encrypted with `keys` when given;
/// afterwards, every object is checked to be stored so.
fn run_model_stored(
    seed: u64,
    block_size: u64,
    cache_size: u64,
    codec: Codec,
    keys: Option<Keyring>,
) {
    let memory = Arc::new(MemoryBackend::new());
    let backend: Arc<dyn Backend> = memory.clone();
    let mut config = config(block_size, cache_size);
    config.compression = Some(codec);
    config.encryption = keys.clone();
    let database =
        Database::with_backend(&config, backend.clone(), RetryPolicy::default()).expect("opens");
    let mut file = DbFile::new(database, Duration::ZERO);
    let mut rng = Rng(seed);
    let mut committed: Vec<u8> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for step in 0..300 {
        file.lock(LockLevel::Shared)
            .expect("locks")
            .expect("not busy");
        file.lock(LockLevel::Reserved)
            .expect("locks")
            .expect("not busy");
        for _ in 0..rng.below(6) {
            match rng.below(10) {
                0 => {
                    let size = rng.below(current.len() as u64 + 3 * block_size);
                    current.resize(size as usize, 0);
                    file.truncate(size).expect("truncates");
                }
                _ => {
                    let offset = rng.below(current.len() as u64 + 2 * block_size);
                    let len = 1 + rng.below(3 * block_size) as usize;
                    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    if current.len() < offset as usize + len {
                        current.resize(offset as usize + len, 0);
                    }
                    current[offset as usize..offset as usize + len].copy_from_slice(&data);
                    file.write(ByteOffset(offset), &data).expect("writes");
                }
            }
            assert_eq!(file.size(), current.len() as u64, "step {step}");
            assert_eq!(
                read_all(&mut file),
                current,
                "step {step}: read inside the transaction"
            );
        }
        if rng.below(4) == 0 {
            current = committed.clone();
        } else {
            // As SQLite does in every commit, bump the file change counter.
            if current.len() >= 28 {
                let counter = (step as u32 + 1).to_be_bytes();
                current[24..28].copy_from_slice(&counter);
                file.write(ByteOffset(24), &counter).expect("writes");
            }
            file.sync().expect("commits");
            committed = current.clone();
        }
        file.unlock(LockLevel::None);
        file.lock(LockLevel::Shared)
            .expect("locks")
            .expect("not busy");
        assert_eq!(
            read_all(&mut file),
            committed,
            "step {step}: after commit or rollback"
        );
        file.unlock(LockLevel::None);
    }
    // A fresh process (a new Database on the same store, without the parameter) sees the
    // last commit, stored as the database was created.
    config.compression = None;
    let reopened =
        Database::with_backend(&config, backend, RetryPolicy::default()).expect("reopens");
    assert_eq!(reopened.latest().codec, codec);
    let mut file = DbFile::new(reopened, Duration::ZERO);
    assert_eq!(read_all(&mut file), committed);
    // Every object of an encrypted database is sealed with its key.
    let fingerprint = keys.as_ref().and_then(|keys| keys.fingerprints().next());
    for key in memory.keys() {
        let stored = memory.object(&key).expect("listed");
        assert_eq!(crate::crypto::sealed_with(&stored), fingerprint, "{key}");
    }
    // Every block object is stored with the codec: a zstd frame starts with its magic.
    let blocks: Vec<String> = memory
        .keys()
        .into_iter()
        .filter(|key| key.contains("/blocks/"))
        .collect();
    assert!(!blocks.is_empty());
    let sealer = keys.map(crate::crypto::Sealer::new);
    for key in blocks {
        let mut stored = memory.object(&key).expect("listed");
        if let Some(sealer) = &sealer {
            stored = sealer
                .open(&key, &stored)
                .expect("opens with the database's key");
        }
        let framed = stored.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(framed, codec != Codec::Raw, "{key}");
    }
}

#[test]
fn file_matches_a_plain_vector_small_blocks() {
    run_model(0x9e37_79b9_7f4a_7c15, 512, 1 << 20);
}

#[test]
fn file_matches_a_plain_vector_compressed() {
    run_model_stored(0x0123_4567_89ab_cdef, 1024, 2048, Codec::Zstd(3), None);
}

#[test]
fn file_matches_a_plain_vector_encrypted_and_compressed() {
    for codec in [Codec::Raw, Codec::Zstd(3)] {
        run_model_stored(0x005e_ed0f_c1de, 1024, 2048, codec, Some(keys(TEST_KEY)));
    }
}

const TEST_KEY: &str = "8d1f6c2a4b3e5f7081920a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
const OTHER_KEY: &str = "11223344556677889900aabbccddeeff11223344556677889900aabbccddeeff";

fn keys(hex: &str) -> Keyring {
    let key = crate::crypto::Key::from_hex(hex).expect("key");
    Keyring::new(vec![key], "S3VFS_ENCRYPTION_KEY").expect("ring")
}

#[test]
fn an_encrypted_database_opens_only_with_its_key_and_a_plain_one_only_without() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let plain_config = config(4096, 1 << 20);
    let mut config = plain_config.clone();
    config.encryption = Some(keys(TEST_KEY));
    let database =
        Database::with_backend(&config, backend.clone(), RetryPolicy::default()).expect("opens");
    let mut file = DbFile::new(database, Duration::ZERO);
    file.lock(LockLevel::Shared).expect("locks").expect("free");
    file.lock(LockLevel::Reserved)
        .expect("locks")
        .expect("free");
    file.write(ByteOffset(0), &[7u8; 8192]).expect("writes");
    file.sync().expect("commits");
    file.unlock(LockLevel::None);
    let open = |keys: Option<Keyring>| {
        let mut config = config.clone();
        config.encryption = keys;
        Database::with_backend(&config, backend.clone(), RetryPolicy::default())
    };
    for (keys, expected) in [
        (None, "set its key in S3VFS_ENCRYPTION_KEY"),
        (
            Some(keys(OTHER_KEY)),
            "is encrypted with the key of fingerprint",
        ),
    ] {
        let error = open(keys).err().expect("refused");
        assert!(matches!(error, Error::Encryption(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains(&TEST_KEY[..16]), "{message}");
        assert!(!message.contains(&OTHER_KEY[..16]), "{message}");
    }
    // The head hint damaged on the way is only a missed hint, and a damaged record is
    // fetched again.
    let head = crate::runtime::block_on({
        let backend = backend.clone();
        async move { Ok(backend.get("model.db/head").await?) }
    });
    assert!(
        head.expect("reads").is_some(),
        "the first commit writes the head"
    );
    let faulty = Arc::new(crate::backend::faulty::FaultyBackend::new(backend.clone()));
    // Past the line, so that the seal's checksum fails, not its line.
    for _ in ["head", "record"] {
        faulty.inject("GET", crate::backend::faulty::Fault::FlipByteAt(70));
    }
    let damaged = Database::with_backend(&config, faulty, RetryPolicy::default())
        .expect("opens despite a damaged head");
    assert_eq!(damaged.latest().size, 8192);
    let reopened = open(Some(keys(TEST_KEY))).expect("opens with its key");
    let stats = reopened.stats();
    assert_eq!(stats.encryption, "aes-256-gcm");
    let fingerprint = keys(TEST_KEY).fingerprints().next().map(|f| f.to_string());
    assert_eq!(stats.key_fingerprint, fingerprint);
    let mut file = DbFile::new(reopened, Duration::ZERO);
    assert_eq!(read_all(&mut file), vec![7u8; 8192]);

    // A plain database is refused by a process with a key, which names the way out.
    let plain: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let database = Database::with_backend(&plain_config, plain.clone(), RetryPolicy::default())
        .expect("opens");
    let mut file = DbFile::new(database, Duration::ZERO);
    file.lock(LockLevel::Shared).expect("locks").expect("free");
    file.lock(LockLevel::Reserved)
        .expect("locks")
        .expect("free");
    file.write(ByteOffset(0), &[1u8; 4096]).expect("writes");
    file.sync().expect("commits");
    file.unlock(LockLevel::None);
    let error = Database::with_backend(&config, plain, RetryPolicy::default())
        .err()
        .expect("refused");
    assert!(error.to_string().contains("encryption=none"), "{error}");
}

#[test]
fn file_matches_a_plain_vector_with_spills() {
    // A cache this small makes writes spill to the store before commit.
    run_model(0xdead_beef_cafe_f00d, 1024, 2048);
}

/// Commits `content` as the first version of a fresh database with 512-byte blocks.
fn committed_file(content: &[u8], cache_size: u64) -> (Arc<dyn Backend>, Arc<Database>, DbFile) {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let database = Database::with_backend(
        &config(512, cache_size),
        backend.clone(),
        RetryPolicy::default(),
    )
    .expect("opens");
    let mut file = DbFile::new(database.clone(), Duration::ZERO);
    file.lock(LockLevel::Exclusive)
        .expect("locks")
        .expect("not busy");
    file.write(ByteOffset(0), content).expect("writes");
    file.sync().expect("commits");
    assert_eq!(database.version().0, 1);
    (backend, database, file)
}

#[test]
fn commits_that_leave_the_change_counter_alone_are_published() {
    // In locking_mode=EXCLUSIVE, SQLite moves the change counter only in the first commit
    // of the lock: the ones after it must be published all the same.
    let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    for cache_size in [1 << 20, 2048] {
        let (backend, database, mut file) = committed_file(&content, cache_size);
        let mut expected = content.clone();
        for (round, offset) in [100usize, 1500, 3000].into_iter().enumerate() {
            let data = vec![0xA0 + round as u8; 700];
            expected[offset..offset + 700].copy_from_slice(&data);
            file.write(ByteOffset(offset as u64), &data)
                .expect("writes");
            file.sync().expect("commits");
            assert_eq!(database.version().0, 2 + round as u64, "cache {cache_size}");
        }
        let reopened =
            Database::with_backend(&config(512, cache_size), backend, RetryPolicy::default())
                .expect("reopens");
        let mut reader = DbFile::new(reopened, Duration::ZERO);
        assert_eq!(read_all(&mut reader), expected, "cache {cache_size}");
    }
}

#[test]
fn a_sync_that_restores_the_committed_content_commits_nothing() {
    // SQLite's rollback of a transaction whose pages reached the file: it writes the
    // journal's pages back, then syncs. With a tiny cache the changes spill to the store
    // first, and the comparison must read them back.
    let content: Vec<u8> = (0..8192u32).map(|i| (i % 249) as u8).collect();
    for cache_size in [1 << 20, 1024] {
        let (_backend, database, mut file) = committed_file(&content, cache_size);
        file.write(ByteOffset(600), &[1u8; 5000]).expect("writes");
        file.write(ByteOffset(24), &[9u8; 4]).expect("writes");
        file.truncate(3000).expect("truncates");
        file.truncate(8192).expect("extends");
        file.write(ByteOffset(0), &content)
            .expect("plays the journal back");
        file.sync().expect("syncs");
        assert_eq!(
            database.version().0,
            1,
            "cache {cache_size}: nothing committed"
        );
        assert_eq!(read_all(&mut file), content);
    }
}

#[test]
fn a_commit_that_changes_nothing_creates_no_version() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let database = Database::with_backend(&config(512, 1 << 20), backend, RetryPolicy::default())
        .expect("opens");
    let mut file = DbFile::new(database.clone(), Duration::ZERO);
    file.lock(LockLevel::Reserved)
        .expect("locks")
        .expect("not busy");
    file.write(ByteOffset(0), &[7u8; 700]).expect("writes");
    file.sync().expect("commits");
    assert_eq!(database.version().0, 1);
    file.write(ByteOffset(0), &[7u8; 700]).expect("writes");
    file.sync().expect("commits");
    assert_eq!(database.version().0, 1);
}

/// A store that counts GETs and the most that were in flight at once.
#[derive(Default)]
struct Gauge {
    inner: MemoryBackend,
    in_flight: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    gets: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for Gauge {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn get(&self, key: &str) -> crate::backend::BackendResult<Option<Bytes>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.gets.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let result = self.inner.get(key).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
    async fn put(&self, key: &str, body: Bytes) -> crate::backend::BackendResult<()> {
        self.inner.put(key, body).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
    ) -> crate::backend::BackendResult<crate::backend::PutOutcome> {
        self.inner.put_if_absent(key, body).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> crate::backend::BackendResult<Vec<crate::backend::ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, keys: &[String]) -> crate::backend::BackendResult<()> {
        self.inner.delete(keys).await
    }
}

/// Writes `blocks` blocks of 512 bytes through one database, then opens a second one
/// (a cold cache) on the same store.
fn cold_file(blocks: u64) -> (Arc<Gauge>, DbFile, Vec<u8>) {
    let gauge = Arc::new(Gauge::default());
    let content: Vec<u8> = (0..blocks * 512).map(|i| (i * 7 % 251) as u8).collect();
    let writer =
        Database::with_backend(&config(512, 1 << 20), gauge.clone(), RetryPolicy::default())
            .expect("opens");
    let mut file = DbFile::new(writer, Duration::ZERO);
    file.lock(LockLevel::Reserved)
        .expect("locks")
        .expect("not busy");
    file.write(ByteOffset(0), &content).expect("writes");
    file.sync().expect("commits");
    file.unlock(LockLevel::None);
    let reader =
        Database::with_backend(&config(512, 1 << 20), gauge.clone(), RetryPolicy::default())
            .expect("opens");
    let mut file = DbFile::new(reader, Duration::ZERO);
    file.lock(LockLevel::Shared)
        .expect("locks")
        .expect("not busy");
    gauge.gets.store(0, Ordering::SeqCst);
    gauge.peak.store(0, Ordering::SeqCst);
    (gauge, file, content)
}

#[test]
fn sequential_reads_fetch_ahead_concurrently_and_fetch_each_block_once() {
    let (gauge, mut file, content) = cold_file(100);
    let mut page = [0u8; 256];
    for (number, expected) in content.chunks(256).enumerate() {
        file.read(ByteOffset(number as u64 * 256), &mut page)
            .expect("reads");
        assert_eq!(&page[..], expected);
    }
    assert_eq!(gauge.gets.load(Ordering::SeqCst), 100, "each block once");
    assert!(
        gauge.peak.load(Ordering::SeqCst) >= 16,
        "read-ahead keeps requests in flight: peak {}",
        gauge.peak.load(Ordering::SeqCst)
    );
}

#[test]
fn a_cache_too_small_for_read_ahead_reads_one_block_at_a_time() {
    let mut read_ahead = ReadAhead::default();
    for block in 0..5 {
        let window = read_ahead.record(BlockIndex(block), BlockIndex(block), 1);
        assert!(window <= 1, "window {window} with a limit of 1");
    }
    let mut read_ahead = ReadAhead::default();
    for block in 0..5 {
        read_ahead.record(BlockIndex(block), BlockIndex(block), 0);
    }
}

#[test]
fn random_reads_fetch_only_what_they_read() {
    let (gauge, mut file, content) = cold_file(100);
    let mut page = [0u8; 512];
    let order = [0u64, 40, 3, 77, 12, 50, 99, 25, 60, 8];
    for block in order {
        file.read(ByteOffset(block * 512), &mut page)
            .expect("reads");
        assert_eq!(&page[..], &content[block as usize * 512..][..512]);
    }
    assert_eq!(gauge.gets.load(Ordering::SeqCst), order.len());
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 1);
}

/// A database image of `pages` pages of 512 bytes, each an interior table page (as far as
/// its type byte goes) carrying its own number.
fn interior_image(pages: u32) -> Vec<u8> {
    let mut image = vec![0u8; pages as usize * 512];
    image[..16].copy_from_slice(b"SQLite format 3\0");
    image[16..18].copy_from_slice(&512u16.to_be_bytes());
    for number in 1..=pages {
        let start = (number as usize - 1) * 512;
        image[if number == 1 { start + 100 } else { start }] = 0x05;
        image[start + 200..start + 204].copy_from_slice(&number.to_be_bytes());
    }
    image
}

fn commit_write(file: &mut DbFile, offset: u64, data: &[u8]) {
    file.lock(LockLevel::Reserved)
        .expect("locks")
        .expect("not busy");
    file.write(ByteOffset(offset), data).expect("writes");
    file.sync().expect("commits");
    file.unlock(LockLevel::None);
}

/// A new process's database of 1024-byte blocks on `gauge`, its cache cold.
fn fresh_database(gauge: &Arc<Gauge>) -> Arc<Database> {
    Database::with_backend(
        &config(1024, 1 << 20),
        gauge.clone(),
        RetryPolicy::default(),
    )
    .expect("opens")
}

/// A new process's view: a database with a cold cache, in a read transaction.
fn cold_reader(gauge: &Arc<Gauge>) -> DbFile {
    let mut file = DbFile::new(fresh_database(gauge), Duration::ZERO);
    file.lock(LockLevel::Shared)
        .expect("locks")
        .expect("not busy");
    gauge.gets.store(0, Ordering::SeqCst);
    file
}

#[test]
fn cold_reads_take_interior_pages_from_the_index_and_never_a_stale_one() {
    let gauge = Arc::new(Gauge::default());
    let mut model = interior_image(64);
    let mut writer = DbFile::new(fresh_database(&gauge), Duration::ZERO);
    commit_write(&mut writer, 0, &model);
    assert!(
        writer.snapshot().interior > 0,
        "the first checkpoint has an index"
    );

    // The first miss loads the index beside the block it fetches; later pages of other
    // blocks come from the index.
    let mut reader = cold_reader(&gauge);
    let mut page = [0u8; 512];
    for number in (1..=21u64).step_by(2) {
        reader
            .read(ByteOffset((number - 1) * 512), &mut page)
            .expect("reads");
        assert_eq!(&page[..], &model[(number as usize - 1) * 512..][..512]);
    }
    assert_eq!(
        gauge.gets.load(Ordering::SeqCst),
        2,
        "block 0 and the index"
    );
    assert_eq!(reader.database().stats().interior.hits, 10);

    // A page whose block changed since the checkpoint is read from its block.
    model[2 * 512 + 300] = 0xee;
    commit_write(&mut writer, 2 * 512 + 300, &[0xee]);
    reader.unlock(LockLevel::None);
    reader
        .lock(LockLevel::Shared)
        .expect("locks")
        .expect("not busy");
    reader.read(ByteOffset(2 * 512), &mut page).expect("reads");
    assert_eq!(&page[..], &model[2 * 512..][..512]);
    // (Blocks 2 and 3 came along by read-ahead: reads moved on from block 0 to 1.)
    reader.read(ByteOffset(14 * 512), &mut page).expect("reads");
    assert_eq!(&page[..], &model[14 * 512..][..512]);
    assert_eq!(reader.database().stats().interior.hits, 11);

    // Across a checkpoint, the writer's index carries what is still valid and what it
    // holds: a new process reads every page right, from one block and the index.
    let mut round = 0u64;
    while writer.snapshot().base_version != writer.snapshot().version {
        round += 1;
        let offset = (round % 60 + 2) * 512 + 400;
        model[offset as usize] = round as u8;
        commit_write(&mut writer, offset, &[round as u8]);
    }
    assert!(writer.snapshot().version.0 > 50, "a checkpoint was due");
    let mut reader = cold_reader(&gauge);
    for number in 1..=64u64 {
        reader
            .read(ByteOffset((number - 1) * 512), &mut page)
            .expect("reads");
        assert_eq!(
            &page[..],
            &model[(number as usize - 1) * 512..][..512],
            "page {number}"
        );
    }
    assert_eq!(
        gauge.gets.load(Ordering::SeqCst),
        2,
        "block 0 and the index"
    );

    // Without the index, every block is fetched.
    let mut reader = cold_reader(&gauge).with_interior_index(false);
    for number in (1..=64u64).step_by(2) {
        reader
            .read(ByteOffset((number - 1) * 512), &mut page)
            .expect("reads");
    }
    assert_eq!(gauge.gets.load(Ordering::SeqCst), 32);

    // An index that is gone (or damaged) only costs the blocks.
    let snapshot = writer.snapshot().clone();
    let key = writer
        .database()
        .location
        .interior_key(snapshot.base_version, snapshot.base_txid);
    gauge.inner.set_object(&key, Bytes::from_static(b"damaged"));
    let mut reader = cold_reader(&gauge);
    for number in 1..=64u64 {
        reader
            .read(ByteOffset((number - 1) * 512), &mut page)
            .expect("reads");
        assert_eq!(&page[..], &model[(number as usize - 1) * 512..][..512]);
    }
    let stats = reader.database().stats().interior;
    assert_eq!((stats.loads, stats.hits), (0, 0));
}
