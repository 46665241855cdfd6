//! Integration tests of a database's history through real SQLite connections (rusqlite)
//! against the local S3 server (`eval "$(scripts/s3-server.sh env)"`, as `make test` does):
//! opening past versions, listing and restoring them, and collecting what no retained version
//! needs, with the storage it frees measured.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rusqlite::{Connection, ErrorCode};

fn version(connection: &Connection) -> u64 {
    stats(connection)["version"].as_u64().expect("version")
}

/// The content of table t, as one string.
fn content(connection: &Connection) -> String {
    text(
        connection,
        "SELECT count(*) || ':' || coalesce(group_concat(id || '=' || value, ','), '') FROM (SELECT * FROM t ORDER BY id)",
    )
}

/// The database's objects and bytes, by listing its prefix with a plain S3 client.
fn storage(name: &str) -> (u64, u64) {
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
        let client = aws_sdk_s3::Client::from_conf(config);
        let bucket = std::env::var("S3VFS_BUCKET").expect("S3VFS_BUCKET");
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(format!("{name}/"))
            .into_paginator()
            .send();
        let (mut objects, mut bytes) = (0, 0);
        while let Some(page) = pages.next().await {
            for object in page.expect("list").contents() {
                objects += 1;
                bytes += object.size().unwrap_or_default() as u64;
            }
        }
        (objects, bytes)
    })
}

/// Commits `count` one-row transactions; returns (version, content) after each.
fn history(connection: &Connection, count: usize) -> Vec<(u64, String)> {
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, value TEXT)")
        .expect("create");
    (0..count)
        .map(|round| {
            connection
                .execute("INSERT INTO t(value) VALUES (?1)", [format!("row-{round}")])
                .expect("insert");
            (version(connection), content(connection))
        })
        .collect()
}

#[test]
fn past_versions_open_read_only_by_number_and_by_time() {
    let name = unique("time-travel");
    let writer = open(&name, "");
    let mut recorded = history(&writer, 3);
    std::thread::sleep(Duration::from_millis(1100));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    std::thread::sleep(Duration::from_millis(50));
    recorded.extend(history(&writer, 2));

    for (committed, expected) in &recorded {
        let past = open(&name, &format!("version={committed}"));
        assert_eq!(&content(&past), expected, "version {committed}");
        assert_eq!(integrity(&past), "ok");
        assert_eq!(version(&past), recorded.last().expect("some").0);
        // Writes fail with SQLITE_READONLY, and s3vfs says why.
        let error = past
            .execute("INSERT INTO t(value) VALUES ('no')", [])
            .expect_err("read-only");
        assert_eq!(
            sqlite_code(&error).map(|code| code.0),
            Some(ErrorCode::ReadOnly),
            "{error}"
        );
        let message = last_error(&past);
        assert!(
            message.contains(&format!("read-only at version {committed}")),
            "{message}"
        );
    }
    // as_of: Unix milliseconds, Unix seconds and ISO-8601 find the version current then.
    let third = &recorded[2];
    let iso = {
        let seconds = between / 1000;
        let output = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{seconds}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .expect("date");
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    for as_of in [between.to_string(), (between / 1000).to_string(), iso] {
        let past = open(&name, &format!("as_of={as_of}"));
        assert_eq!(&content(&past), &third.1, "as_of={as_of}");
    }
    // The version after the newest does not exist: the open fails and names the range.
    let error = try_open(&name, "version=99")
        .map(|_| ())
        .expect_err("no version 99");
    assert_eq!(
        sqlite_code(&error).map(|code| code.0),
        Some(ErrorCode::CannotOpen)
    );
    let message = last_error(&Connection::open_in_memory().expect("memory"));
    assert!(
        message.contains("version 99") && message.contains("versions 1 to"),
        "{message}"
    );
    // Past and present at once, in one process.
    let past = open(&name, &format!("version={}", recorded[1].0));
    writer
        .execute("INSERT INTO t(value) VALUES ('later')", [])
        .expect("insert");
    assert_eq!(content(&past), recorded[1].1);
}

#[test]
fn versions_are_listed_and_an_old_one_is_restored_as_a_new_commit() {
    let name = unique("restore");
    let writer = open(&name, "");
    let recorded = history(&writer, 4);
    let listed = json(&writer, "SELECT s3vfs_versions()");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len() as u64, recorded.last().expect("some").0);
    for pair in listed.windows(2) {
        assert!(pair[0]["time_ms"].as_u64() <= pair[1]["time_ms"].as_u64());
        assert_eq!(
            pair[0]["version"].as_u64().expect("n") + 1,
            pair[1]["version"].as_u64().expect("n")
        );
    }
    assert!(listed
        .iter()
        .all(|row| row["blocks_changed"].as_u64() >= Some(1)));
    // The same through json_each, as a table.
    let newest: i64 = writer
        .query_row(
            "SELECT max(value ->> 'version') FROM json_each(s3vfs_versions('main'))",
            [],
            |row| row.get(0),
        )
        .expect("json_each");
    assert_eq!(newest as u64, recorded.last().expect("some").0);

    // Another connection holds pages of the newest version in its cache.
    let other = open(&name, "");
    assert_eq!(content(&other), recorded[3].1);

    let (old_version, old_content) = &recorded[1];
    let restored: i64 = writer
        .query_row(
            &format!("SELECT s3vfs_restore('main', {old_version})"),
            [],
            |row| row.get(0),
        )
        .expect("restore");
    assert_eq!(restored as u64, recorded[3].0 + 1);
    assert_eq!(&content(&writer), old_content);
    assert_eq!(integrity(&writer), "ok");
    assert_eq!(&content(&other), old_content);
    // History is intact, and the restored database takes new commits.
    let before = open(&name, &format!("version={}", recorded[3].0));
    assert_eq!(content(&before), recorded[3].1);
    writer
        .execute("INSERT INTO t(value) VALUES ('after-restore')", [])
        .expect("insert");
    assert!(content(&other).ends_with("after-restore"));
    assert_eq!(integrity(&other), "ok");
    // By URI, from a connection without the database.
    let uri = format!(
        "file:{name}?bucket={}",
        std::env::var("S3VFS_BUCKET").expect("bucket")
    );
    let plain = Connection::open_in_memory().expect("memory");
    let count: i64 = plain
        .query_row(
            "SELECT json_array_length(s3vfs_versions(?1))",
            [&uri],
            |row| row.get(0),
        )
        .expect("versions by URI");
    assert_eq!(count as u64, recorded[3].0 + 2);
}

