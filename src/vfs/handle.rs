//! A main database or journal file SQLite opened through s3vfs and keeps in the store: a
//! database of the versioned layout ([`DbFile`]) or a file of the sqlite-s3vfs layout
//! ([`LegacyFile`]). Each call goes to the one it is.

use std::sync::Arc;

use super::file::{DbFile, ReadOutcome};
use super::lock::{Busy, LockLevel};
use super::Database;
use crate::error::Result;
use crate::legacy::file::LegacyFile;
use crate::storage::{ByteOffset, Snapshot};

pub enum Handle {
    Versioned(DbFile),
    Legacy(LegacyFile),
}

impl Handle {
    pub fn database(&self) -> &Arc<Database> {
        match self {
            Handle::Versioned(file) => file.database(),
            Handle::Legacy(file) => file.database(),
        }
    }

    /// The past version this connection was opened at (`version=`, `as_of=`), if any.
    pub fn past_version(&self) -> Option<Arc<Snapshot>> {
        match self {
            Handle::Versioned(file) if file.read_only().is_some() => Some(file.snapshot().clone()),
            _ => None,
        }
    }

    pub fn read(&mut self, offset: ByteOffset, buffer: &mut [u8]) -> Result<ReadOutcome> {
        match self {
            Handle::Versioned(file) => file.read(offset, buffer),
            Handle::Legacy(file) => file.read(offset, buffer),
        }
    }

    pub fn write(&mut self, offset: ByteOffset, data: &[u8]) -> Result<()> {
        match self {
            Handle::Versioned(file) => file.write(offset, data),
            Handle::Legacy(file) => file.write(offset, data),
        }
    }

    pub fn truncate(&mut self, size: u64) -> Result<()> {
        match self {
            Handle::Versioned(file) => file.truncate(size),
            Handle::Legacy(file) => file.truncate(size),
        }
    }

    pub fn sync(&mut self) -> Result<()> {
        match self {
            Handle::Versioned(file) => file.sync(),
            Handle::Legacy(file) => file.sync(),
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Handle::Versioned(file) => file.size(),
            Handle::Legacy(file) => file.size(),
        }
    }

    pub fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>> {
        match self {
            Handle::Versioned(file) => file.lock(level),
            Handle::Legacy(file) => file.lock(level),
        }
    }

    pub fn unlock(&mut self, level: LockLevel) -> Result<()> {
        match self {
            Handle::Versioned(file) => {
                file.unlock(level);
                Ok(())
            }
            Handle::Legacy(file) => file.unlock(level),
        }
    }

    pub fn reserved(&self) -> bool {
        match self {
            Handle::Versioned(file) => file.reserved(),
            Handle::Legacy(file) => file.reserved(),
        }
    }

    /// See [`DbFile::commit_shrink`]; a file of the sqlite-s3vfs layout shrinks at its sync.
    pub fn commit_shrink(&mut self) -> Result<()> {
        match self {
            Handle::Versioned(file) => file.commit_shrink(),
            Handle::Legacy(_) => Ok(()),
        }
    }

    /// Uploads whatever is still pending before the file goes away.
    pub fn close(&mut self) -> Result<()> {
        match self {
            Handle::Versioned(_) => Ok(()),
            Handle::Legacy(file) => file.close(),
        }
    }

    pub fn is_legacy(&self) -> bool {
        matches!(self, Handle::Legacy(_))
    }
}
