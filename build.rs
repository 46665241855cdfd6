//! Build facts for `s3vfs_debug()`: the git commit (when built from a checkout), the build
//! date (SOURCE_DATE_EPOCH when set, for reproducible builds) and the target. Also takes the
//! README's Rust example out of README.md into `OUT_DIR/readme_example.rs`, which
//! tests/rusqlite_round_trip.rs compiles and runs as it is.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The crate's own calendar, so that the build date is written as s3vfs writes every time.
#[allow(dead_code)]
#[path = "src/time.rs"]
mod time;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs())
        });
    println!("cargo:rustc-env=S3VFS_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=S3VFS_BUILD_DATE={}",
        &time::format_time(seconds.saturating_mul(1000))[..10]
    );
    println!(
        "cargo:rustc-env=S3VFS_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=S3VFS_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    readme_example();
}

/// The README's ```rust block, written to `OUT_DIR/readme_example.rs` with its `main` made
/// public, so that the test can call it (empty if README has none, which fails the test's
/// build).
fn readme_example() {
    println!("cargo:rerun-if-changed=README.md");
    let readme = std::fs::read_to_string("README.md").unwrap_or_default();
    let example = readme
        .split("\n```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .unwrap_or_default();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let example = example.replacen("\nfn main()", "\npub fn main()", 1);
    let _ = std::fs::write(out.join("readme_example.rs"), format!("{example}\n"));
}
