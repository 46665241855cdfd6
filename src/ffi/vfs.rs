//! The `s3vfs` sqlite3_vfs and the io_methods of its database files: trampolines from C to
//! [`crate::vfs`], which opens files ([`crate::vfs::open`]) and answers for them through one
//! trait ([`crate::vfs::handle::File`]), whatever their layout. Journals and temp files that
//! the store does not keep are handed to the default VFS as anonymous local temp files,
//! deleted on close.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use sqlite3ext_sys::{sqlite3_file, sqlite3_int64, sqlite3_io_methods, sqlite3_vfs};

use super::{api, c_str, guard, report, sqlite_string};
use crate::error::{code, Error, Operation, Result};
use crate::units::ByteOffset;
use crate::vfs::file::ReadOutcome;
use crate::vfs::handle::Handle;
use crate::vfs::lock::LockLevel;
use crate::vfs::open;
use crate::vfs::pragma::PragmaAnswer;

/// The name the VFS is registered under.
pub const VFS_NAME: &std::ffi::CStr = c"s3vfs";

/// Why a database with an empty path is refused: SQLite would make it a private temporary
/// database, and nothing would reach the bucket.
pub const EMPTY_PATH: &str = "the database path is empty, so SQLite would open a private \
    temporary database and nothing would reach the bucket: name the database, as in \
    file:shop.db?vfs=s3vfs";

/// s3vfs's own file-control opcode: hands the file's [`Database`](crate::vfs::Database) to `s3vfs_stats()`.
pub const FCNTL_S3VFS_DATABASE: c_int = 0x5333_5646;

// Values from sqlite3.h.
const SQLITE_OPEN_READONLY: c_int = 0x0000_0001;
const SQLITE_OPEN_READWRITE: c_int = 0x0000_0002;
const SQLITE_OPEN_CREATE: c_int = 0x0000_0004;
const SQLITE_OPEN_DELETEONCLOSE: c_int = 0x0000_0008;
const SQLITE_OPEN_MAIN_DB: c_int = 0x0000_0100;
const SQLITE_OPEN_TEMP_JOURNAL: c_int = 0x0000_1000;
const SQLITE_OPEN_MAIN_JOURNAL: c_int = 0x0000_0800;
const SQLITE_OPEN_SUPER_JOURNAL: c_int = 0x0000_4000;
const SQLITE_OPEN_WAL: c_int = 0x0008_0000;
const SQLITE_FCNTL_VFSNAME: c_int = 12;
const SQLITE_FCNTL_PRAGMA: c_int = 14;
const SQLITE_FCNTL_SYNC: c_int = 21;
const SQLITE_FCNTL_COMMIT_PHASETWO: c_int = 22;
const SQLITE_IOCAP_POWERSAFE_OVERWRITE: c_int = 0x0000_1000;
const SQLITE_IOCAP_SAFE_APPEND: c_int = 0x0000_0200;

/// A database file as SQLite holds it; a delegated journal or temp file uses the same memory
/// as the default VFS's own file struct instead.
#[repr(C)]
struct S3File {
    base: sqlite3_file,
    file: *mut Handle,
}

/// The default VFS, which keeps journals and temp files and answers time, sleep, randomness
/// and dynamic loading.
static DEFAULT_VFS: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// The `s3vfs` VFS this library registered.
static S3VFS: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Whether `vfs` is the `s3vfs` VFS.
pub(crate) fn is_s3vfs(vfs: *mut sqlite3_vfs) -> bool {
    !vfs.is_null() && vfs == S3VFS.load(Ordering::Acquire)
}

fn default_vfs() -> *mut sqlite3_vfs {
    DEFAULT_VFS.load(Ordering::Acquire)
}

