//! Tests of the [`File`](super::handle::File) contract both layouts keep, through the trait as
//! the FFI holds a file: the rules of SQLite's VFS API that the FFI's comments quote, one test
//! each, and a property test against a plain byte vector: random transactions of writes and
//! truncates, each committed, go through a versioned file ([`DbFile`]), a sqlite-s3vfs-layout
//! file ([`LegacyFile`]) and the vector, on the in-memory store with a cache small enough that
//! writes spill early. Every read agrees: inside a transaction, after its commit, and in a new
//! process. proptest shrinks a failing run to a minimal one.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::file::{DbFile, ReadOutcome};
use super::handle::Handle;
use super::legacy::file::{LegacyFile, Role};
use super::lock::LockLevel;
use super::Database;
use crate::backend::memory::MemoryBackend;
use crate::backend::retry::RetryPolicy;
use crate::backend::Backend;
use crate::config::{Config, Layout};
use crate::units::ByteOffset;

const BLOCK_SIZE: u64 = 1024;

#[derive(Clone, Debug)]
enum Op {
    /// `len` bytes from `first` on, counting up, at `offset`.
    Write {
        offset: u64,
        len: usize,
        first: u8,
    },
    Truncate(u64),
}

fn transactions() -> impl Strategy<Value = Vec<Vec<Op>>> {
    let op = prop_oneof![
        5 => (0u64..12 * BLOCK_SIZE, 1usize..3 * BLOCK_SIZE as usize, any::<u8>())
            .prop_map(|(offset, len, first)| Op::Write { offset, len, first }),
        1 => (0u64..10 * BLOCK_SIZE).prop_map(Op::Truncate),
    ];
    prop::collection::vec(prop::collection::vec(op, 1..6), 1..10)
}

/// The configuration of a database `layout` with small blocks and a cache of four.
fn config(layout: Layout) -> Config {
    let parameters = [
        ("bucket".to_string(), "memory".to_string()),
        ("layout".to_string(), layout.name().to_string()),
        ("block_size".to_string(), BLOCK_SIZE.to_string()),
        ("cache_size".to_string(), (4 * BLOCK_SIZE).to_string()),
    ];
    Config::parse("model.db", &parameters, |_| None).expect("valid")
}

/// The database file of `layout` on `store`, as a new process opens it.
fn open(layout: Layout, store: &Arc<dyn Backend>) -> Handle {
    let database = Database::with_backend(&config(layout), store.clone(), RetryPolicy::default())
        .expect("opens");
    match layout {
        Layout::Versioned => Box::new(DbFile::new(database, Duration::ZERO)),
        Layout::SqliteS3vfs => Box::new(LegacyFile::open(database, Role::Database).expect("opens")),
    }
}

fn read_all(file: &mut Handle) -> Vec<u8> {
    let mut buffer = vec![0u8; file.size() as usize];
    file.read(ByteOffset(0), &mut buffer).expect("reads");
    buffer
}

fn lock(file: &mut Handle, level: LockLevel) {
    file.lock(level).expect("locks").expect("not busy");
}

