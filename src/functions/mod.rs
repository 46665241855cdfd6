//! The bodies of the SQL functions that work on a database: `s3vfs_serialize()`,
//! `s3vfs_deserialize()` and `s3vfs_copy()` ([`transfer`]); `s3vfs_versions()`,
//! `s3vfs_restore()` and `s3vfs_gc()` ([`history`]). Safe code: each gets its arguments as
//! [`Value`]s and the calling connection as a [`Caller`], and returns a [`Reply`] or an error;
//! the FFI registers them, decodes the arguments and reports errors, once for all.

pub mod history;
pub mod transfer;

use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::storage::Snapshot;
use crate::vfs::{Database, Past};

/// One argument of a SQL function call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    Float(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// Text that is not UTF-8.
    BadText,
}

impl Value<'_> {
    /// The integer the value holds: an INTEGER, a REAL without a fraction, or TEXT of digits.
    pub fn whole_number(&self) -> Option<i64> {
        match *self {
            Value::Integer(number) => Some(number),
            Value::Float(number) => {
                (number.fract() == 0.0 && number.abs() < 9.0e15).then_some(number as i64)
            }
            Value::Text(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as SQLite would give it as text (a number's digits), if it is not NULL or a
    /// BLOB.
    pub fn as_text(&self) -> Option<String> {
        match *self {
            Value::Integer(number) => Some(number.to_string()),
            Value::Float(number) => Some(format!("{number:?}")),
            Value::Text(text) => Some(text.to_string()),
            Value::Null | Value::Blob(_) | Value::BadText => None,
        }
    }
}

/// What a function answers.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Text(String),
    Integer(i64),
    Blob(Vec<u8>),
}

/// The connection that called a function, as far as the bodies need it.
pub trait Caller {
    /// The s3vfs database its schema `name` (`main`, an ATTACHed name) has open, and the past
    /// version it reads, if it reads one; `None` when it is no s3vfs database.
    fn schema(&self, name: &str) -> Option<(Arc<Database>, Option<Arc<Snapshot>>)>;
    /// Whether a transaction of the connection is open.
    fn in_transaction(&self) -> bool;
    /// The most bytes a BLOB may hold on the connection.
    fn blob_limit(&self) -> u64;
}

/// Argument `at` as text, `None` when it is absent or NULL; another type is refused, naming
/// the argument as `what`.
pub fn optional_text<'a>(values: &[Value<'a>], at: usize, what: &str) -> Result<Option<&'a str>> {
    match values.get(at) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Text(text)) => Ok(Some(text)),
        Some(Value::BadText) => Err(Error::Invalid(format!("{what} is not valid UTF-8"))),
        Some(_) => Err(Error::Invalid(format!("{what} must be text"))),
    }
}

/// Argument `at` as text; absent, NULL or of another type, it is refused.
pub fn required_text<'a>(values: &[Value<'a>], at: usize, what: &str) -> Result<&'a str> {
    if values.len() <= at {
        return Err(Error::Invalid(format!("missing {what}")));
    }
    optional_text(values, at, what)?.ok_or_else(|| Error::Invalid(format!("{what} must be text")))
}

/// The s3vfs database `name` designates for `caller` — a schema of the connection (`main`, an
/// ATTACHed name) or a URI `file:NAME?bucket=...` — and the past version it names, if any: a
/// URI's `version=` or `as_of=`, or the version a schema was opened at.
pub fn resolve(caller: &dyn Caller, name: &str) -> Result<(Arc<Database>, Option<Past>)> {
    if name.starts_with("file:") {
        let config = Config::from_uri(name, |variable| std::env::var(variable).ok())?;
        return Ok((Database::open(&config)?, config.pin.map(Past::Pin)));
    }
    let (database, past) = caller.schema(name).ok_or_else(|| {
        Error::Invalid(format!(
            "'{name}' is not an s3vfs database of this connection: name a schema opened with \
             vfs=s3vfs ('main' or an ATTACHed name) or a URI such as 'file:shop.db?bucket=BUCKET'"
        ))
    })?;
    Ok((database, past.map(Past::Snapshot)))
}