/// Registers the VFS (not as the default) unless this process already has it.
pub fn register() -> Result<()> {
    let api = api().ok_or_else(|| Error::Runtime("no SQLite API table".into()))?;
    let (Some(vfs_find), Some(vfs_register)) = (api.vfs_find, api.vfs_register) else {
        return Err(Error::Runtime(
            "the SQLite API table lacks vfs_find/vfs_register".into(),
        ));
    };
    // SAFETY: vfs_find takes a NUL-terminated name (or null for the default VFS).
    let registered = unsafe { vfs_find(VFS_NAME.as_ptr()) };
    if !registered.is_null() {
        S3VFS.store(registered, Ordering::Release);
        return Ok(());
    }
    // SAFETY: as above.
    let default = unsafe { vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err(Error::Runtime(
            "SQLite has no default VFS to keep temp files".into(),
        ));
    }
    DEFAULT_VFS.store(default, Ordering::Release);
    // SAFETY: `default` is a registered VFS, which SQLite never frees.
    let default_size = unsafe { (*default).szOsFile };
    let vfs = Box::leak(Box::new(sqlite3_vfs {
        iVersion: 2,
        szOsFile: default_size.max(std::mem::size_of::<S3File>() as c_int),
        mxPathname: 1024,
        pNext: std::ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: std::ptr::null_mut(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }));
    S3VFS.store(vfs, Ordering::Release);
    // SAFETY: the VFS struct is leaked, so it outlives every connection; 0 = not the default.
    let result = unsafe { vfs_register(vfs, 0) };
    if result != code::OK {
        return Err(Error::Runtime(format!(
            "sqlite3_vfs_register failed with code {result}"
        )));
    }
    Ok(())
}

static IO_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),                                  /* xClose */
    xRead: Some(x_read),                                    /* xRead */
    xWrite: Some(x_write),                                  /* xWrite */
    xTruncate: Some(x_truncate),                            /* xTruncate */
    xSync: Some(x_sync),                                    /* xSync */
    xFileSize: Some(x_file_size),                           /* xFileSize */
    xLock: Some(x_lock),                                    /* xLock */
    xUnlock: Some(x_unlock),                                /* xUnlock */
    xCheckReservedLock: Some(x_check_reserved_lock),        /* xCheckReservedLock */
    xFileControl: Some(x_file_control),                     /* xFileControl */
    xSectorSize: Some(x_sector_size),                       /* xSectorSize */
    xDeviceCharacteristics: Some(x_device_characteristics), /* xDeviceCharacteristics */
    xShmMap: None,                                          /* xShmMap: no WAL */
    xShmLock: None,                                         /* xShmLock */
    xShmBarrier: None,                                      /* xShmBarrier */
    xShmUnmap: None,                                        /* xShmUnmap */
    xFetch: None,                                           /* xFetch */
    xUnfetch: None,                                         /* xUnfetch */
};

/// The URI parameters of a database filename SQLite passed to xOpen, in order.
///
/// # Safety
/// `name` must be a database, journal or WAL filename the SQLite core passed into the VFS.
unsafe fn uri_parameters(name: *const c_char) -> Vec<(String, String)> {
    let mut parameters = Vec::new();
    let Some(api) = api() else { return parameters };
    let (Some(uri_key), Some(uri_parameter)) = (api.uri_key, api.uri_parameter) else {
        return parameters;
    };
    for index in 0.. {
        // SAFETY: "The sqlite3_uri_key(F,N) returns a pointer to the name of the N-th query
        // parameter for filename F, or a NULL pointer if N is less than zero or greater than
        // the number of query parameters minus 1."
        let key = unsafe { uri_key(name, index) };
        // SAFETY: key is null or a NUL-terminated string inside SQLite's filename buffer.
        let Some(key_text) = (unsafe { c_str(key) }) else {
            break;
        };
        // SAFETY: as above; the value lives in the same buffer.
        let value = unsafe { c_str(uri_parameter(name, key)) }.unwrap_or_default();
        parameters.push((key_text.to_string(), value.to_string()));
    }
    parameters
}

