//! What SQLite's io_methods ask of a file s3vfs keeps in the store: the [`File`] trait, which
//! both layouts implement (the versioned layout's [`DbFile`], the sqlite-s3vfs layout's
//! [`LegacyFile`] for a database and its journal), so that the FFI holds a [`Handle`] and never
//! names a layout.
//!
//! [`DbFile`]: super::file::DbFile
//! [`LegacyFile`]: super::legacy::file::LegacyFile

use std::sync::Arc;

use super::file::ReadOutcome;
use super::lock::{Busy, LockLevel};
use super::pragma::{self, PragmaAnswer};
use super::Database;
use crate::error::Result;
use crate::storage::Snapshot;
use crate::units::ByteOffset;

/// What a file tells SQLite of itself (`xDeviceCharacteristics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `SQLITE_IOCAP_SAFE_APPEND`: data is appended before the size grows, so SQLite may write
    /// a journal's header together with its records.
    pub safe_append: bool,
}

/// One open file, as SQLite's io_methods use it.
pub trait File: Send {
    /// The database the file belongs to.
    fn database(&self) -> &Arc<Database>;
    /// The past version this connection was opened at (`version=`, `as_of=`), if any.
    fn past_version(&self) -> Option<Arc<Snapshot>> {
        None
    }
    fn read(&mut self, offset: ByteOffset, buffer: &mut [u8]) -> Result<ReadOutcome>;
    fn write(&mut self, offset: ByteOffset, data: &[u8]) -> Result<()>;
    fn truncate(&mut self, size: u64) -> Result<()>;
    fn sync(&mut self) -> Result<()>;
    fn size(&self) -> u64;
    fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>>;
    fn unlock(&mut self, level: LockLevel) -> Result<()>;
    fn reserved(&self) -> bool;
    /// After SQLite's commit (`SQLITE_FCNTL_COMMIT_PHASETWO`): what the file still publishes.
    fn commit_phase_two(&mut self) -> Result<()> {
        Ok(())
    }
    /// Uploads whatever is still pending before the file goes away.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities;
    /// What s3vfs makes of `PRAGMA name = value` on this file (see [`pragma`]).
    fn pragma(&self, name: &str, value: Option<&str>) -> PragmaAnswer {
        pragma::answer(self.database().layout, name, value)
    }
}

/// A file SQLite opened through s3vfs.
pub type Handle = Box<dyn File>;