fn run(transactions: &[Vec<Op>]) -> Result<(), TestCaseError> {
    let layouts = [Layout::Versioned, Layout::SqliteS3vfs];
    let stores: Vec<Arc<dyn Backend>> = layouts
        .iter()
        .map(|_| Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
        .collect();
    let mut files: Vec<Handle> = layouts
        .iter()
        .zip(&stores)
        .map(|(layout, store)| open(*layout, store))
        .collect();
    let mut model: Vec<u8> = Vec::new();
    for (number, transaction) in transactions.iter().enumerate() {
        for file in &mut files {
            for level in [LockLevel::Shared, LockLevel::Reserved, LockLevel::Exclusive] {
                lock(file, level);
            }
        }
        for op in transaction {
            match *op {
                Op::Write { offset, len, first } => {
                    let data: Vec<u8> = (0..len).map(|at| first.wrapping_add(at as u8)).collect();
                    let end = offset as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[offset as usize..end].copy_from_slice(&data);
                    for file in &mut files {
                        file.write(ByteOffset(offset), &data).expect("writes");
                    }
                }
                Op::Truncate(size) => {
                    model.resize(size as usize, 0);
                    for file in &mut files {
                        file.truncate(size).expect("truncates");
                    }
                }
            }
            for (layout, file) in layouts.iter().zip(&mut files) {
                prop_assert_eq!(
                    file.size(),
                    model.len() as u64,
                    "{:?} in {}",
                    layout,
                    number
                );
                prop_assert!(
                    read_all(file) == model,
                    "{:?} reads inside {}",
                    layout,
                    number
                );
            }
        }
        for (layout, file) in layouts.iter().zip(&mut files) {
            file.sync().expect("commits");
            file.unlock(LockLevel::None).expect("unlocks");
            lock(file, LockLevel::Shared);
            prop_assert!(
                read_all(file) == model,
                "{:?} after commit {}",
                layout,
                number
            );
            file.unlock(LockLevel::None).expect("unlocks");
        }
    }
    // A new process reads what was committed.
    for (layout, store) in layouts.iter().zip(&stores) {
        let mut file = open(*layout, store);
        lock(&mut file, LockLevel::Shared);
        prop_assert!(
            read_all(&mut file) == model,
            "{:?} in a new process",
            layout
        );
        file.unlock(LockLevel::None).expect("unlocks");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn both_layouts_read_back_what_a_byte_vector_holds(transactions in transactions()) {
        run(&transactions)?;
    }
}

/// Both layouts' files on fresh stores, each holding `content`, committed.
fn files_holding(content: &[u8]) -> Vec<Handle> {
    [Layout::Versioned, Layout::SqliteS3vfs]
        .into_iter()
        .map(|layout| {
            let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
            let mut file = open(layout, &store);
            for level in [LockLevel::Shared, LockLevel::Reserved, LockLevel::Exclusive] {
                lock(&mut file, level);
            }
            file.write(ByteOffset(0), content).expect("writes");
            file.sync().expect("commits");
            file.unlock(LockLevel::None).expect("unlocks");
            file
        })
        .collect()
}

/// "If xRead() returns SQLITE_IOERR_SHORT_READ it must also fill in the unread portions of
/// the buffer with zeros."
#[test]
fn a_short_read_fills_the_rest_of_the_buffer_with_zeros() {
    for mut file in files_holding(&[7u8; 1500]) {
        lock(&mut file, LockLevel::Shared);
        let mut buffer = vec![0xAAu8; 1024];
        let outcome = file.read(ByteOffset(1000), &mut buffer).expect("reads");
        assert_eq!(outcome, ReadOutcome::Short);
        assert!(buffer[..500].iter().all(|byte| *byte == 7));
        assert!(buffer[500..].iter().all(|byte| *byte == 0));
        let mut past = vec![0xAAu8; 100];
        let outcome = file.read(ByteOffset(4000), &mut past).expect("reads");
        assert_eq!(outcome, ReadOutcome::Short);
        assert!(past.iter().all(|byte| *byte == 0));
        let mut whole = vec![0xAAu8; 1500];
        let outcome = file.read(ByteOffset(0), &mut whole).expect("reads");
        assert_eq!(outcome, ReadOutcome::Full);
        file.unlock(LockLevel::None).expect("unlocks");
    }
}

/// xCheckReservedLock answers whether any connection holds RESERVED or more on the file (in
/// this process: other processes meet at the commit record), and xLock grants one RESERVED at
/// a time and EXCLUSIVE only when no other connection reads.
#[test]
fn reserved_is_seen_by_every_file_of_the_database() {
    for layout in [Layout::Versioned, Layout::SqliteS3vfs] {
        let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let database =
            Database::with_backend(&config(layout), store.clone(), RetryPolicy::default())
                .expect("opens");
        let open_file = || -> Handle {
            match layout {
                Layout::Versioned => Box::new(DbFile::new(database.clone(), Duration::ZERO)),
                Layout::SqliteS3vfs => {
                    Box::new(LegacyFile::open(database.clone(), Role::Database).expect("opens"))
                }
            }
        };
        let (mut writer, mut reader) = (open_file(), open_file());
        lock(&mut writer, LockLevel::Shared);
        lock(&mut reader, LockLevel::Shared);
        assert!(!reader.reserved(), "{layout:?}");
        lock(&mut writer, LockLevel::Reserved);
        assert!(reader.reserved() && writer.reserved(), "{layout:?}");
        // One RESERVED at a time; EXCLUSIVE waits for the other reader.
        assert!(
            reader.lock(LockLevel::Reserved).expect("asks").is_err(),
            "{layout:?}"
        );
        assert!(
            writer.lock(LockLevel::Exclusive).expect("asks").is_err(),
            "{layout:?}"
        );
        reader.unlock(LockLevel::None).expect("unlocks");
        lock(&mut writer, LockLevel::Exclusive);
        writer.unlock(LockLevel::Shared).expect("unlocks");
        assert!(!reader.reserved(), "{layout:?}");
        // A file that goes away lets go of what it held.
        lock(&mut writer, LockLevel::Reserved);
        drop(writer);
        assert!(!reader.reserved(), "{layout:?}");
    }
}

/// "The argument to xUnlock is either SHARED or NONE": a versioned file's transaction unlocked
/// to NONE without a commit leaves nothing behind (SQLite rolls back with its journal; the
/// versioned layout's journal is local, and its commit is the record).
#[test]
fn a_versioned_transaction_unlocked_without_a_commit_leaves_nothing() {
    let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let mut file = open(Layout::Versioned, &store);
    for level in [LockLevel::Shared, LockLevel::Reserved, LockLevel::Exclusive] {
        lock(&mut file, level);
    }
    file.write(ByteOffset(0), &[1u8; 3000]).expect("writes");
    file.unlock(LockLevel::None).expect("unlocks");
    lock(&mut file, LockLevel::Shared);
    assert_eq!(file.size(), 0);
    file.unlock(LockLevel::None).expect("unlocks");
    let mut other = open(Layout::Versioned, &store);
    lock(&mut other, LockLevel::Shared);
    assert_eq!(other.size(), 0);
}