/// Opens a main database file. "If xOpen() fails, pMethods is set to NULL" so SQLite does
/// not call xClose on a file that was never opened.
unsafe extern "C" fn x_open(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a buffer of szOsFile bytes for the file.
    unsafe { (*file).pMethods = std::ptr::null() };
    if flags & SQLITE_OPEN_MAIN_DB == 0 {
        return guard(Operation::Open, || {
            if flags & SQLITE_OPEN_MAIN_JOURNAL != 0 {
                // SAFETY: SQLite passes the journal name it derived from the database's.
                if let Some(journal) = unsafe { stored_journal(name) } {
                    let handle = journal.open()?;
                    // SAFETY: as for a main database below.
                    unsafe { install(file, handle, flags, out_flags) };
                    return Ok(code::OK);
                }
            }
            if flags & SQLITE_OPEN_WAL != 0 {
                return Err(Error::Unsupported(
                    "WAL mode is not available with s3vfs (a WAL needs memory shared by every \
                     connection, and hosts sharing a bucket share none): use a rollback journal \
                     mode (PRAGMA journal_mode=DELETE)"
                        .into(),
                ));
            }
            // SAFETY: forwarding SQLite's own arguments to the default VFS, which fills the
            // same file buffer (szOsFile is at least its size).
            Ok(unsafe { open_local(file, flags, out_flags) })
        });
    }
    super::clear_last_error();
    guard(Operation::Open, || {
        if name.is_null() {
            // A temporary database (an empty path) spilling to disk.
            return Err(Error::Config(EMPTY_PATH.into()));
        }
        // SAFETY: SQLite passes the full pathname of a main database, with URI parameters.
        let path = unsafe { c_str(name) }
            .ok_or_else(|| Error::Config("the database name is not UTF-8".into()))?;
        // SAFETY: as above.
        let parameters = unsafe { uri_parameters(name) };
        let opened = open::open_database(path, &parameters, flags & SQLITE_OPEN_CREATE != 0)?;
        let mut opened_flags = flags;
        if let Some(why) = &opened.read_only {
            // A past version is read-only: with SQLITE_OPEN_READONLY in the out flags, SQLite
            // itself refuses every write with SQLITE_READONLY (and the VFS refuses too).
            // SQLite's message is generic, so the reason goes to sqlite3_log and
            // s3vfs_last_error() now.
            opened_flags = (opened_flags & !(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE))
                | SQLITE_OPEN_READONLY;
            report(code::NOTICE, why, false);
        }
        let handle = opened.file;
        // SAFETY: `file` is SQLite's buffer for this open.
        unsafe { install(file, handle, opened_flags, out_flags) };
        Ok(code::OK)
    })
}

/// Stores `handle` in SQLite's file buffer with s3vfs's io_methods.
///
/// # Safety
/// `file` must be SQLite's szOsFile-sized buffer of an xOpen; `out_flags` null or valid.
unsafe fn install(file: *mut sqlite3_file, handle: Handle, flags: c_int, out_flags: *mut c_int) {
    let s3_file = file.cast::<S3File>();
    // SAFETY: szOsFile >= size_of::<S3File>(), and SQLite's buffer is aligned for pointers.
    unsafe {
        (*s3_file).file = Box::into_raw(Box::new(handle));
        (*s3_file).base.pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags & !SQLITE_OPEN_DELETEONCLOSE;
        }
    }
}

/// The rollback journal kept in the store that `name` is, if it is one (see
/// [`open::StoredJournal`]).
///
/// # Safety
/// `name` must be null or a filename the SQLite core passed into the VFS: "If F is the name
/// of an sqlite database file, journal file, or WAL file passed by the SQLite core into the
/// VFS, then sqlite3_filename_database(F) returns the name of the corresponding database
/// file." (The core allocates super-journal names the same way, so that these calls on them
/// are sound too.)
unsafe fn stored_journal(name: *const c_char) -> Option<open::StoredJournal> {
    let filename_database = api()?.filename_database?;
    // SAFETY: the caller's contract, quoted above.
    let (journal, database) = unsafe { (c_str(name)?, c_str(filename_database(name))?) };
    // SAFETY: as above: the URI parameters are read through the same filename.
    let parameters = unsafe { uri_parameters(name) };
    open::StoredJournal::find(journal, database, &parameters)
}

/// Opens a journal or temp file as an anonymous local file of the default VFS.
///
/// # Safety
/// `file` must be SQLite's szOsFile-sized buffer; `out_flags` null or valid.
unsafe fn open_local(file: *mut sqlite3_file, flags: c_int, out_flags: *mut c_int) -> c_int {
    let default = default_vfs();
    // SAFETY: DEFAULT_VFS is set before the VFS is registered, so before any xOpen.
    let Some(open) = (unsafe { (*default).xOpen }) else {
        return code::CANTOPEN;
    };
    let type_mask = 0x000F_FF00;
    let mut local_flags = flags;
    if flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL) != 0 {
        // Journals are private to this connection: crash safety comes from the commit record.
        local_flags = (flags & !type_mask) | SQLITE_OPEN_TEMP_JOURNAL;
    }
    local_flags |= SQLITE_OPEN_DELETEONCLOSE | SQLITE_OPEN_CREATE;
    local_flags &= !SQLITE_OPEN_READONLY;
    // SAFETY: a null name asks the default VFS for a fresh temp file; the buffer is ours.
    unsafe {
        open(
            default,
            std::ptr::null(),
            file,
            local_flags | 0x0000_0002,
            out_flags,
        )
    }
}

