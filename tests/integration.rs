//! Integration tests: the built extension loaded into rusqlite's bundled SQLite, against the
//! real local S3 server that `scripts/s3-server.sh` starts (its environment must be set:
//! `eval "$(scripts/s3-server.sh env)"`, as `make test` does).

mod common;

use std::process::Command;

use common::*;
use rusqlite::{Connection, ErrorCode};
use serde_json::Value;

/// The same database reached through another spelling of the endpoint: s3vfs then keeps a
/// separate cache, snapshot and lock table, exactly as another process or host would.
fn other_host() -> String {
    let alias = endpoint().replace("127.0.0.1", "localhost");
    assert_ne!(alias, endpoint(), "the endpoint must be given as 127.0.0.1");
    format!("endpoint={alias}")
}

fn requests(connection: &Connection) -> Value {
    stats(connection)["database"]["requests"].clone()
}

fn delta(before: &Value, after: &Value, field: &str) -> u64 {
    after[field].as_u64().expect("counter") - before[field].as_u64().expect("counter")
}

fn fill(connection: &Connection, rows: i64, width: i64) {
    connection
        .execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO t(payload) SELECT randomblob({width}) FROM n;"
        ))
        .expect("fill");
}

fn count(connection: &Connection) -> i64 {
    connection
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .expect("count")
}

fn checksum(connection: &Connection) -> String {
    connection
        .query_row(
            "SELECT hex(sha3_agg) FROM (SELECT group_concat(hex(payload)) AS sha3_agg FROM t)",
            [],
            |row| row.get::<_, Option<String>>(0),
        )
        .expect("checksum")
        .unwrap_or_default()
}

/// Runs `script` through the sqlite3 CLI `command`.
fn run_cli(command: &mut Command, script: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sqlite3 CLI runs (apt-get install sqlite3)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    child.wait_with_output().expect("the sqlite3 CLI finishes")
}

/// Opens `name` expecting SQLITE_CANTOPEN; returns s3vfs's message about why.
fn open_refused(name: &str, parameters: &str) -> String {
    let error = try_open(name, parameters)
        .map(|_| ())
        .expect_err("the open must fail");
    assert_eq!(
        sqlite_code(&error).map(|code| code.0),
        Some(ErrorCode::CannotOpen),
        "{parameters}: {error}"
    );
    last_error(&Connection::open_in_memory().expect("memory"))
}

