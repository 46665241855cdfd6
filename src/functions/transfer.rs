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

use super::{
    refuse_inside_transaction, required_text as text_argument, resolve, resolve_current, Caller,
    Reply, Value,
};
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::storage::SQLITE_HEADER_LEN;
use crate::transfer::{self, Overwrite, Source};
use crate::vfs::Database;

fn overwrite_argument(values: &[Value], at: usize) -> Result<Overwrite> {
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

/// `s3vfs_serialize(source [, path [, 'replace']])`: the file as a BLOB, or written to `path`
/// (its size).
pub fn serialize(caller: &dyn Caller, values: &[Value]) -> Result<Reply> {
    let started = Instant::now();
    let (database, past) = resolve(caller, text_argument(values, 0, "the source database")?)?;
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
    let limit = caller.blob_limit();
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
}

/// `s3vfs_deserialize(target, blob_or_path [, 'replace'])`: the file's size.
pub fn deserialize(caller: &dyn Caller, values: &[Value]) -> Result<Reply> {
    let started = Instant::now();
    let target = text_argument(values, 0, "the target database")?;
    let overwrite = overwrite_argument(values, 2)?;
    refuse_inside_transaction(caller, "s3vfs_deserialize()")?;
    let input = values
        .get(1)
        .ok_or_else(|| Error::Invalid("missing the database to deserialize".into()))?;
    let size = match *input {
        Value::Blob(bytes) => {
            let image = transfer::check_image(bytes, bytes.len() as u64, "the BLOB")?;
            let database = resolve_current(caller, target)?;
            load_showing_progress(&database, &mut &bytes[..], image, overwrite, "the BLOB")?
        }
        Value::Text(path) => {
            let path = Path::new(path);
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
            let database = resolve_current(caller, target)?;
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
}

/// `s3vfs_copy(source, target [, 'replace'])`: the bytes copied.
pub fn copy(caller: &dyn Caller, values: &[Value]) -> Result<Reply> {
    let started = Instant::now();
    refuse_inside_transaction(caller, "s3vfs_copy()")?;
    let (source, past) = resolve(caller, text_argument(values, 0, "the source database")?)?;
    let target = resolve_current(caller, text_argument(values, 1, "the target database")?)?;
    let overwrite = overwrite_argument(values, 2)?;
    let copied = transfer::copy(&Source::of(&source, past)?, &target, overwrite)?;
    let (from, to) = (source.location.url(), target.location.url());
    transferred("s3vfs_copy", &from, &to, copied, started);
    Ok(Reply::Integer(copied as i64))
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
