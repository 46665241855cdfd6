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

use sqlite3ext_sys::{sqlite3, sqlite3_api_routines, sqlite3_vfs};

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
    crate::logging::init();
    crate::logging::set_warning_sink(|message| {
        super::report(code::WARNING, message, true);
    });
    // SAFETY: sqlite-loadable keeps the same API table for its function helpers.
    unsafe { sqlite_loadable::ext::faux_sqlite_extension_init2(p_api) };
    let outcome = catch_unwind(|| -> Result<(), String> {
        super::vfs::register().map_err(|error| error.to_string())?;
        super::sql::register(db)
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

/// Called by SQLite for each new connection: refuses an s3vfs connection whose database has
/// an empty path ("If any automatic extension fails ... the sqlite3_open() ... call that
/// provoked the xEntryPoint() will fail"), and defines the SQL functions.
unsafe extern "C" fn connection_opened(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    _p_api: *mut sqlite3_api_routines,
) -> c_int {
    if opens_an_empty_path(db) {
        let message = format!("s3vfs: {}", super::vfs::EMPTY_PATH);
        super::report(code::CANTOPEN, &message, true);
        return load_error(pz_err_msg, &message);
    }
    match catch_unwind(|| super::sql::register(db)) {
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

/// Whether connection `db` has its main database through s3vfs under an empty path
/// (`file:?vfs=s3vfs`), which SQLite makes a private temporary database without calling the
/// VFS: nothing of it would reach the bucket.
fn opens_an_empty_path(db: *mut sqlite3) -> bool {
    const SQLITE_FCNTL_VFS_POINTER: c_int = 27;
    let Some(api) = api() else { return false };
    let (Some(file_control), Some(db_filename)) = (api.file_control, api.db_filename) else {
        return false;
    };
    let mut vfs: *mut sqlite3_vfs = std::ptr::null_mut();
    // SAFETY: `db` is the connection SQLite is opening; SQLITE_FCNTL_VFS_POINTER is answered
    // by SQLite itself, writing the main database's `sqlite3_vfs*` through the pointer.
    let result = unsafe {
        file_control(
            db,
            c"main".as_ptr(),
            SQLITE_FCNTL_VFS_POINTER,
            (&mut vfs as *mut *mut sqlite3_vfs).cast(),
        )
    };
    if result != code::OK || !super::vfs::is_s3vfs(vfs) {
        return false;
    }
    // SAFETY: as above; "the sqlite3_db_filename(D,N) interface returns a pointer to the
    // filename associated with database N of connection D" or NULL, a NUL-terminated string
    // owned by the connection, empty for a temporary database, whose first byte is readable.
    unsafe {
        let name = db_filename(db, c"main".as_ptr());
        name.is_null() || *name == 0
    }
}
