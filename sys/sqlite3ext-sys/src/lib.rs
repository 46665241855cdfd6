//! Rust declarations of SQLite's loadable-extension interface, `sqlite3ext.h` of SQLite 3.39.4:
//! the types, constants and the `sqlite3_api_routines` table through which an extension calls
//! the SQLite that loaded it.
//!
//! s3vfs uses this crate in place of the crates.io `sqlite3ext-sys` 0.0.1 (a `[patch]` in the
//! top-level Cargo.toml), which declares the same items but generates them at every build with
//! bindgen, which needs libclang, and compiles a whole SQLite amalgamation that a loadable
//! extension never links. Here the declarations were generated once, by bindgen 0.60.1 from
//! that same header (`bindgen sqlite3ext.h -o src/bindings.rs`), and are kept in
//! `src/bindings.rs`. Nothing here links against SQLite: an extension reaches SQLite only
//! through the API table handed to its entry point, so the `extern "C"` functions declared
//! below must not be called.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all)]

include!("bindings.rs");
