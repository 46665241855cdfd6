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