#[test]
fn the_collector_frees_what_a_window_of_100_versions_does_not_need() {
    let name = unique("collect");
    // A short safety margin, recorded in the database: every writer and collector uses it.
    let writer = open(&name, "gc_margin=2s&block_size=4096");
    let started = Instant::now();
    let recorded = history(&writer, 1000);
    let elapsed = started.elapsed();
    let newest = recorded.last().expect("some").0;
    let before = storage(&name);
    // Every object must be older than the margin (2 s) and LastModified's resolution (1 s).
    std::thread::sleep(Duration::from_millis(3500));
    let report = json(&writer, "SELECT s3vfs_gc('main', '100')");
    let after = storage(&name);
    eprintln!(
        "1,000 one-row commits in {elapsed:?}; before collecting: {} objects, {} bytes; after \
         (window of 100 versions): {} objects, {} bytes; report: {report}",
        before.0, before.1, after.0, after.1
    );
    assert_eq!(report["retained_versions"], 100, "{report}");
    assert_eq!(
        report["oldest_retained_version"].as_u64(),
        Some(newest - 99)
    );
    let removed = report["removed"]["total"]["objects"]
        .as_u64()
        .expect("count");
    // The collector's marker is the one object added.
    assert_eq!(before.0 - removed + 1, after.0, "{report}");
    let freed = report["removed"]["total"]["bytes"].as_u64().expect("bytes");
    let marker = after.1 - (before.1 - freed);
    assert!(
        marker < 200,
        "only the marker's few bytes were added: {report}"
    );
    // Every retained version is complete and exactly as committed; older ones are gone,
    // with an error that says so.
    for (committed, expected) in recorded
        .iter()
        .filter(|(version, _)| *version > newest - 100)
    {
        let past = open(&name, &format!("version={committed}"));
        assert_eq!(integrity(&past), "ok", "version {committed}");
        assert_eq!(&content(&past), expected, "version {committed}");
    }
    let error = try_open(&name, &format!("version={}", newest - 100))
        .map(|_| ())
        .expect_err("collected");
    assert_eq!(
        sqlite_code(&error).map(|code| code.0),
        Some(ErrorCode::CannotOpen)
    );
    // A second run finds nothing more.
    let again = json(&writer, "SELECT s3vfs_gc('main', 100)");
    assert_eq!(again["removed"]["total"]["objects"], 0, "{again}");
    // The margin is fixed at creation.
    let error = try_open(&name, "gc_margin=1h")
        .map(|_| ())
        .expect_err("conflict");
    assert_eq!(
        sqlite_code(&error).map(|code| code.0),
        Some(ErrorCode::CannotOpen)
    );
}
