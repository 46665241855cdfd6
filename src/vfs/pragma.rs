//! What s3vfs makes of a pragma SQLite hands a database file before running it
//! (`SQLITE_FCNTL_PRAGMA`). Almost every pragma is SQLite's alone. A setting s3vfs cannot honour
//! gets SQLite's own answer for a setting that is not possible, never an error, so that an
//! application's start-up script runs unchanged:
//! - a journal mode that cannot be used (WAL; MEMORY and OFF for `layout=sqlite-s3vfs`) is
//!   answered as SQLite answers `journal_mode=WAL` on a VFS without shared memory: with the
//!   journal mode in force, unchanged;
//! - `synchronous=OFF` on a `layout=sqlite-s3vfs` database is a no-op: the level in force stays,
//!   and `PRAGMA synchronous` reports it.
//!
//! In each case the reason goes to `sqlite3_log` and `s3vfs_last_error()`.

use crate::config::Layout;

/// What SQLite should do with a pragma.
#[derive(Debug, PartialEq, Eq)]
pub enum PragmaAnswer {
    /// Run it as usual.
    Sqlite,
    /// Answer with the journal mode in force, changing nothing.
    KeepJournalMode { why: String },
    /// Do nothing and return no row: the setting in force stays.
    Ignore { why: String },
}

/// SQLite's journal modes, in the order SQLite matches a pragma's value against them.
const JOURNAL_MODES: [&str; 6] = ["delete", "persist", "off", "truncate", "memory", "wal"];

/// The journal mode SQLite reads `value` as: the first mode that starts with it, ignoring
/// case (so `PRAGMA journal_mode=w` is WAL); `None` when it names none (SQLite then only
/// reports the mode in force).
pub fn journal_mode_named(value: &str) -> Option<&'static str> {
    let value = value.to_ascii_lowercase();
    JOURNAL_MODES
        .iter()
        .copied()
        .find(|mode| mode.starts_with(&value))
}

/// Whether SQLite reads `value` of `PRAGMA synchronous` as OFF: a word (`off`, `no`, `false`)
/// or a number whose level, as SQLite computes it (`(n + 1) & 7`, with 0 read as OFF), is OFF.
pub fn synchronous_is_off(value: &str) -> bool {
    let level: u8 = if value.starts_with(|c: char| c.is_ascii_digit()) {
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        // SQLite keeps the low byte of the number it parses.
        digits.bytes().fold(0u8, |level, digit| {
            level.wrapping_mul(10).wrapping_add(digit - b'0')
        })
    } else {
        match value.to_ascii_lowercase().as_str() {
            "off" | "no" | "false" => 0,
            "extra" => 3,
            "full" => 2,
            _ => 1,
        }
    };
    matches!(level.wrapping_add(1) & 7, 0 | 1)
}

/// What SQLite should do with `PRAGMA name = value` on a database of `layout`.
pub fn answer(layout: Layout, name: &str, value: Option<&str>) -> PragmaAnswer {
    let Some(value) = value else {
        return PragmaAnswer::Sqlite;
    };
    match name.to_ascii_lowercase().as_str() {
        "journal_mode" => match (journal_mode_named(value), layout) {
            (Some("wal"), _) => PragmaAnswer::KeepJournalMode {
                why:
                    "s3vfs: journal_mode=WAL is not available (a WAL needs memory shared by every \
                      connection, and hosts sharing a bucket share none): the journal mode in \
                      force stays; commits are atomic in every rollback journal mode"
                        .into(),
            },
            (Some(mode @ ("memory" | "off")), Layout::SqliteS3vfs) => {
                PragmaAnswer::KeepJournalMode {
                    why: format!(
                        "s3vfs: journal_mode={} is not available with layout=sqlite-s3vfs (blocks \
                         are overwritten in place, and without a journal in the bucket a crash \
                         during a commit would tear the database): the journal mode in force \
                         stays; DELETE, TRUNCATE and PERSIST work",
                        mode.to_ascii_uppercase()
                    ),
                }
            }
            _ => PragmaAnswer::Sqlite,
        },
        "synchronous" if layout == Layout::SqliteS3vfs && synchronous_is_off(value) => {
            PragmaAnswer::Ignore {
                why: "s3vfs: synchronous=OFF is not available with layout=sqlite-s3vfs (its crash \
                      safety needs the journal stored before the database is overwritten): the \
                      level in force stays"
                    .into(),
            }
        }
        _ => PragmaAnswer::Sqlite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_modes_are_matched_as_sqlite_matches_them() {
        assert_eq!(journal_mode_named("WAL"), Some("wal"));
        assert_eq!(journal_mode_named("w"), Some("wal"));
        assert_eq!(journal_mode_named("Mem"), Some("memory"));
        assert_eq!(journal_mode_named(""), Some("delete"));
        assert_eq!(journal_mode_named("o"), Some("off"));
        assert_eq!(journal_mode_named("wall"), None);
        assert_eq!(journal_mode_named("?"), None);
    }

    #[test]
    fn synchronous_levels_are_read_as_sqlite_reads_them() {
        for off in ["off", "OFF", "no", "false", "0", "00", "7", "8", "256"] {
            assert!(synchronous_is_off(off), "{off}");
        }
        for on in [
            "normal", "full", "extra", "on", "yes", "true", "1", "2", "3", "-1", "",
        ] {
            assert!(!synchronous_is_off(on), "{on}");
        }
    }

    #[test]
    fn wal_keeps_the_mode_in_force_on_both_layouts() {
        for layout in [Layout::Versioned, Layout::SqliteS3vfs] {
            for value in ["wal", "WAL", "w"] {
                assert!(matches!(
                    answer(layout, "journal_mode", Some(value)),
                    PragmaAnswer::KeepJournalMode { .. }
                ));
            }
            assert_eq!(answer(layout, "journal_mode", None), PragmaAnswer::Sqlite);
            assert_eq!(
                answer(layout, "journal_mode", Some("delete")),
                PragmaAnswer::Sqlite
            );
        }
    }

    #[test]
    fn each_layout_keeps_what_it_cannot_honour() {
        for mode in ["memory", "off"] {
            assert_eq!(
                answer(Layout::Versioned, "journal_mode", Some(mode)),
                PragmaAnswer::Sqlite
            );
            assert!(matches!(
                answer(Layout::SqliteS3vfs, "journal_mode", Some(mode)),
                PragmaAnswer::KeepJournalMode { .. }
            ));
        }
        assert_eq!(
            answer(Layout::Versioned, "synchronous", Some("off")),
            PragmaAnswer::Sqlite
        );
        assert!(matches!(
            answer(Layout::SqliteS3vfs, "synchronous", Some("0")),
            PragmaAnswer::Ignore { .. }
        ));
        assert_eq!(
            answer(Layout::SqliteS3vfs, "synchronous", Some("full")),
            PragmaAnswer::Sqlite
        );
        assert_eq!(
            answer(Layout::Versioned, "cache_size", Some("100")),
            PragmaAnswer::Sqlite
        );
    }
}