/// Deletes a rollback journal the store keeps (see [`open::StoredJournal`]); nothing else
/// s3vfs keeps has a name: other journals are anonymous local files, deleted on close.
unsafe extern "C" fn x_delete(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    guard(Operation::Sync, || {
        // SAFETY: SQLite passes a filename of its own into the VFS.
        if let Some(journal) = unsafe { stored_journal(name) } {
            journal.delete()?;
        }
        Ok(code::OK)
    })
}

/// Whether a rollback journal the store keeps exists (see [`open::StoredJournal`]), so that
/// a hot journal is found; no other side file of a database ever exists.
unsafe extern "C" fn x_access(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    result: *mut c_int,
) -> c_int {
    guard(Operation::Other, || {
        let mut exists = false;
        // SAFETY: SQLite passes a filename of its own into the VFS.
        if let Some(journal) = unsafe { stored_journal(name) } {
            exists = journal.exists()?;
        }
        if !result.is_null() {
            // SAFETY: SQLite passes a valid out-pointer.
            unsafe { *result = c_int::from(exists) };
        }
        Ok(code::OK)
    })
}

/// The name is the key prefix in the bucket, used as given.
unsafe extern "C" fn x_full_pathname(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    out_len: c_int,
    out: *mut c_char,
) -> c_int {
    if name.is_null() || out.is_null() || out_len <= 0 {
        return code::CANTOPEN;
    }
    // SAFETY: name is NUL-terminated; out has room for out_len bytes.
    unsafe {
        let length = std::ffi::CStr::from_ptr(name).to_bytes().len();
        if length + 1 > out_len as usize {
            return code::CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(name, out, length + 1);
    }
    code::OK
}

macro_rules! delegate {
    ($name:ident, $slot:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $fallback:expr) => {
        unsafe extern "C" fn $name(_vfs: *mut sqlite3_vfs, $($arg: $ty),*) -> $ret {
            let default = default_vfs();
            // SAFETY: the default VFS is registered and never freed; its method takes the
            // same arguments SQLite gave us, with its own VFS pointer.
            match unsafe { (*default).$slot } {
                Some(method) => unsafe { method(default, $($arg),*) },
                None => $fallback,
            }
        }
    };
}

delegate!(x_dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, std::ptr::null_mut());
delegate!(x_dl_error, xDlError, (len: c_int, message: *mut c_char) -> (), ());
delegate!(x_dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char)
    -> Option<unsafe extern "C" fn(*mut sqlite3_vfs, *mut c_void, *const c_char)>, None);
delegate!(x_dl_close, xDlClose, (handle: *mut c_void) -> (), ());
delegate!(x_randomness, xRandomness, (len: c_int, out: *mut c_char) -> c_int, 0);
delegate!(x_sleep, xSleep, (microseconds: c_int) -> c_int, 0);
delegate!(x_current_time, xCurrentTime, (out: *mut f64) -> c_int, code::ERROR);
delegate!(x_get_last_error, xGetLastError, (len: c_int, out: *mut c_char) -> c_int, 0);
delegate!(x_current_time_int64, xCurrentTimeInt64, (out: *mut sqlite3_int64) -> c_int, code::ERROR);

/// The [`Handle`] of a file s3vfs keeps in the store.
///
/// # Safety
/// `file` must be a file opened by [`x_open`] with s3vfs's io_methods and not yet closed.
unsafe fn db_file<'a>(file: *mut sqlite3_file) -> &'a mut Handle {
    // SAFETY: x_open stored a live Box<Handle> pointer; SQLite serializes calls on one file.
    unsafe { &mut *(*file.cast::<S3File>()).file }
}

