//! The SQL functions s3vfs adds to every connection: `s3vfs_version()`, `s3vfs_debug()`,
//! `s3vfs_stats()`, `s3vfs_last_error()`; (in [`transfer`]) `s3vfs_serialize()`,
//! `s3vfs_deserialize()` and `s3vfs_copy()`; and (in [`history`]) `s3vfs_versions()`,
//! `s3vfs_restore()` and `s3vfs_gc()`.

pub mod history;
mod transfer;

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::json;
use sqlite3ext_sys::{sqlite3, sqlite3_context, sqlite3_value};
use sqlite_loadable::api::{self, ValueType};
use sqlite_loadable::{define_scalar_function, Error as FunctionError, FunctionFlags};

use std::sync::Arc;

use crate::backend::metered::process_metrics;
use crate::config::Config;
use crate::error::{Error, Operation, Result};
use crate::vfs::{Database, Past};

/// The names of every SQL function s3vfs defines.
pub const FUNCTIONS: &[&str] = &[
    "s3vfs_version",
    "s3vfs_debug",
    "s3vfs_stats",
    "s3vfs_last_error",
    "s3vfs_serialize",
    "s3vfs_deserialize",
    "s3vfs_copy",
    "s3vfs_versions",
    "s3vfs_restore",
    "s3vfs_gc",
];

/// The s3vfs database `name` designates for connection `db` — a schema of the connection
/// (`main`, an ATTACHed name) or a URI `file:NAME?bucket=...` — and the past version it names,
/// if any: a URI's `version=` or `as_of=`, or the version a schema was opened at.
pub(crate) fn resolve(db: *mut sqlite3, name: &str) -> Result<(Arc<Database>, Option<Past>)> {
    if name.starts_with("file:") {
        let config = Config::from_uri(name, |variable| std::env::var(variable).ok())?;
        return Ok((Database::open(&config)?, config.pin.map(Past::Pin)));
    }
    let (database, past) = crate::ffi::database_of(db, name).ok_or_else(|| {
        Error::Invalid(format!(
            "'{name}' is not an s3vfs database of this connection: name a schema opened with \
             vfs=s3vfs ('main' or an ATTACHed name) or a URI such as 'file:shop.db?bucket=BUCKET'"
        ))
    })?;
    Ok((database, past.map(Past::Snapshot)))
}

/// As [`resolve`], for a database to change or collect: a past version is refused.
pub(crate) fn resolve_current(db: *mut sqlite3, name: &str) -> Result<Arc<Database>> {
    match resolve(db, name)? {
        (database, None) => Ok(database),
        (_, Some(_)) => Err(Error::Invalid(format!(
            "{name:?} names a past version (version= or as_of=), which is read-only: name the \
             database without them"
        ))),
    }
}

/// Runs a SQL function body, turning a panic into an SQL error instead of an abort.
pub(crate) fn guarded(
    body: impl FnOnce() -> Result<(), FunctionError>,
) -> Result<(), FunctionError> {
    catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|_| Err(FunctionError::new_message("s3vfs: internal error")))
}

/// As [`guarded`], for a function that works on a database (all but `s3vfs_version()`,
/// `s3vfs_stats()` and `s3vfs_last_error()`, which only report): its call starts a new period
/// of `s3vfs_last_error()`.
pub(crate) fn guarded_work(
    body: impl FnOnce() -> Result<(), FunctionError>,
) -> Result<(), FunctionError> {
    crate::ffi::clear_last_error();
    guarded(body)
}

/// What a function that works on a database answers.
pub(crate) enum Reply {
    Text(String),
    Integer(i64),
    Blob(Vec<u8>),
}

/// Runs the body of a function that works on a database (see [`guarded_work`]) and sets its
/// answer; an error goes to `sqlite3_log` and `s3vfs_last_error()` and becomes the function's
/// error with its extended code (517 for a lost commit race; `SQLITE_ERROR` for bad input).
pub(crate) fn answer(
    context: *mut sqlite3_context,
    body: impl FnOnce(*mut sqlite3) -> Result<Reply>,
) -> Result<(), FunctionError> {
    guarded_work(|| match body(api::context_db_handle(context)) {
        Ok(Reply::Text(text)) => api::result_text(context, text),
        Ok(Reply::Integer(number)) => {
            api::result_int64(context, number);
            Ok(())
        }
        Ok(Reply::Blob(blob)) => {
            api::result_blob(context, &blob);
            Ok(())
        }
        Err(error) => {
            let code = match &error {
                Error::Config(_) | Error::Format(_) | Error::Invalid(_) | Error::Unsupported(_) => {
                    crate::error::code::ERROR
                }
                other => other.sqlite_code(Operation::Other),
            };
            let message = error.to_string();
            crate::ffi::report(code, &message, false);
            api::result_error(context, &message)?;
            api::result_error_code(context, code);
            Ok(())
        }
    })
}

