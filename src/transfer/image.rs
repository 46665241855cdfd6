//! What a plain SQLite file must be to come in: a whole database in a rollback-journal
//! mode, its header consistent with its size, and no hot journal or WAL beside it.

use super::*;

pub(super) fn invalid(name: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{name} {why}"))
}

/// The number at `at` of a header already checked to be whole.
pub(super) fn read_u32(header: &[u8], at: usize) -> u32 {
    header_u32(header, at).unwrap_or_default()
}

/// Checks that `header` (the file's first bytes) and `size` describe a whole SQLite database
/// in a rollback-journal mode; `name` says what the input is, for messages.
pub fn check_image(header: &[u8], size: u64, name: &str) -> Result<Image> {
    if size < SQLITE_HEADER_LEN as u64 || header.len() < SQLITE_HEADER_LEN {
        return Err(invalid(
            name,
            format_args!("is not a SQLite database: {size} bytes is shorter than its header"),
        ));
    }
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(invalid(
            name,
            "is not a SQLite database (it does not start with \"SQLite format 3\")",
        ));
    }
    let page_size = header_page_size(header).unwrap_or_default();
    if !is_page_size(u64::from(page_size)) {
        return Err(invalid(
            name,
            format_args!(
                "is damaged: page size {page_size} is not a power of two from 512 to 65536"
            ),
        ));
    }
    let (write_version, read_version) = (header[18], header[19]);
    if write_version == 2 || read_version == 2 {
        return Err(invalid(
            name,
            "is in WAL mode (header bytes 18-19 are 2): run PRAGMA journal_mode=DELETE on it \
             with sqlite3 first",
        ));
    }
    if write_version != 1 || read_version != 1 {
        return Err(invalid(
            name,
            format_args!("has an unknown file format version ({write_version}, {read_version})"),
        ));
    }
    if !size.is_multiple_of(u64::from(page_size)) {
        return Err(invalid(
            name,
            format_args!(
                "is truncated or damaged: {size} bytes is not a whole number of {page_size}-byte pages"
            ),
        ));
    }
    // The page count at 28 is valid when the "version valid for" at 92 equals the change
    // counter at 24 (SQLite 3.7.0 and later).
    let pages = read_u32(header, PAGE_COUNT);
    if pages > 0 && read_u32(header, VERSION_VALID_FOR) == read_u32(header, CHANGE_COUNTER) {
        let expected = u64::from(pages) * u64::from(page_size);
        if size < expected {
            return Err(invalid(
                name,
                format_args!(
                    "is truncated: its header counts {pages} pages ({expected} bytes) but it has {size} bytes"
                ),
            ));
        }
    }
    Ok(Image {
        page_size: Some(page_size),
        size,
    })
}

/// Refuses a database file that has a hot rollback journal or a WAL file beside it: its
/// content on its own is not a committed state.
pub fn check_no_journal(path: &Path) -> Result<()> {
    let name = path.display();
    let beside = |suffix: &str| {
        let mut other = path.as_os_str().to_owned();
        other.push(suffix);
        std::path::PathBuf::from(other)
    };
    let wal = beside("-wal");
    if std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > 0) {
        return Err(Error::Invalid(format!(
            "{name} has a WAL file {}: open it with sqlite3 and run PRAGMA journal_mode=DELETE first",
            wal.display()
        )));
    }
    let journal = beside("-journal");
    let mut start = [0u8; 8];
    let hot = std::fs::File::open(&journal)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok()
        && start == JOURNAL_MAGIC;
    if hot {
        return Err(Error::Invalid(format!(
            "{name} has a hot journal {}: a write to it was interrupted; open it once with sqlite3 \
             (SQLite rolls the write back), then retry",
            journal.display()
        )));
    }
    Ok(())
}
