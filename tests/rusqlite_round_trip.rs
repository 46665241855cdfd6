//! The README's rusqlite example as a test, against the local S3 test server: this process
//! writes a database through rusqlite, a new process (this binary run again with
//! `S3VFS_RUSQLITE_READ=URI`) reads it back and prints what it found as JSON. The README's
//! example itself (taken out of README.md by build.rs) is compiled in and run too.
//!
//! `harness = false`: `main` is the test; it panics (exit status 101) on any mismatch. Run it
//! with `cargo test --test rusqlite_round_trip` and the server's environment set
//! (`eval "$(scripts/s3-server.sh env)"`), as `make test-bindings` does.

use std::path::PathBuf;
use std::process::Command;

use rusqlite::{Connection, LoadExtensionGuard};
use serde_json::{json, Value};

const READ_VARIABLE: &str = "S3VFS_RUSQLITE_READ";

/// README.md's Rust example, as it is there.
mod readme_example {
    include!(concat!(env!("OUT_DIR"), "/readme_example.rs"));
}

fn library() -> PathBuf {
    match std::env::var("S3VFS_LIB") {
        Ok(path) => PathBuf::from(path),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/libs3vfs"),
    }
}

/// Loading once registers the s3vfs VFS for the whole process.
fn load_s3vfs() -> rusqlite::Result<()> {
    let loader = Connection::open_in_memory()?;
    // SAFETY: loading the project's own extension, built by this repository.
    unsafe {
        let _guard = LoadExtensionGuard::new(&loader)?;
        loader.load_extension(library(), None::<&str>)?;
    }
    Ok(())
}

/// What the database holds, and the version s3vfs says it has.
fn contents(db: &Connection) -> rusqlite::Result<Value> {
    let mut select = db.prepare("SELECT name FROM product ORDER BY id")?;
    let names = select
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let version: i64 = db.query_row(
        "SELECT json_extract(s3vfs_stats(), '$.version')",
        [],
        |row| row.get(0),
    )?;
    Ok(json!({ "names": names, "version": version }))
}

fn read(uri: &str) {
    load_s3vfs().expect("load the extension");
    let db = Connection::open(uri).expect("reopen the database");
    println!("{}", contents(&db).expect("read the database"));
}

fn write_then_read_in_a_new_process() {
    let bucket = std::env::var("S3VFS_BUCKET")
        .expect("S3VFS_BUCKET is not set: eval \"$(scripts/s3-server.sh env)\" first");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let name = format!("bindings/rusqlite-{}-{nanos}.db", std::process::id());
    let uri = format!("file:{name}?vfs=s3vfs&bucket={bucket}");

    load_s3vfs().expect("load the extension");
    let db = Connection::open(&uri).expect("open the database");
    db.execute_batch("CREATE TABLE IF NOT EXISTS product(id INTEGER PRIMARY KEY, name TEXT)")
        .expect("create");
    let written = ["tea", "coffee", "ünïcødé ✓"];
    for item in written {
        db.execute("INSERT INTO product(name) VALUES (?1)", [item])
            .expect("insert");
    }
    let here = contents(&db).expect("read the database");
    db.close().expect("close");
    assert_eq!(here["names"], json!(written));
    assert!(here["version"].as_i64() >= Some(4), "{here}");

    let current = std::env::current_exe().expect("this test binary");
    let output = Command::new(current)
        .env(READ_VARIABLE, &uri)
        .output()
        .expect("run the reader");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "reader: {}\n{stderr}",
        output.status
    );
    let there: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("reader printed no JSON ({error}); stderr:\n{stderr}"));
    assert_eq!(there, here, "a new process reads what this one wrote");
}

fn main() {
    if let Ok(uri) = std::env::var(READ_VARIABLE) {
        read(&uri);
        return;
    }
    write_then_read_in_a_new_process();
    // The README's example runs from the repository's root, against its bucket s3vfs-test.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("the repository's root");
    readme_example::main().expect("README's Rust example runs");
    println!("rusqlite: 2 passed, 0 failed");
}
