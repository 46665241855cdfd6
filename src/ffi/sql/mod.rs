//! The SQL functions s3vfs adds to every connection, registered here: those that only report
//! (`s3vfs_version()`, `s3vfs_debug()`, `s3vfs_stats()`, `s3vfs_last_error()`), and those that
//! work on a database, whose bodies are safe code in [`crate::functions`]: their arguments
//! are decoded, their answers set and their errors reported here, one way for all.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::json;
use sqlite3ext_sys::{sqlite3, sqlite3_context, sqlite3_value};
use sqlite_loadable::api::{self, ValueType};
use sqlite_loadable::{define_scalar_function, Error as FunctionError, FunctionFlags};

use std::sync::Arc;

use crate::backend::metered::process_metrics;
use crate::error::{Error, Operation, Result};
use crate::functions::{self, Caller, Reply, Value};
use crate::storage::Snapshot;
use crate::vfs::Database;

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

/// Runs a SQL function body, turning a panic into an SQL error instead of an abort.
fn guarded(body: impl FnOnce() -> Result<(), FunctionError>) -> Result<(), FunctionError> {
    catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|_| Err(FunctionError::new_message("s3vfs: internal error")))
}

/// As [`guarded`], for a function that works on a database (all but `s3vfs_version()`,
/// `s3vfs_stats()` and `s3vfs_last_error()`, which only report): its call starts a new period
/// of `s3vfs_last_error()`.
fn guarded_work(body: impl FnOnce() -> Result<(), FunctionError>) -> Result<(), FunctionError> {
    crate::ffi::clear_last_error();
    guarded(body)
}

/// The connection that called a function, for its body (see [`Caller`]).
struct Connection(*mut sqlite3);

impl Caller for Connection {
    fn schema(&self, name: &str) -> Option<(Arc<Database>, Option<Arc<Snapshot>>)> {
        crate::ffi::database_of(self.0, name)
    }
    fn in_transaction(&self) -> bool {
        crate::ffi::in_transaction(self.0)
    }
    fn blob_limit(&self) -> u64 {
        crate::ffi::length_limit(self.0).unwrap_or(u64::MAX)
    }
}

/// The arguments of a call, borrowed from SQLite for the length of the call.
fn arguments(values: &[*mut sqlite3_value]) -> Vec<Value<'_>> {
    values
        .iter()
        .map(|value| match api::value_type(value) {
            ValueType::Integer => Value::Integer(api::value_int64(value)),
            ValueType::Float => Value::Float(api::value_double(value)),
            ValueType::Text => match api::value_text(value) {
                Ok(text) => Value::Text(text),
                Err(_) => Value::BadText,
            },
            // An empty BLOB's pointer is null: never make a slice of it.
            ValueType::Blob if api::value_bytes(value) == 0 => Value::Blob(&[]),
            ValueType::Blob => Value::Blob(api::value_blob(value)),
            ValueType::Null => Value::Null,
        })
        .collect()
}

/// Runs `body`, a function that works on a database, on the call's arguments (see
/// [`guarded_work`]) and sets its answer; an error goes to `sqlite3_log` and
/// `s3vfs_last_error()` and becomes the function's error with its extended code (517 for a
/// lost commit race; `SQLITE_ERROR` for bad input).
fn answer(
    context: *mut sqlite3_context,
    values: &[*mut sqlite3_value],
    body: fn(&dyn Caller, &[Value]) -> Result<Reply>,
) -> Result<(), FunctionError> {
    guarded_work(|| {
        let caller = Connection(api::context_db_handle(context));
        match body(&caller, &arguments(values)) {
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
                    Error::Config(_)
                    | Error::Format(_)
                    | Error::Invalid(_)
                    | Error::Unsupported(_) => crate::error::code::ERROR,
                    other => other.sqlite_code(Operation::Other),
                };
                let message = error.to_string();
                crate::ffi::report(code, &message, false);
                api::result_error(context, &message)?;
                api::result_error_code(context, code);
                Ok(())
            }
        }
    })
}

/// Defines `name` for each arity in `arities`, running `body` through [`answer`].
macro_rules! define_working {
    ($db:expr, $name:literal, $arities:expr, $body:path) => {{
        fn trampoline(
            context: *mut sqlite3_context,
            values: &[*mut sqlite3_value],
        ) -> Result<(), FunctionError> {
            answer(context, values, $body)
        }
        for arity in $arities {
            define_scalar_function($db, $name, arity, trampoline, FunctionFlags::UTF8)?;
        }
    }};
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
    define_working!(db, "s3vfs_versions", 0..=1, functions::history::versions);
    define_working!(db, "s3vfs_restore", 2..=2, functions::history::restore);
    define_working!(db, "s3vfs_gc", 0..=2, functions::history::collect);
    define_working!(db, "s3vfs_serialize", 1..=3, functions::transfer::serialize);
    define_working!(
        db,
        "s3vfs_deserialize",
        2..=3,
        functions::transfer::deserialize
    );
    define_working!(db, "s3vfs_copy", 2..=3, functions::transfer::copy);
    Ok(())
}
