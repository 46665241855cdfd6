//! The one error type of s3vfs and its mapping to SQLite's extended result codes.

use std::fmt;

use crate::backend::{BackendError, BackendErrorKind};
use crate::units::Version;

/// SQLite result codes used by s3vfs (values from sqlite3.h).
pub mod code {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const INTERNAL: i32 = 2;
    pub const BUSY: i32 = 5;
    pub const READONLY: i32 = 8;
    pub const IOERR: i32 = 10;
    pub const CORRUPT: i32 = 11;
    pub const NOTFOUND: i32 = 12;
    pub const NOTICE: i32 = 27;
    pub const WARNING: i32 = 28;
    pub const CANTOPEN: i32 = 14;
    pub const IOERR_READ: i32 = IOERR | (1 << 8);
    pub const IOERR_SHORT_READ: i32 = IOERR | (2 << 8);
    pub const IOERR_WRITE: i32 = IOERR | (3 << 8);
    pub const IOERR_FSYNC: i32 = IOERR | (4 << 8);
    pub const IOERR_TRUNCATE: i32 = IOERR | (6 << 8);
    pub const IOERR_FSTAT: i32 = IOERR | (7 << 8);
    pub const IOERR_UNLOCK: i32 = IOERR | (8 << 8);
    pub const IOERR_RDLOCK: i32 = IOERR | (9 << 8);
    pub const IOERR_LOCK: i32 = IOERR | (15 << 8);
    pub const IOERR_AUTH: i32 = IOERR | (28 << 8);
    pub const IOERR_DATA: i32 = IOERR | (32 << 8);
    pub const BUSY_SNAPSHOT: i32 = BUSY | (2 << 8);
    pub const CANTOPEN_NOTEMPDIR: i32 = CANTOPEN | (1 << 8);
    pub const READONLY_DBMOVED: i32 = READONLY | (4 << 8);
    pub const OK_LOAD_PERMANENTLY: i32 = 256;
}

/// Everything that can go wrong inside s3vfs.
#[derive(Debug, Clone)]
pub enum Error {
    /// A URI parameter or environment variable is unknown or malformed.
    Config(String),
    /// The object store failed, after retries where retrying made sense.
    Backend(BackendError),
    /// Another writer committed the version this transaction wanted to create.
    Conflict {
        bucket: String,
        prefix: String,
        version: Version,
    },
    /// An object exists but its content is not what s3vfs wrote.
    Corrupt { key: String, why: String },
    /// An encrypted database opened without its key, a plain one opened with a key, or an
    /// object encrypted with another key than its database's.
    Encryption(String),
    /// The stored format cannot be used as asked (unknown format, conflicting block size).
    Format(String),
    /// A mode or feature s3vfs refuses on purpose.
    Unsupported(String),
    /// An argument of a SQL function that s3vfs refuses (not a SQLite file, truncated, ...).
    Invalid(String),
    /// The tokio bridge could not deliver a result.
    Runtime(String),
    /// A write through a connection that reads a past version.
    ReadOnly(String),
    /// An object of a version is gone: the version left the retention window and was
    /// collected. `version` is the version being read, when known.
    Collected {
        key: String,
        version: Option<Version>,
    },
    /// A version that is not (or no longer) in the store was asked for.
    NoSuchVersion(String),
    /// A transaction ran longer than the collector's safety margin allows; nothing of it is
    /// visible, and it can be retried.
    TooSlow(String),
    /// The store refused a commit for a reason it cannot show (a 412 with no record behind
    /// it); nothing was committed, and the transaction can be retried.
    NotCommitted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a failing callback was doing, which picks the I/O code for storage failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Open,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    Other,
}

