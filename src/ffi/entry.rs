//! The extension's entry points.
//!
//! `.load ./libs3vfs` with no entry point makes SQLite look for `sqlite3_svfs_init` (the file
//! name without `lib` and without non-letters), so that name is exported beside
//! `sqlite3_s3vfs_init`. Loading registers the `s3vfs` VFS once per process, adds the SQL
//! functions to the loading connection and, through `sqlite3_auto_extension`, to every
//! connection opened afterwards, and returns SQLITE_OK_LOAD_PERMANENTLY so that the library
//! outlives the connection that loaded it.

use std::ffi::{c_char, c_int};
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlite3ext_sys::{sqlite3, sqlite3_api_routines};

use super::{api, load_error, API};
use crate::error::code;

/// The entry point SQLite finds for `libs3vfs`.
///
/// # Safety
/// Called by SQLite's extension loader with a connection, an error out-pointer and its API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_s3vfs_init(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_int {
    // SAFETY: forwarded unchanged from SQLite.
    unsafe { load(db, pz_err_msg, p_api) }
}

/// The name SQLite derives from the file name `libs3vfs.so`.
///
/// # Safety
/// As [`sqlite3_s3vfs_init`].
#[no_mangle]
pub unsafe extern "C" fn sqlite3_svfs_init(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_int {
    // SAFETY: forwarded unchanged from SQLite.
    unsafe { load(db, pz_err_msg, p_api) }
}

/// # Safety
/// As [`sqlite3_s3vfs_init`].
unsafe fn load(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_int {
    if p_api.is_null() {
        return code::ERROR;
    }
    API.store(p_api, std::sync::atomic::Ordering::Release);
    // SAFETY: sqlite-loadable keeps the same API table for its function helpers.
    unsafe { sqlite_loadable::ext::faux_sqlite_extension_init2(p_api) };
    let outcome = catch_unwind(|| -> Result<(), String> {
        super::vfs::register().map_err(|error| error.to_string())?;
        crate::sql::register(db)
            .map_err(|error| format!("s3vfs: cannot define SQL functions: {error:?}"))?;
        register_auto_extension()
    });
    match outcome {
        Ok(Ok(())) => code::OK_LOAD_PERMANENTLY,
        Ok(Err(message)) => load_error(pz_err_msg, &message),
        Err(_) => load_error(pz_err_msg, "s3vfs: internal error while loading"),
    }
}

/// Adds the SQL functions to every connection opened after loading.
fn register_auto_extension() -> Result<(), String> {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let auto_extension = api()
        .and_then(|api| api.auto_extension)
        .ok_or("no sqlite3_auto_extension")?;
    type EntryPoint =
        unsafe extern "C" fn(*mut sqlite3, *mut *mut c_char, *mut sqlite3_api_routines) -> c_int;
    let entry: EntryPoint = connection_opened;
    // SAFETY: "the xEntryPoint argument is declared void(*)(void) but is really
    // int(*)(sqlite3*,char**,const sqlite3_api_routines*)": SQLite calls it with that signature.
    let result = unsafe {
        auto_extension(Some(std::mem::transmute::<
            EntryPoint,
            unsafe extern "C" fn(),
        >(entry)))
    };
    if result == code::OK {
        Ok(())
    } else {
        Err(format!("sqlite3_auto_extension failed with code {result}"))
    }
}

/// Called by SQLite for each new connection.
unsafe extern "C" fn connection_opened(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    _p_api: *mut sqlite3_api_routines,
) -> c_int {
    match catch_unwind(|| crate::sql::register(db)) {
        Ok(Ok(())) => code::OK,
        Ok(Err(error)) => load_error(
            pz_err_msg,
            &format!("s3vfs: cannot define SQL functions: {error:?}"),
        ),
        Err(_) => load_error(
            pz_err_msg,
            "s3vfs: internal error while defining SQL functions",
        ),
    }
}