#[test]
fn round_trip_and_reopen_in_a_new_process() {
    let name = unique("round-trip");
    {
        let connection = open(&name, "");
        fill(&connection, 500, 100);
        connection
            .execute("INSERT INTO t(payload) VALUES (x'cafe')", [])
            .expect("insert");
    }
    let script = format!(
        ".load {}\n.open '{}'\nSELECT count(*), hex(max(payload) FILTER (WHERE length(payload) = 2)) FROM t;\nPRAGMA integrity_check;\n",
        library().display(),
        uri(&name, "")
    );
    let output = run_cli(&mut Command::new("sqlite3"), &script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "501|CAFE\nok\n",
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_cli_loads_the_library_by_its_bare_name() {
    // Exactly `.load ./libs3vfs`: SQLite adds the suffix and derives `sqlite3_svfs_init`.
    let directory = std::env::temp_dir().join(format!("s3vfs-load-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let suffix = if cfg!(target_os = "macos") {
        "dylib"
    } else {
        "so"
    };
    let built = library().with_extension(suffix);
    std::fs::copy(&built, directory.join(format!("libs3vfs.{suffix}"))).expect("copy the library");
    let script = format!(
        ".load ./libs3vfs\n.open '{}'\nSELECT s3vfs_version();\n",
        uri(&unique("bare-load"), "")
    );
    let output = run_cli(Command::new("sqlite3").current_dir(&directory), &script);
    std::fs::remove_dir_all(&directory).ok();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("s3vfs "),
        "stdout: {stdout} stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_journal_mode_and_synchronous_level_commits_and_wal_keeps_the_mode() {
    for (mode, synchronous) in [
        ("delete", "full"),
        ("truncate", "normal"),
        ("persist", "off"),
        ("memory", "off"),
        ("off", "off"),
        ("delete", "extra"),
    ] {
        let name = unique(&format!("journal-{mode}-{synchronous}"));
        {
            let connection = open(&name, "");
            let set: String = connection
                .query_row(&format!("PRAGMA journal_mode={mode}"), [], |row| row.get(0))
                .expect("mode");
            assert_eq!(set, mode);
            connection
                .execute_batch(&format!("PRAGMA synchronous={synchronous}"))
                .expect("every synchronous level is taken");
            fill(&connection, 300, 200);
            connection
                .execute("DELETE FROM t WHERE id % 3 = 0", [])
                .expect("delete");
        }
        let connection = open(&name, "");
        assert_eq!(count(&connection), 200, "journal_mode={mode} {synchronous}");
        assert_eq!(
            integrity(&connection),
            "ok",
            "journal_mode={mode} {synchronous}"
        );
    }
    let connection = open(&unique("wal"), "");
    fill(&connection, 10, 10);
    for attempt in ["WAL", "wal", "w"] {
        let answer: String = connection
            .query_row(&format!("PRAGMA journal_mode={attempt}"), [], |row| {
                row.get(0)
            })
            .expect("answered with the mode in force, as SQLite answers");
        assert_eq!(answer, "delete");
    }
    let why: String = connection
        .query_row("SELECT s3vfs_last_error()", [], |row| row.get(0))
        .expect("the reason");
    assert!(why.contains("WAL is not available"), "{why}");
    fill(&connection, 20, 10);
    assert_eq!(count(&connection), 30);
}

#[test]
fn page_sizes_and_block_sizes() {
    for (page_size, block_size) in [
        (512, 4096),
        (4096, 4096),
        (65536, 4096),
        (4096, 65536),
        (65536, 65536),
        (1024, 512),
    ] {
        let name = unique(&format!("page-{page_size}-block-{block_size}"));
        let expected_checksum;
        {
            let connection = open(&name, &format!("block_size={block_size}"));
            connection
                .execute_batch(&format!("PRAGMA page_size={page_size};"))
                .expect("page size");
            fill(&connection, 400, 300);
            connection
                .execute("CREATE INDEX t_payload ON t(payload)", [])
                .expect("index");
            expected_checksum = checksum(&connection);
        }
        let connection = open(&name, "");
        let actual: i64 = connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .expect("page size");
        assert_eq!(actual, page_size);
        assert_eq!(count(&connection), 400);
        assert_eq!(checksum(&connection), expected_checksum);
        assert_eq!(integrity(&connection), "ok");
        assert_eq!(stats(&connection)["database"]["block_size"], block_size);
    }
}

#[test]
fn vacuum_shrinks_and_changes_the_page_size() {
    let name = unique("vacuum");
    let connection = open(&name, "block_size=4096");
    fill(&connection, 2000, 500);
    let before = stats(&connection)["database"]["size"]
        .as_u64()
        .expect("size");
    connection
        .execute("DELETE FROM t WHERE id > 100", [])
        .expect("delete");
    connection.execute_batch("VACUUM").expect("vacuum");
    let after = stats(&connection)["database"]["size"]
        .as_u64()
        .expect("size");
    assert!(
        after * 5 < before,
        "VACUUM must shrink: {before} -> {after}"
    );
    connection
        .execute_batch("PRAGMA page_size=8192; VACUUM;")
        .expect("vacuum to 8 KiB pages");
    drop(connection);
    let connection = open(&name, "");
    let page_size: i64 = connection
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .expect("page size");
    assert_eq!(page_size, 8192);
    assert_eq!(count(&connection), 100);
    assert_eq!(integrity(&connection), "ok");
}

#[test]
fn rollback_restores_even_after_the_page_cache_spilled() {
    let name = unique("rollback");
    let connection = open(&name, "block_size=4096");
    fill(&connection, 200, 100);
    let version = stats(&connection)["version"].as_u64().expect("version");
    let expected = checksum(&connection);
    connection
        .execute_batch("BEGIN; DELETE FROM t WHERE id < 50; ROLLBACK;")
        .expect("small rollback");
    // A tiny page cache forces SQLite to write pages into the file before COMMIT.
    connection
        .execute_batch("PRAGMA cache_size=5;")
        .expect("cache size");
    connection.execute_batch("BEGIN;").expect("begin");
    fill(&connection, 3000, 400);
    connection
        .execute("UPDATE t SET payload = x'00' WHERE id < 100", [])
        .expect("update");
    connection.execute_batch("ROLLBACK;").expect("rollback");
    assert_eq!(checksum(&connection), expected);
    assert_eq!(count(&connection), 200);
    assert_eq!(
        stats(&connection)["version"].as_u64(),
        Some(version),
        "a rollback commits nothing"
    );
    drop(connection);
    let connection = open(&name, "");
    assert_eq!(checksum(&connection), expected);
    assert_eq!(integrity(&connection), "ok");
}

#[test]
fn two_hosts_commit_from_one_version_exactly_one_wins() {
    let name = unique("conflict");
    let first = open(&name, "");
    first
        .execute_batch("CREATE TABLE counter(n); INSERT INTO counter VALUES (0);")
        .expect("setup");
    let second = open(&name, &other_host());
    for round in 1..=3 {
        first
            .execute_batch("BEGIN IMMEDIATE; UPDATE counter SET n = n + 1;")
            .expect("first writes");
        second
            .execute_batch("BEGIN IMMEDIATE; UPDATE counter SET n = n + 1;")
            .expect("second writes");
        first.execute_batch("COMMIT").expect("first commits");
        let error = second
            .execute_batch("COMMIT")
            .expect_err("second must lose");
        let (code, extended) = sqlite_code(&error).expect("an SQLite error");
        assert_eq!(code, ErrorCode::DatabaseBusy, "{error}");
        assert_eq!(extended, 517, "SQLITE_BUSY_SNAPSHOT: {error}");
        if !second.is_autocommit() {
            second
                .execute_batch("ROLLBACK")
                .expect("rollback after losing");
        }
        let n: i64 = second
            .query_row("SELECT n FROM counter", [], |row| row.get(0))
            .expect("read");
        assert_eq!(n, round, "no lost and no doubled update");
    }
    // The loser retries and wins.
    second
        .execute_batch("UPDATE counter SET n = n + 1")
        .expect("retry");
    let n: i64 = first
        .query_row("SELECT n FROM counter", [], |row| row.get(0))
        .expect("read");
    assert_eq!(n, 4);
    assert_eq!(integrity(&first), "ok");
}

#[test]
fn another_host_sees_new_commits_at_its_next_transaction() {
    let name = unique("freshness");
    let reader = open(&name, "");
    fill(&reader, 10, 10);
    let writer = open(&name, &other_host());
    assert_eq!(count(&reader), 10);
    fill(&writer, 5, 10);
    let before = requests(&reader);
    assert_eq!(count(&reader), 15);
    let after = requests(&reader);
    // The freshness check GETs the next commit record (there), then the one after it (not
    // there); no LIST.
    assert_eq!(delta(&before, &after, "list"), 0, "{before} -> {after}");
    // With nothing new, a read transaction costs one GET (of a record that is not there) and
    // nothing else.
    let before = requests(&reader);
    assert_eq!(count(&reader), 15);
    let after = requests(&reader);
    assert_eq!(delta(&before, &after, "list"), 0, "{before} -> {after}");
    assert_eq!(delta(&before, &after, "get"), 1, "{before} -> {after}");
}

#[test]
fn a_database_larger_than_the_cache() {
    let name = unique("large");
    let connection = open(&name, "block_size=4096&cache_size=256k");
    fill(&connection, 6000, 500);
    let expected = checksum(&connection);
    let database = &stats(&connection)["database"];
    assert!(database["size"].as_u64().expect("size") > 3_000_000);
    assert!(
        database["cache"]["bytes"].as_u64().expect("bytes") <= 256 * 1024,
        "{database}"
    );
    drop(connection);
    let connection = open(&name, "cache_size=256k");
    assert_eq!(checksum(&connection), expected);
    assert_eq!(integrity(&connection), "ok");
    let database = &stats(&connection)["database"];
    assert!(
        database["cache"]["bytes"].as_u64().expect("bytes") <= 256 * 1024,
        "{database}"
    );
    assert!(
        database["cache"]["misses"].as_u64().expect("misses") > 700,
        "{database}"
    );
}

#[test]
fn request_counts_of_a_one_row_commit_and_a_cold_point_lookup() {
    let name = unique("costs");
    let connection = open(&name, "");
    fill(&connection, 20_000, 100);
    let before = requests(&connection);
    connection
        .execute("INSERT INTO t(payload) VALUES (x'01')", [])
        .expect("insert");
    let after = requests(&connection);
    let commit_requests = delta(&before, &after, "put") + delta(&before, &after, "put_if_absent");
    eprintln!("one-row commit: {after} minus {before}");
    assert_eq!(
        delta(&before, &after, "put_if_absent"),
        1,
        "one commit record"
    );
    assert_eq!(
        commit_requests, 1,
        "the commit record alone, carrying the changed pages"
    );
    let uploaded = delta(&before, &after, "bytes_up");
    assert!(
        uploaded < 4096,
        "{uploaded} bytes up: less than one page for one row"
    );
    assert_eq!(delta(&before, &after, "list"), 0, "no LIST");
    assert_eq!(
        delta(&before, &after, "get"),
        1,
        "a warm writer reads only the freshness check's next record"
    );
    drop(connection);

    // A cold lookup from another host: open, then one point query.
    let cold = open(&name, &other_host());
    let opened = requests(&cold);
    let payload: Vec<u8> = cold
        .query_row("SELECT payload FROM t WHERE id = 12345", [], |row| {
            row.get(0)
        })
        .expect("lookup");
    assert_eq!(payload.len(), 100);
    let looked = requests(&cold);
    let gets = delta(&opened, &looked, "get");
    eprintln!(
        "cold open: {opened}; cold point lookup: {gets} GETs, {} LISTs",
        delta(&opened, &looked, "list")
    );
    // Opening: head, LIST, newest record, its checkpoint; then the first read transaction
    // (the schema): the freshness GET and block 0.
    assert!(
        opened["get"].as_u64().expect("gets") + opened["list"].as_u64().expect("lists") <= 6,
        "{opened}"
    );
    // B-tree depth of a 20k-row table is 2-3 pages; with 64 KiB blocks they share objects.
    assert!(gets <= 4, "cold lookup fetched {gets} blocks");
}

#[test]
fn within_staleness_a_one_row_commit_is_one_request() {
    let name = unique("stale-commit");
    let connection = open(&name, "staleness=60s");
    fill(&connection, 2_000, 100);
    for round in 0..5 {
        let before = requests(&connection);
        connection
            .execute("INSERT INTO t(payload) VALUES (x'02')", [])
            .expect("insert");
        let after = requests(&connection);
        let total: u64 = ["get", "put", "put_if_absent", "list", "delete"]
            .iter()
            .map(|kind| delta(&before, &after, kind))
            .sum();
        assert_eq!(total, 1, "round {round}: {before} -> {after}");
        assert_eq!(delta(&before, &after, "put_if_absent"), 1);
    }
    // Writes are never stale: a commit built on an old version fails with BUSY_SNAPSHOT.
    let other = open(&name, &other_host());
    other
        .execute("INSERT INTO t(payload) VALUES (x'03')", [])
        .expect("the other host commits");
    let error = connection
        .execute("INSERT INTO t(payload) VALUES (x'04')", [])
        .expect_err("built on an old version");
    assert_eq!(
        error.sqlite_error().map(|error| error.extended_code),
        Some(517),
        "{error}"
    );
    assert_eq!(count(&other), 2_006);
}

#[test]
fn works_when_the_host_program_runs_its_own_tokio_runtime() {
    let name = unique("host-runtime");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("host");
    let total: i64 = runtime.block_on(async move {
        let inside = {
            let connection = open(&name, "");
            fill(&connection, 100, 10);
            count(&connection)
        };
        let name_for_task = name.clone();
        let blocking = tokio::task::spawn_blocking(move || count(&open(&name_for_task, "")))
            .await
            .expect("task");
        let spawned = tokio::spawn(async move { count(&open(&name, "")) })
            .await
            .expect("task");
        inside + blocking + spawned
    });
    assert_eq!(total, 300);
}

#[test]
fn bad_uri_parameters_fail_the_open_with_a_message() {
    for (parameters, expected) in [
        ("colour=blue", "unknown URI parameter \"colour\""),
        ("block_size=1000", "block_size"),
        ("cache_size=lots", "cache_size"),
        ("staleness=soon", "staleness"),
        ("endpoint=localhost:1", "endpoint"),
    ] {
        let message = open_refused(&unique("bad"), parameters);
        assert!(message.contains(expected), "{parameters}: {message}");
    }
}

#[test]
fn a_missing_bucket_is_named() {
    let message = open_refused(&unique("nobucket"), "bucket=s3vfs-no-such-bucket");
    assert!(
        message.contains("s3vfs-no-such-bucket") && message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn bad_credentials_are_refused_with_a_message() {
    let script = format!(
        ".load {}\n.open '{}'\nSELECT 1;\n",
        library().display(),
        uri(&unique("creds"), "")
    );
    let output = run_cli(
        Command::new("sqlite3").env("AWS_SECRET_ACCESS_KEY", "wrong-secret"),
        &script,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("403") && stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
    assert!(stderr.contains("unable to open database"), "{stderr}");
}

#[test]
fn a_conflicting_block_size_is_refused_and_changes_nothing() {
    let name = unique("blocksize");
    fill(&open(&name, "block_size=4096"), 10, 10);
    let message = open_refused(&name, "block_size=8192");
    assert!(
        message.contains("block_size=8192") && message.contains("block_size=4096"),
        "{message}"
    );
    assert_eq!(count(&open(&name, "block_size=4096")), 10);
}

/// A plain S3 client on the test server, for tampering with objects behind s3vfs's back.
fn s3<T>(work: impl AsyncFnOnce(aws_sdk_s3::Client, String) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        let bucket = std::env::var("S3VFS_BUCKET").expect("S3VFS_BUCKET");
        work(aws_sdk_s3::Client::from_conf(config), bucket).await
    })
}

fn put(key: &str, body: &'static [u8]) {
    s3(async |client, bucket| {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("put");
    });
}

fn keys(prefix: &str) -> Vec<String> {
    s3(async |client, bucket| {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        page.contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_string))
            .collect()
    })
}

#[test]
fn a_corrupt_block_is_an_error_not_wrong_data() {
    let name = unique("corrupt");
    fill(&open(&name, "block_size=4096"), 200, 100);
    let blocks = keys(&format!("{name}/blocks/"));
    assert!(blocks.len() > 3, "{blocks:?}");
    // Block 0 holds the header SQLite reads when it opens; spoil the others.
    for key in blocks
        .iter()
        .filter(|key| !key.contains("/blocks/0000000000/"))
    {
        put(key, b"garbage");
    }
    let connection = open(&name, &other_host());
    let error = connection
        .query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
        .expect_err("must fail");
    assert_eq!(
        sqlite_code(&error).map(|code| code.1),
        Some(10 | (32 << 8)),
        "SQLITE_IOERR_DATA: {error}"
    );
    let message = last_error(&connection);
    assert!(
        message.contains("corrupt object") && message.contains("/blocks/"),
        "{message}"
    );
}

#[test]
fn an_unknown_format_version_is_refused() {
    let name = unique("format");
    fill(&open(&name, ""), 3, 3);
    put(
        &format!("{name}/log/{:020}", 2),
        br#"{"format":99,"version":2}"#,
    );
    let message = open_refused(&name, &other_host());
    assert!(message.contains("format 99"), "{message}");
}

#[test]
fn the_function_list_is_exactly_ours() {
    let connection = open(&unique("functions"), "");
    let mut statement = connection
        .prepare(
            "SELECT DISTINCT name FROM pragma_function_list WHERE name LIKE 's3vfs%' ORDER BY name",
        )
        .expect("prepare");
    let names: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .expect("query")
        .map(|row| row.expect("row"))
        .collect();
    assert_eq!(
        names,
        [
            "s3vfs_copy",
            "s3vfs_debug",
            "s3vfs_deserialize",
            "s3vfs_gc",
            "s3vfs_last_error",
            "s3vfs_restore",
            "s3vfs_serialize",
            "s3vfs_stats",
            "s3vfs_version",
            "s3vfs_versions"
        ]
    );
}