/// Argument `at` as text, `None` when it is absent or NULL; another type is refused, naming
/// the argument as `what`.
pub(crate) fn optional_text<'a>(
    values: &[*mut sqlite3_value],
    at: usize,
    what: &str,
) -> Result<Option<&'a str>> {
    let Some(value) = values.get(at) else {
        return Ok(None);
    };
    match api::value_type(value) {
        ValueType::Null => Ok(None),
        ValueType::Text => api::value_text(value)
            .map(Some)
            .map_err(|_| Error::Invalid(format!("{what} is not valid UTF-8"))),
        _ => Err(Error::Invalid(format!("{what} must be text"))),
    }
}

/// Argument `at` as text; absent, NULL or of another type, it is refused.
pub(crate) fn required_text<'a>(
    values: &[*mut sqlite3_value],
    at: usize,
    what: &str,
) -> Result<&'a str> {
    if values.len() <= at {
        return Err(Error::Invalid(format!("missing {what}")));
    }
    optional_text(values, at, what)?.ok_or_else(|| Error::Invalid(format!("{what} must be text")))
}

/// Refuses a function that commits on its own (`what`) inside a transaction of the calling
/// connection: its commit would be a version the transaction was not built on, so the
/// transaction's own COMMIT would then fail as if another writer had committed.
pub(crate) fn refuse_inside_transaction(db: *mut sqlite3, what: &str) -> Result<()> {
    if crate::ffi::in_transaction(db) {
        return Err(Error::Invalid(format!(
            "{what} commits on its own and cannot run inside a transaction: call it after \
             COMMIT or ROLLBACK"
        )));
    }
    Ok(())
}

fn version(
    context: *mut sqlite3_context,
    _values: &[*mut sqlite3_value],
) -> Result<(), FunctionError> {
    guarded(|| api::result_text(context, format!("s3vfs {}", env!("CARGO_PKG_VERSION"))))
}

/// `s3vfs_debug()`: what a bug report needs: the version, the git commit and date of the
/// build, its target and profile, and the SQLite that loaded s3vfs. Never a setting or a
/// credential.
fn debug(
    context: *mut sqlite3_context,
    _values: &[*mut sqlite3_value],
) -> Result<(), FunctionError> {
    guarded(|| {
        let text = format!(
            "s3vfs {}\ncommit: {}\nbuilt: {}\ntarget: {}\nprofile: {}\nSQLite: {}",
            env!("CARGO_PKG_VERSION"),
            env!("S3VFS_GIT_COMMIT"),
            env!("S3VFS_BUILD_DATE"),
            env!("S3VFS_TARGET"),
            env!("S3VFS_PROFILE"),
            crate::ffi::sqlite_version().unwrap_or_else(|| "unknown".into())
        );
        api::result_text(context, text)
    })
}

/// `s3vfs_stats([schema])`: JSON with the process's request counters and, when the schema
/// (default `main`) is an s3vfs database, its version, size, requests and cache counters.
fn stats(
    context: *mut sqlite3_context,
    values: &[*mut sqlite3_value],
) -> Result<(), FunctionError> {
    guarded(|| {
        let schema = match values.first() {
            Some(value) => api::value_text(value)
                .map_err(|_| FunctionError::new_message("schema must be text"))?,
            None => "main",
        };
        let db = api::context_db_handle(context);
        let database = crate::ffi::database_of(db, schema).map(|(database, _)| database.stats());
        let process = process_metrics().snapshot();
        let report = json!({
            "version": database.as_ref().map(|stats| stats.version),
            "database": database,
            "process": { "requests": process.requests(), "detail": process },
        });
        api::result_text(context, report.to_string())
    })
}

fn last_error(
    context: *mut sqlite3_context,
    _values: &[*mut sqlite3_value],
) -> Result<(), FunctionError> {
    guarded(|| {
        match crate::ffi::last_error() {
            Some(message) => api::result_text(context, message)?,
            None => api::result_null(context),
        }
        Ok(())
    })
}

/// Defines the SQL functions on connection `db`.
pub fn register(db: *mut sqlite3) -> Result<(), FunctionError> {
    define_scalar_function(
        db,
        "s3vfs_version",
        0,
        version,
        FunctionFlags::UTF8 | FunctionFlags::DETERMINISTIC,
    )?;
    define_scalar_function(db, "s3vfs_debug", 0, debug, FunctionFlags::UTF8)?;
    define_scalar_function(db, "s3vfs_stats", 0, stats, FunctionFlags::UTF8)?;
    define_scalar_function(db, "s3vfs_stats", 1, stats, FunctionFlags::UTF8)?;
    define_scalar_function(db, "s3vfs_last_error", 0, last_error, FunctionFlags::UTF8)?;
    for arity in 0..=1 {
        define_scalar_function(
            db,
            "s3vfs_versions",
            arity,
            history::versions,
            FunctionFlags::UTF8,
        )?;
    }
    define_scalar_function(
        db,
        "s3vfs_restore",
        2,
        history::restore,
        FunctionFlags::UTF8,
    )?;
    for arity in 0..=2 {
        define_scalar_function(db, "s3vfs_gc", arity, history::collect, FunctionFlags::UTF8)?;
    }
    transfer::register(db)
}
