//! The only place with `unsafe`, and the only one that knows SQLite's C interface: the
//! extension's entry points, the VFS and io_methods trampolines, the SQL functions ([`sql`]),
//! and calls through the API table SQLite hands the extension.
//!
//! Every function C calls runs inside [`guard`], which catches panics (a panic must not cross
//! `extern "C"`) and turns an [`Error`] into SQLite's extended result code, sending the whole
//! message to `sqlite3_log`.

pub mod entry;
pub mod sql;
pub mod vfs;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use sqlite3ext_sys::{sqlite3, sqlite3_api_routines};

use crate::error::{code, Error, Operation, Result};
use crate::storage::Snapshot;
use crate::vfs::Database;

/// The API table of the SQLite library that loaded s3vfs; set by the entry point.
static API: AtomicPtr<sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());

fn api() -> Option<&'static sqlite3_api_routines> {
    let pointer = API.load(Ordering::Acquire);
    // SAFETY: the pointer came from SQLite's extension loader, which passes the address of
    // its static API table; that table lives as long as the process.
    unsafe { pointer.as_ref() }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The message of the last error (or notice) s3vfs reported on this thread since the last
/// open of an s3vfs database or call of an s3vfs SQL function that works on a database.
pub fn last_error() -> Option<String> {
    LAST_ERROR.with(|last| last.borrow().clone())
}

/// Starts a new [`last_error`] period: called when an s3vfs database is opened and when an
/// s3vfs SQL function that works on a database is called.
pub fn clear_last_error() {
    LAST_ERROR.with(|last| *last.borrow_mut() = None);
}

/// Sends `message` to `sqlite3_log`, keeps it for `s3vfs_last_error()`, and logs it as an
/// error (printed on stderr unless `S3VFS_LOG=off`) when a person must act on it.
pub fn report(result_code: c_int, message: &str, needs_attention: bool) {
    let message = &crate::error::redact_credentials(message);
    LAST_ERROR.with(|last| *last.borrow_mut() = Some(message.to_string()));
    if let (Some(api), Ok(text)) = (api(), CString::new(message.replace('\0', " "))) {
        if let Some(log) = api.log {
            // SAFETY: "%s" with one NUL-terminated string argument matches sqlite3_log's format.
            unsafe { log(result_code, c"%s".as_ptr(), text.as_ptr()) };
        }
    }
    if needs_attention {
        crate::logging::init();
        log::error!(target: "s3vfs", "{message}");
    }
}

/// Runs one callback from C: panics are caught, errors become extended result codes.
pub(crate) fn guard(operation: Operation, callback: impl FnOnce() -> Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(callback)) {
        Ok(Ok(result_code)) => result_code,
        Ok(Err(error)) => {
            let result_code = error.sqlite_code(operation);
            report(result_code, &error.to_string(), error.needs_attention());
            result_code
        }
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let result_code = match operation {
                Operation::Open => code::CANTOPEN,
                _ => code::INTERNAL,
            };
            report(
                result_code,
                &format!("s3vfs: internal error: {detail}"),
                true,
            );
            result_code
        }
    }
}

/// A string allocated with `sqlite3_mprintf`, for SQLite to free; null if that fails.
fn sqlite_string(text: &str) -> *mut c_char {
    let (Some(api), Ok(text)) = (api(), CString::new(text.replace('\0', " "))) else {
        return std::ptr::null_mut();
    };
    match api.mprintf {
        // SAFETY: "%s" with one NUL-terminated string argument matches the format.
        Some(mprintf) => unsafe { mprintf(c"%s".as_ptr(), text.as_ptr()) },
        None => std::ptr::null_mut(),
    }
}

/// An s3vfs database a connection has open, with the past version it reads if it was opened
/// at one (`version=`, `as_of=`).
pub(crate) type Opened = (Arc<Database>, Option<Arc<Snapshot>>);

/// The s3vfs database behind schema `schema` of connection `db`, if it is one.
pub(crate) fn database_of(db: *mut sqlite3, schema: &str) -> Option<Opened> {
    let api = api()?;
    let file_control = api.file_control?;
    let schema = CString::new(schema).ok()?;
    let mut found: Option<Opened> = None;
    // SAFETY: `db` is the connection SQLite passed to the calling SQL function; the opcode is
    // s3vfs's own, answered only by s3vfs's xFileControl, which writes an `Option<Opened>`
    // through the pointer.
    let result = unsafe {
        file_control(
            db,
            schema.as_ptr(),
            vfs::FCNTL_S3VFS_DATABASE,
            (&mut found as *mut Option<Opened>).cast(),
        )
    };
    (result == code::OK).then_some(found).flatten()
}

/// Whether connection `db` is inside a transaction it opened with BEGIN (it is not in
/// autocommit mode).
pub(crate) fn in_transaction(db: *mut sqlite3) -> bool {
    let Some(get_autocommit) = api().and_then(|api| api.get_autocommit) else {
        return false;
    };
    // SAFETY: `db` is the connection SQLite passed to the calling SQL function.
    unsafe { get_autocommit(db) == 0 }
}

/// The version of the SQLite library that loaded s3vfs (`sqlite3_libversion()`).
pub(crate) fn sqlite_version() -> Option<String> {
    let libversion = api()?.libversion?;
    // SAFETY: sqlite3_libversion takes no argument and returns a static NUL-terminated string.
    unsafe { c_str(libversion()) }.map(str::to_string)
}

/// The longest string or BLOB connection `db` accepts (`SQLITE_LIMIT_LENGTH`).
pub(crate) fn length_limit(db: *mut sqlite3) -> Option<u64> {
    const SQLITE_LIMIT_LENGTH: c_int = 0;
    let limit = api()?.limit?;
    // SAFETY: `db` is the connection SQLite passed to the calling SQL function; a new value of
    // -1 only reads the limit.
    let value = unsafe { limit(db, SQLITE_LIMIT_LENGTH, -1) };
    u64::try_from(value).ok()
}

/// Reads the NUL-terminated string at `text`, if it is not null and is UTF-8.
///
/// # Safety
/// `text` must be null or point to a NUL-terminated string that outlives `'a`.
unsafe fn c_str<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(text) }.to_str().ok()
}

/// Fails loading with `message` through `pzErrMsg`.
fn load_error(pz_err_msg: *mut *mut c_char, message: &str) -> c_int {
    if !pz_err_msg.is_null() {
        // SAFETY: SQLite passes a valid out-pointer for the error message.
        unsafe { *pz_err_msg = sqlite_string(message) };
    }
    code::ERROR
}

impl From<std::ffi::NulError> for Error {
    fn from(error: std::ffi::NulError) -> Self {
        Error::Config(format!("a string contains a NUL byte: {error}"))
    }
}
