//! The SQL functions of a database's history: `s3vfs_versions()`, `s3vfs_restore()` and the
//! collector `s3vfs_gc()`. Each names its database by a schema of the calling connection
//! (`'main'`) or by a URI (`'file:shop.db?bucket=acme'`), so the collector can run from a
//! connection that has no s3vfs database open (the sqlite3 CLI, cron).

use std::sync::Arc;

use serde_json::json;

use super::{optional_text, refuse_inside_transaction, Caller, Reply, Value};
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::runtime;
use crate::storage::gc::{self, Keep};
use crate::storage::history;
use crate::time::format_time;
use crate::units::Version;
use crate::vfs::Database;

/// The database `target` names: a schema of connection `db`, or a URI; not a past version,
/// and one that keeps versions.
fn resolve(caller: &dyn Caller, target: &str) -> Result<Arc<Database>> {
    let database = super::resolve_current(caller, target)?;
    database.check_keeps_history()?;
    Ok(database)
}

/// `s3vfs_versions([target])`: a JSON array of the versions the store has, oldest first.
pub fn versions(caller: &dyn Caller, values: &[Value]) -> Result<Reply> {
    let target = optional_text(values, 0, "the database")?.unwrap_or("main");
    let database = resolve(caller, target)?;
    let (backend, location) = (database.backend(), database.location.clone());
    let listed = runtime::block_on(history::list_versions(backend, location))?;
    let rows: Vec<_> = listed
        .iter()
        .map(|info| {
            json!({
                "version": info.version,
                "time": format_time(info.time_ms),
                "time_ms": info.time_ms,
                "size": info.size,
                "blocks_changed": info.blocks_changed,
                "txid": info.txid,
            })
        })
        .collect();
    Ok(Reply::Text(serde_json::Value::Array(rows).to_string()))
}

/// `s3vfs_restore(target, version)`: commits the content of `version` as a new version and
/// returns the new version's number.
pub fn restore(caller: &dyn Caller, values: &[Value]) -> Result<Reply> {
    let target = optional_text(values, 0, "the database")?.unwrap_or("main");
    let version = values
        .get(1)
        .and_then(Value::whole_number)
        .filter(|version| *version > 0)
        .ok_or_else(|| {
            Error::Invalid(
                "s3vfs_restore(database, version): version must be a positive whole \
                         number, such as 41 (see s3vfs_versions())"
                    .into(),
            )
        })?;
    refuse_inside_transaction(caller, "s3vfs_restore()")?;
    let database = resolve(caller, target)?;
    let restored = database.restore(Version(version as u64))?;
    Ok(Reply::Integer(restored.version.0 as i64))
}

/// `s3vfs_gc([target[, keep]])`: runs the collector once; JSON of what it removed and kept.
pub fn collect(caller: &dyn Caller, values: &[Value]) -> Result<Reply> {
    let target = optional_text(values, 0, "the database")?.unwrap_or("main");
    // A number of versions may come as an INTEGER: SQLite gives its text.
    let keep = match values.get(1).filter(|value| **value != Value::Null) {
        None => Keep::DEFAULT,
        Some(value) => {
            let text = value.as_text().unwrap_or_default();
            Keep::parse(&text).ok_or_else(|| {
                Error::Config(format!(
                    "keep={text:?} is malformed: expected a number of versions (100) or \
                             a duration (7d, 24h, 30m, 90s)"
                ))
            })?
        }
    };
    let database = resolve(caller, target)?;
    if database.version().0 == 0 {
        return Err(Error::Invalid(format!(
            "no database at {}: it has no committed version, so there is nothing to \
                     collect; check the name and the bucket",
            database.location.url()
        )));
    }
    let (backend, location) = (database.backend(), database.location.clone());
    let progress = Arc::new(parking_lot::Mutex::new(Progress::new(
        format!("gc {}", location.url()),
        Unit::Objects,
        None,
    )?));
    let reporting = progress.clone();
    let report = runtime::block_on(gc::collect_reporting(
        backend,
        location,
        keep,
        move |done, total| {
            let mut progress = reporting.lock();
            progress.set_total(total);
            progress.advance_to(done);
        },
    ))?;
    progress.lock().finish();
    serde_json::to_string(&report)
        .map(Reply::Text)
        .map_err(|error| Error::Runtime(error.to_string()))
}