impl Error {
    /// The SQLite extended result code for this error raised during `operation`.
    pub fn sqlite_code(&self, operation: Operation) -> i32 {
        match self {
            Error::Config(_) | Error::Format(_) => code::CANTOPEN,
            Error::Encryption(_) => match operation {
                Operation::Open => code::CANTOPEN,
                _ => code::IOERR_DATA,
            },
            Error::Unsupported(_) => match operation {
                Operation::Open => code::CANTOPEN,
                _ => code::ERROR,
            },
            Error::Invalid(_) => code::ERROR,
            Error::Conflict { .. } => code::BUSY_SNAPSHOT,
            Error::Corrupt { .. } => match operation {
                Operation::Open => code::CANTOPEN,
                _ => code::IOERR_DATA,
            },
            Error::Backend(backend) => match (operation, backend.kind) {
                (Operation::Open, _) => code::CANTOPEN,
                (_, BackendErrorKind::AccessDenied) => code::IOERR_AUTH,
                (Operation::Read, _) => code::IOERR_READ,
                (Operation::Write, _) => code::IOERR_WRITE,
                (Operation::Truncate, _) => code::IOERR_TRUNCATE,
                (Operation::Sync, _) => code::IOERR_FSYNC,
                (Operation::FileSize, _) => code::IOERR_FSTAT,
                (Operation::Lock, _) => code::IOERR_RDLOCK,
                (Operation::Unlock, _) => code::IOERR_UNLOCK,
                (Operation::Other, _) => code::IOERR,
            },
            Error::Runtime(_) => code::IOERR,
            Error::ReadOnly(_) => code::READONLY,
            Error::Collected { .. } => match operation {
                Operation::Open => code::CANTOPEN,
                Operation::Read => code::IOERR_READ,
                _ => code::IOERR,
            },
            Error::NoSuchVersion(_) => match operation {
                Operation::Open => code::CANTOPEN,
                _ => code::ERROR,
            },
            Error::TooSlow(_) => code::BUSY_SNAPSHOT,
            Error::NotCommitted(_) => code::BUSY,
        }
    }

    /// Whether a person should be told about this error (a conflict is routine, and a write
    /// refused on a past version is reported by SQLite itself).
    pub fn needs_attention(&self) -> bool {
        !matches!(self, Error::Conflict { .. } | Error::ReadOnly(_))
    }
}

/// `text` with the user information of every URL in it (`http://user:secret@host` →
/// `http://***@host`) hidden, so that no message s3vfs writes carries credentials, wherever
/// they came from.
pub fn redact_credentials(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        redacted.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                redacted.push_str("***");
                redacted.push_str(&authority[at..]);
            }
            None => redacted.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    redacted.push_str(rest);
    redacted
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = String::new();
        self.write_message(&mut message)?;
        f.write_str(&redact_credentials(&message))
    }
}

impl Error {
    /// Writes the message, before [`redact_credentials`].
    fn write_message(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Error::Config(message) => write!(f, "s3vfs: {message}"),
            Error::Backend(backend) => write!(f, "s3vfs: {backend}"),
            Error::Conflict {
                bucket,
                prefix,
                version,
            } => write!(
                f,
                "s3vfs: s3://{bucket}/{prefix}: another writer committed version {} first; \
                 this transaction was rolled back, retry it",
                version.0
            ),
            Error::Corrupt { key, why } => write!(f, "s3vfs: corrupt object {key}: {why}"),
            Error::Format(message) | Error::Encryption(message) => write!(f, "s3vfs: {message}"),
            Error::Unsupported(message) | Error::Invalid(message) => write!(f, "s3vfs: {message}"),
            Error::Runtime(message) => write!(f, "s3vfs: runtime: {message}"),
            Error::ReadOnly(message) => write!(f, "s3vfs: {message}"),
            Error::Collected { key, version } => {
                write!(f, "s3vfs: {key} is missing")?;
                if let Some(version) = version {
                    write!(f, " (read by version {})", version.0)?;
                }
                write!(
                    f,
                    ": the version left the retention window and was collected by s3vfs_gc \
                     (see s3vfs_versions() for the versions kept); open a newer version"
                )
            }
            Error::NoSuchVersion(message) => write!(f, "s3vfs: {message}"),
            Error::TooSlow(message) | Error::NotCommitted(message) => {
                write!(f, "s3vfs: {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<BackendError> for Error {
    fn from(error: BackendError) -> Self {
        match error.kind {
            // What the encryption layer found in a body that did arrive.
            BackendErrorKind::Damaged => Error::Corrupt {
                key: error.key,
                why: error.detail,
            },
            BackendErrorKind::Key => Error::Encryption(format!(
                "s3://{}/{} {}",
                error.bucket, error.key, error.detail
            )),
            _ => Error::Backend(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_never_shown() {
        assert_eq!(
            redact_credentials("endpoint http://user:secret@127.0.0.1:9000/b/k failed"),
            "endpoint http://***@127.0.0.1:9000/b/k failed"
        );
        assert_eq!(
            redact_credentials("\"https://AKIA:x@host\" and http://plain:1/x?q=a@b"),
            "\"https://***@host\" and http://plain:1/x?q=a@b"
        );
        assert_eq!(redact_credentials("no url here"), "no url here");
        let error = Error::Config("cannot reach http://u:p@host:1".into());
        assert_eq!(error.to_string(), "s3vfs: cannot reach http://***@host:1");
    }
}