/// As [`resolve`], for a database to change or collect: a past version is refused.
pub fn resolve_current(caller: &dyn Caller, name: &str) -> Result<Arc<Database>> {
    match resolve(caller, name)? {
        (database, None) => Ok(database),
        (_, Some(_)) => Err(Error::Invalid(format!(
            "{name:?} names a past version (version= or as_of=), which is read-only: name the \
             database without them"
        ))),
    }
}

/// Refuses a function that commits on its own (`what`) inside a transaction of the calling
/// connection: its commit would be a version the transaction was not built on, so the
/// transaction's own COMMIT would then fail as if another writer had committed.
pub fn refuse_inside_transaction(caller: &dyn Caller, what: &str) -> Result<()> {
    if caller.in_transaction() {
        return Err(Error::Invalid(format!(
            "{what} commits on its own and cannot run inside a transaction: call it after \
             COMMIT or ROLLBACK"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_the_functions_document() {
        let values = [
            Value::Text("main"),
            Value::Null,
            Value::Integer(42),
            Value::Float(3.0),
            Value::Float(1.5),
        ];
        assert_eq!(optional_text(&values, 0, "x").expect("text"), Some("main"));
        assert_eq!(optional_text(&values, 1, "x").expect("null"), None);
        assert_eq!(optional_text(&values, 9, "x").expect("absent"), None);
        let error = optional_text(&values, 2, "the database").expect_err("a number");
        assert_eq!(error.to_string(), "s3vfs: the database must be text");
        let error = required_text(&values, 1, "the source").expect_err("null");
        assert_eq!(error.to_string(), "s3vfs: the source must be text");
        let error = required_text(&values, 9, "the source").expect_err("absent");
        assert_eq!(error.to_string(), "s3vfs: missing the source");
        assert_eq!(values[2].whole_number(), Some(42));
        assert_eq!(values[3].whole_number(), Some(3));
        assert_eq!(values[4].whole_number(), None);
        assert_eq!(Value::Text(" 7 ").whole_number(), Some(7));
        assert_eq!(values[2].as_text().as_deref(), Some("42"));
    }

    /// A connection with no s3vfs schema, inside a transaction.
    struct Busy;

    impl Caller for Busy {
        fn schema(&self, _name: &str) -> Option<(Arc<Database>, Option<Arc<Snapshot>>)> {
            None
        }
        fn in_transaction(&self) -> bool {
            true
        }
        fn blob_limit(&self) -> u64 {
            0
        }
    }

    #[test]
    fn names_and_transactions_are_checked_before_any_work() {
        let error = resolve(&Busy, "aux").err().expect("not an s3vfs schema");
        assert!(
            error.to_string().contains("'aux' is not an s3vfs database"),
            "{error}"
        );
        let error = refuse_inside_transaction(&Busy, "s3vfs_copy()").expect_err("in a transaction");
        assert!(
            error
                .to_string()
                .contains("cannot run inside a transaction"),
            "{error}"
        );
        // Each body refuses what it is given before it reaches a store.
        let error = transfer::copy(&Busy, &[Value::Text("main"), Value::Text("aux")])
            .expect_err("in a transaction");
        assert!(error.to_string().contains("s3vfs_copy()"), "{error}");
        let error = history::restore(&Busy, &[Value::Text("main"), Value::Float(1.5)])
            .expect_err("not a whole number");
        assert!(
            error.to_string().contains("positive whole number"),
            "{error}"
        );
        let error = transfer::serialize(&Busy, &[Value::BadText]).expect_err("not UTF-8");
        assert_eq!(
            error.to_string(),
            "s3vfs: the source database is not valid UTF-8"
        );
    }
}