unsafe extern "C" fn x_close(file: *mut sqlite3_file) -> c_int {
    guard(Operation::Sync, || {
        // SAFETY: x_open stored this pointer with Box::into_raw; xClose is called once.
        let s3_file = unsafe { &mut *file.cast::<S3File>() };
        if s3_file.file.is_null() {
            return Ok(code::OK);
        }
        // SAFETY: as above; the pointer is nulled so it cannot be freed twice.
        let mut handle = unsafe { Box::from_raw(s3_file.file) };
        s3_file.file = std::ptr::null_mut();
        let closed = handle.close();
        drop(handle);
        crate::vfs::connection_closed();
        closed?;
        Ok(code::OK)
    })
}

/// "If xRead() returns SQLITE_IOERR_SHORT_READ it must also fill in the unread portions of
/// the buffer with zeros."
unsafe extern "C" fn x_read(
    file: *mut sqlite3_file,
    buffer: *mut c_void,
    amount: c_int,
    offset: sqlite3_int64,
) -> c_int {
    guard(Operation::Read, || {
        // SAFETY: SQLite passes a writable buffer of `amount` bytes.
        let buffer =
            unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), amount.max(0) as usize) };
        // SAFETY: a main database file opened by x_open.
        let outcome = unsafe { db_file(file) }.read(ByteOffset(offset.max(0) as u64), buffer)?;
        Ok(match outcome {
            ReadOutcome::Full => code::OK,
            ReadOutcome::Short => code::IOERR_SHORT_READ,
        })
    })
}

