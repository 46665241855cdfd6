//! `s3vfs_serialize(source [, path [, 'replace']])`,
//! `s3vfs_deserialize(target, blob_or_path [, 'replace'])` and
//! `s3vfs_copy(source, target [, 'replace'])`: whole databases out of, into and within the
//! bucket, through [`crate::transfer`].
//!
//! `source` and `target` name an s3vfs database either as a schema of the calling connection
//! (`'main'`, an ATTACHed name) or as a URI such as `'file:shop.db?bucket=acme'`.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use sqlite3ext_sys::{sqlite3, sqlite3_context, sqlite3_value};
use sqlite_loadable::api::{self, ValueType};
use sqlite_loadable::{define_scalar_function, Error as FunctionError, FunctionFlags};

use super::{answer, required_text as text_argument, resolve, resolve_current, Reply};
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::storage::SQLITE_HEADER_LEN;
use crate::transfer::{self, Overwrite, Source};
use crate::vfs::Database;

fn overwrite_argument(values: &[*mut sqlite3_value], at: usize) -> Result<Overwrite> {
    if values.len() <= at {
        return Ok(Overwrite::Refuse);
    }
    match text_argument(values, at, "the third argument")? {
        option if option.eq_ignore_ascii_case("replace") => Ok(Overwrite::Replace),
        other => Err(Error::Invalid(format!(
            "unknown option {other:?}: the only option is 'replace'"
        ))),
    }
}

/// The `info` line of a finished transfer.
fn transferred(function: &str, from: &str, to: &str, bytes: u64, started: Instant) {
    let elapsed = started.elapsed();
    log::info!(
        "s3vfs: {function}: {from} -> {to}: {bytes} bytes in {} ms ({:.1} MB/s)",
        elapsed.as_millis(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-6)
    );
}

fn serialize(
    context: *mut sqlite3_context,
    values: &[*mut sqlite3_value],
) -> Result<(), FunctionError> {
    answer(context, |db| {
        let started = Instant::now();
        let (database, past) = resolve(db, text_argument(values, 0, "the source database")?)?;
        let source = Source::of(&database, past)?;
        if values.len() >= 2 {
            let path = text_argument(values, 1, "the output file path")?;
            let overwrite = overwrite_argument(values, 2)?;
            let written = transfer::serialize_to_file(&source, Path::new(path), overwrite)?;
            transferred(
                "s3vfs_serialize",
                &database.location.url(),
                path,
                written,
                started,
            );
            return Ok(Reply::Integer(written as i64));
        }
        let limit = crate::ffi::length_limit(db).unwrap_or(u64::MAX);
        let blob = source.stream(|size, next| {
            if size > limit {
                return Err(Error::Invalid(format!(
                    "{} is {size} bytes, more than a BLOB may hold here ({limit}); serialize \
                         it to a file instead: s3vfs_serialize(source, '/path/to/file.db')",
                    database.location.url(),
                )));
            }
            let mut blob = Vec::with_capacity(size as usize);
            transfer::write_blocks(next, &mut blob)?;
            Ok(blob)
        })?;
        transferred(
            "s3vfs_serialize",
            &database.location.url(),
            "a BLOB",
            blob.len() as u64,
            started,
        );
        Ok(Reply::Blob(blob))
    })
}

fn deserialize(
    context: *mut sqlite3_context,
    values: &[*mut sqlite3_value],
) -> Result<(), FunctionError> {
    answer(context, |db| {
        let started = Instant::now();
        let target = text_argument(values, 0, "the target database")?;
        let overwrite = overwrite_argument(values, 2)?;
        super::refuse_inside_transaction(db, "s3vfs_deserialize()")?;
        let input = values
            .get(1)
            .ok_or_else(|| Error::Invalid("missing the database to deserialize".into()))?;
        let size = match api::value_type(input) {
            ValueType::Blob => {
                // An empty BLOB's pointer is null: never make a slice of it.
                let bytes: &[u8] = if api::value_bytes(input) > 0 {
                    api::value_blob(input)
                } else {
                    &[]
                };
                let image = transfer::check_image(bytes, bytes.len() as u64, "the BLOB")?;
                let database = resolve_current(db, target)?;
                load_showing_progress(&database, &mut &bytes[..], image, overwrite, "the BLOB")?
            }
            ValueType::Text => {
                let path = Path::new(text_argument(values, 1, "the input file path")?);
                let name = path.display().to_string();
                let cannot =
                    |error: std::io::Error| Error::Invalid(format!("cannot read {name}: {error}"));
                let mut file = std::fs::File::open(path).map_err(cannot)?;
                let size = file.metadata().map_err(cannot)?.len();
                let mut header = Vec::with_capacity(SQLITE_HEADER_LEN);
                (&mut file)
                    .take(SQLITE_HEADER_LEN as u64)
                    .read_to_end(&mut header)
                    .map_err(cannot)?;
                let image = transfer::check_image(&header, size, &name)?;
                transfer::check_no_journal(path)?;
                let database = resolve_current(db, target)?;
                let mut input = std::io::BufReader::with_capacity(
                    1 << 20,
                    std::io::Cursor::new(header).chain(file),
                );
                load_showing_progress(&database, &mut input, image, overwrite, &name)?
            }
            _ => {
                return Err(Error::Invalid(
                    "the database to deserialize must be a BLOB or a file path".into(),
                ))
            }
        };
        transferred("s3vfs_deserialize", "its input", target, size, started);
        Ok(Reply::Integer(size as i64))
    })
}

fn copy(context: *mut sqlite3_context, values: &[*mut sqlite3_value]) -> Result<(), FunctionError> {
    answer(context, |db| {
        let started = Instant::now();
        super::refuse_inside_transaction(db, "s3vfs_copy()")?;
        let (source, past) = resolve(db, text_argument(values, 0, "the source database")?)?;
        let target = resolve_current(db, text_argument(values, 1, "the target database")?)?;
        let overwrite = overwrite_argument(values, 2)?;
        let copied = transfer::copy(&Source::of(&source, past)?, &target, overwrite)?;
        let (from, to) = (source.location.url(), target.location.url());
        transferred("s3vfs_copy", &from, &to, copied, started);
        Ok(Reply::Integer(copied as i64))
    })
}

/// Defines the transfer functions on connection `db`.
pub fn register(db: *mut sqlite3) -> Result<(), FunctionError> {
    for arity in 1..=3 {
        define_scalar_function(db, "s3vfs_serialize", arity, serialize, FunctionFlags::UTF8)?;
    }
    for arity in 2..=3 {
        define_scalar_function(
            db,
            "s3vfs_deserialize",
            arity,
            deserialize,
            FunctionFlags::UTF8,
        )?;
        define_scalar_function(db, "s3vfs_copy", arity, copy, FunctionFlags::UTF8)?;
    }
    Ok(())
}

/// [`transfer::load`] with its progress on stderr (see [`crate::progress`]).
fn load_showing_progress(
    database: &Database,
    input: &mut dyn Read,
    image: transfer::Image,
    overwrite: transfer::Overwrite,
    name: &str,
) -> Result<u64> {
    let label = format!("deserialize {} into {}", name, database.location.url());
    let mut progress = Progress::new(label, Unit::Bytes, Some(image.size))?;
    let loaded = transfer::load(
        database,
        &mut progress.reading(input),
        image,
        overwrite,
        name,
    )?;
    progress.finish();
    Ok(loaded)
}
