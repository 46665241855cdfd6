//! s3vfs: a SQLite VFS that keeps a database in S3-compatible object storage.
//!
//! The database file is cut into fixed-size blocks, one immutable object per block, and a
//! transaction becomes visible through one conditional PUT of a small commit record. See
//! README.md for the object layout, the URI parameters and the guarantees.
//!
//! Layers, from C down to the network:
//! - [`ffi`]: the only `unsafe` code: entry points, VFS and io_methods trampolines, and the
//!   SQL functions' registration ([`ffi::sql`]), which decodes their arguments and answers.
//! - [`vfs`]: safe VFS logic: opening files of either layout behind one `File` trait, locking, a
//!   database file's reads, writes and commits, and ([`vfs::legacy`]) the object layout of the
//!   Python package sqlite-s3vfs (`layout=sqlite-s3vfs`).
//! - [`storage`]: how a database becomes objects: keys, commit records, snapshots.
//! - [`cache`]: the byte-budgeted LRU of blocks with single-flight misses.
//! - [`backend`]: the async object-store trait with S3, memory, retry, metrics and fault layers.
//! - [`runtime`]: the tokio runtime and the one blocking bridge.
//! - [`config`]: typed configuration from URI parameters and the environment.
//! - [`crypto`]: client-side encryption: keys, fingerprints, sealing an object with AES-256-GCM.
//! - [`functions`]: the bodies of the SQL functions that work on a database, as safe code.
//! - [`transfer`]: serializing a version out and deserializing a plain file in.
//! - [`time`]: one grammar for durations and one for points in time.
//! - [`units`]: block indexes, byte offsets, versions, transaction ids, the block size.
//! - [`error`]: the error type and its mapping to SQLite's extended result codes.
//! - [`logging`]: `S3VFS_LOG`'s levels, printed on stderr through the `log` crate.
#![deny(unsafe_op_in_unsafe_fn)]
// Only the FFI glue may hold `unsafe`; everything else is safe Rust.
#![deny(unsafe_code)]

pub mod backend;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod functions;
pub mod logging;
pub mod progress;
pub mod runtime;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod time;
pub mod transfer;
pub mod units;
pub mod vfs;