unsafe extern "C" fn x_write(
    file: *mut sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: sqlite3_int64,
) -> c_int {
    guard(Operation::Write, || {
        // SAFETY: SQLite passes a readable buffer of `amount` bytes.
        let data = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize) };
        // SAFETY: a main database file opened by x_open.
        unsafe { db_file(file) }.write(ByteOffset(offset.max(0) as u64), data)?;
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_truncate(file: *mut sqlite3_file, size: sqlite3_int64) -> c_int {
    guard(Operation::Truncate, || {
        // SAFETY: a main database file opened by x_open.
        unsafe { db_file(file) }.truncate(size.max(0) as u64)?;
        Ok(code::OK)
    })
}

/// The commit point: the transaction's blocks and its commit record are uploaded here.
unsafe extern "C" fn x_sync(file: *mut sqlite3_file, _flags: c_int) -> c_int {
    guard(Operation::Sync, || {
        // SAFETY: a main database file opened by x_open.
        unsafe { db_file(file) }.sync()?;
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_file_size(file: *mut sqlite3_file, size: *mut sqlite3_int64) -> c_int {
    guard(Operation::FileSize, || {
        // SAFETY: a main database file opened by x_open; `size` is a valid out-pointer.
        unsafe { *size = db_file(file).size() as sqlite3_int64 };
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_lock(file: *mut sqlite3_file, level: c_int) -> c_int {
    guard(Operation::Lock, || {
        let level = LockLevel::from_raw(level)
            .ok_or_else(|| Error::Runtime(format!("bad lock level {level}")))?;
        // SAFETY: a main database file opened by x_open.
        Ok(match unsafe { db_file(file) }.lock(level)? {
            Ok(()) => code::OK,
            Err(_) => code::BUSY,
        })
    })
}

unsafe extern "C" fn x_unlock(file: *mut sqlite3_file, level: c_int) -> c_int {
    guard(Operation::Unlock, || {
        let level = LockLevel::from_raw(level)
            .ok_or_else(|| Error::Runtime(format!("bad lock level {level}")))?;
        // SAFETY: a main database file opened by x_open.
        unsafe { db_file(file) }.unlock(level)?;
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut sqlite3_file, result: *mut c_int) -> c_int {
    guard(Operation::Lock, || {
        // SAFETY: a main database file opened by x_open; `result` is a valid out-pointer.
        unsafe { *result = c_int::from(db_file(file).reserved()) };
        Ok(code::OK)
    })
}

/// The pragma argument SQLite matches no journal mode against, so that it only reports the
/// mode in force.
const NO_JOURNAL_MODE: &[u8] = b"?\0";

unsafe extern "C" fn x_file_control(
    file: *mut sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    if op == SQLITE_FCNTL_SYNC {
        // "The SQLITE_FCNTL_SYNC opcode is generated internally by SQLite and sent to the VFS
        // immediately before the xSync method is invoked on a database file descriptor. Or, if
        // the xSync method is not invoked because the user has configured SQLite with PRAGMA
        // synchronous=OFF it is invoked in place of the xSync method." So this is the commit
        // point at every synchronous level; the xSync that follows at NORMAL and above finds
        // nothing left to commit.
        return guard(Operation::Sync, || {
            // SAFETY: a main database file opened by x_open.
            unsafe { db_file(file) }.sync()?;
            Ok(code::OK)
        });
    }
    guard(Operation::Other, || match op {
        SQLITE_FCNTL_PRAGMA => {
            // SAFETY: "the argument is a pointer to an array of pointers to strings (char**)
            // in which the second element of the array is the name of the pragma and the
            // third element is the argument to the pragma or NULL".
            let arguments = argument.cast::<*mut c_char>();
            let (name, value) = unsafe { (c_str(*arguments.add(1)), c_str(*arguments.add(2))) };
            let Some(name) = name else {
                return Ok(code::NOTFOUND);
            };
            // SAFETY: a main database file opened by x_open.
            match unsafe { db_file(file) }.pragma(name, value) {
                PragmaAnswer::Sqlite => Ok(code::NOTFOUND),
                PragmaAnswer::KeepJournalMode { why } => {
                    report(code::WARNING, &why, false);
                    // SQLite reads the pragma's value from this same string after the file
                    // control returns NOTFOUND, and answers a value that names no journal mode
                    // with the mode in force, as it does for WAL on a VFS without shared
                    // memory. (With locking_mode=EXCLUSIVE it would otherwise switch to WAL.)
                    // SAFETY: the third element is a NUL-terminated string of at least one
                    // byte (the value named a journal mode, so it is not empty) that SQLite
                    // allocated for this statement and keeps writable (a `char *`); two bytes
                    // stay within it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            NO_JOURNAL_MODE.as_ptr().cast::<c_char>(),
                            *arguments.add(2),
                            NO_JOURNAL_MODE.len(),
                        )
                    };
                    Ok(code::NOTFOUND)
                }
                PragmaAnswer::Ignore { why } => {
                    report(code::WARNING, &why, false);
                    // "If the file control returns SQLITE_OK, then the parser assumes that the
                    // VFS has handled the PRAGMA itself and the parser generates a no-op
                    // prepared statement if result string is NULL".
                    Ok(code::OK)
                }
            }
        }
        SQLITE_FCNTL_COMMIT_PHASETWO => {
            // SQLite shrinks the file only after the commit ("it is safe to truncate the
            // database file to its minimum required size"): publish that shrink too.
            // SAFETY: a main database file opened by x_open.
            if let Err(error) = unsafe { db_file(file) }.commit_phase_two() {
                // The commit stands; only the space stays until the next one.
                report(
                    error.sqlite_code(Operation::Sync),
                    &error.to_string(),
                    false,
                );
            }
            Ok(code::OK)
        }
        SQLITE_FCNTL_VFSNAME => {
            // SAFETY: the argument is a char** for a string from sqlite3_mprintf.
            unsafe { *argument.cast::<*mut c_char>() = sqlite_string("s3vfs") };
            Ok(code::OK)
        }
        FCNTL_S3VFS_DATABASE => {
            // SAFETY: only `ffi::database_of` sends this opcode, with this argument type.
            let slot = unsafe { &mut *argument.cast::<Option<super::Opened>>() };
            // SAFETY: a main database file opened by x_open.
            let handle = unsafe { db_file(file) };
            *slot = Some((handle.database().clone(), handle.past_version()));
            Ok(code::OK)
        }
        _ => Ok(code::NOTFOUND),
    })
}

unsafe extern "C" fn x_sector_size(_file: *mut sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(file: *mut sqlite3_file) -> c_int {
    // SAFETY: a file opened by x_open.
    let capabilities = unsafe { db_file(file) }.capabilities();
    let safe_append = if capabilities.safe_append {
        SQLITE_IOCAP_SAFE_APPEND
    } else {
        0
    };
    SQLITE_IOCAP_POWERSAFE_OVERWRITE | safe_append
}
