//! Opening, deleting and finding the files SQLite names through s3vfs, for either layout: a
//! main database, and the rollback journal only the sqlite-s3vfs layout keeps in the store.
//! The FFI hands over names and URI parameters and gets back a [`Handle`] or an answer.

use std::sync::Arc;

use super::file::DbFile;
use super::handle::Handle;
use super::legacy::file::{LegacyFile, Role};
use super::Database;
use crate::config::{Config, Layout};
use crate::error::{Error, Result};
use crate::runtime;

/// A main database file, opened.
pub struct Opened {
    pub file: Handle,
    /// Why the connection is read-only (it reads a past version), when it is: SQLite must be
    /// told the file is read-only, and a person why.
    pub read_only: Option<String>,
}

/// Opens the main database `path` with its URI `parameters` (and the environment); without
/// `create`, a database that does not exist is an error.
pub fn open_database(path: &str, parameters: &[(String, String)], create: bool) -> Result<Opened> {
    let config = Config::parse(path, parameters, |variable| std::env::var(variable).ok())?;
    let database = Database::open(&config)?;
    let (opened, exists) = match (config.layout, config.pin) {
        (Layout::Versioned, Some(pin)) => {
            let snapshot = database.pinned_snapshot(pin)?;
            let file = DbFile::pinned(database, snapshot, pin);
            let read_only = file.read_only().map(str::to_string);
            let file: Handle = Box::new(file);
            (Opened { file, read_only }, true)
        }
        (Layout::Versioned, None) => {
            let exists = database.version().0 > 0;
            let file = DbFile::new(database, config.staleness)
                .with_prefetch_size(config.prefetch_size)
                .with_interior_index(config.interior_index);
            let file: Handle = Box::new(file);
            (
                Opened {
                    file,
                    read_only: None,
                },
                exists,
            )
        }
        (Layout::SqliteS3vfs, _) => {
            let file = LegacyFile::open(database, Role::Database)?;
            let exists = file.exists();
            let file: Handle = Box::new(file);
            (
                Opened {
                    file,
                    read_only: None,
                },
                exists,
            )
        }
    };
    if !exists && !create {
        return Err(Error::Config(format!(
            "no database at {} (open it read-write with create, e.g. mode=rwc, to create it)",
            config.location.url()
        )));
    }
    Ok(opened)
}

/// A rollback journal kept in the store, beside its database: only the sqlite-s3vfs layout
/// keeps one (the versioned layout's journals are anonymous local files), as every object
/// under `{journal}/`, as the Python package does; it exists when any such object does (the
/// package's own test), so that each side finds the other's hot journal.
pub struct StoredJournal {
    database: Arc<Database>,
    name: String,
}

impl StoredJournal {
    /// The stored journal `journal` is, given the name and URI `parameters` of the database
    /// file it belongs to; `None` when it is not one.
    pub fn find(
        journal: &str,
        database: &str,
        parameters: &[(String, String)],
    ) -> Option<StoredJournal> {
        if journal != format!("{database}{}", super::legacy::JOURNAL_SUFFIX) {
            return None;
        }
        // SQLite asks at every read transaction whether the journal exists: only a URI that
        // names the layout gets as far as a configuration (and its keys) and a database.
        let legacy = parameters.iter().any(|(name, value)| {
            name == "layout" && Layout::parse(value) == Some(Layout::SqliteS3vfs)
        });
        if !legacy {
            return None;
        }
        let config = Config::parse(database, parameters, |variable| {
            std::env::var(variable).ok()
        })
        .ok()?;
        if config.layout != Layout::SqliteS3vfs {
            return None;
        }
        Some(StoredJournal {
            database: Database::open(&config).ok()?,
            name: journal.to_string(),
        })
    }

    pub fn open(self) -> Result<Handle> {
        Ok(Box::new(LegacyFile::open(self.database, Role::Journal)?))
    }

    pub fn delete(&self) -> Result<()> {
        let (backend, name) = (self.database.backend(), self.name.clone());
        runtime::block_on(async move { super::legacy::delete_file(&backend, &name).await })
    }

    pub fn exists(&self) -> Result<bool> {
        let (backend, name) = (self.database.backend(), self.name.clone());
        runtime::block_on(async move { super::legacy::file_exists(&backend, &name).await })
    }
}
