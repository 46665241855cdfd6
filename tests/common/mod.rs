//! What the Rust integration tests share: the built extension loaded into rusqlite's bundled
//! SQLite once per process, against the local S3 server that `scripts/s3-server.sh` starts
//! (its environment must be set, as `make test` does), and small readers of s3vfs's answers.
// Each test binary uses its own part of this.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde_json::Value;

pub fn library() -> PathBuf {
    match std::env::var("S3VFS_LIB") {
        Ok(path) => PathBuf::from(path),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/libs3vfs"),
    }
}

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests through `make test`, which starts the local S3 server")
}

/// Loads the extension once per process; the VFS stays registered after that.
pub fn load() {
    static LOAD: Once = Once::new();
    LOAD.call_once(|| {
        endpoint();
        let connection = Connection::open_in_memory().expect("memory db");
        // SAFETY: loading the project's own extension, built by this repository.
        unsafe {
            let _guard = rusqlite::LoadExtensionGuard::new(&connection).expect("enable loading");
            connection
                .load_extension(library(), None::<&str>)
                .expect("load libs3vfs");
        }
    });
}

/// A database name no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("it/{name}-{}-{nanos:x}.db", std::process::id())
}

pub fn uri(name: &str, parameters: &str) -> String {
    if parameters.is_empty() {
        format!("file:{name}?vfs=s3vfs")
    } else {
        format!("file:{name}?vfs=s3vfs&{parameters}")
    }
}

pub fn try_open(name: &str, parameters: &str) -> rusqlite::Result<Connection> {
    load();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(uri(name, parameters), flags)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(connection)
}

pub fn open(name: &str, parameters: &str) -> Connection {
    try_open(name, parameters).unwrap_or_else(|error| panic!("open {name}?{parameters}: {error}"))
}

/// The first column of the first row of `sql`, as text.
pub fn text(connection: &Connection, sql: &str) -> String {
    connection
        .query_row(sql, [], |row| row.get::<_, String>(0))
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

pub fn json(connection: &Connection, sql: &str) -> Value {
    serde_json::from_str(&text(connection, sql)).expect("JSON")
}

pub fn stats(connection: &Connection) -> Value {
    json(connection, "SELECT s3vfs_stats()")
}

pub fn integrity(connection: &Connection) -> String {
    text(connection, "PRAGMA integrity_check")
}

pub fn last_error(connection: &Connection) -> String {
    connection
        .query_row("SELECT s3vfs_last_error()", [], |row| {
            row.get::<_, Option<String>>(0)
        })
        .expect("last error")
        .unwrap_or_default()
}

/// The primary and extended result codes of a failure from SQLite.
pub fn sqlite_code(error: &rusqlite::Error) -> Option<(ErrorCode, i32)> {
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => Some((failure.code, failure.extended_code)),
        _ => None,
    }
}
