//! How a database's objects are stored: raw, or compressed with zstd (`compression=`), fixed
//! when the database is created. A compressed database writes storage format 3: its blocks are
//! zstd frames, and its commit records, checkpoints and interior-page indexes keep a plain first
//! line naming the format and codec, followed by one zstd frame of what format 2 would store.

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, Result};

/// The zstd level of `compression=zstd` without one.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Objects hold their content as it is (storage formats 1 and 2).
    #[default]
    Raw,
    /// Objects are zstd frames, written at this level (storage format 3).
    Zstd(i32),
}

impl Codec {
    /// Parses `none`, `zstd` or `zstd:LEVEL` (1 to 19).
    pub fn parse(text: &str) -> Option<Codec> {
        match text.trim() {
            "none" => Some(Codec::Raw),
            "zstd" => Some(Codec::Zstd(DEFAULT_ZSTD_LEVEL)),
            other => {
                let level: i32 = other.strip_prefix("zstd:")?.parse().ok()?;
                (1..=19).contains(&level).then_some(Codec::Zstd(level))
            }
        }
    }

    /// The storage format a database with this codec writes.
    pub fn format(self) -> u32 {
        match self {
            Codec::Raw => 2,
            Codec::Zstd(_) => 3,
        }
    }

    /// The content of an object as stored.
    pub fn encode(self, content: &[u8]) -> Bytes {
        match self {
            Codec::Raw => Bytes::copy_from_slice(content),
            // Compressing from memory into memory fails only on allocation failure, which
            // aborts anyway; an empty result would be refused by every reader.
            Codec::Zstd(level) => {
                Bytes::from(zstd::bulk::compress(content, level).unwrap_or_default())
            }
        }
    }

    /// The content of object `key` as stored, at most `limit` bytes; a frame that does not
    /// decode is reported as corrupt (and fetched again by the callers that verify).
    pub fn decode(self, key: &str, stored: Bytes, limit: usize) -> Result<Bytes> {
        match self {
            Codec::Raw => Ok(stored),
            Codec::Zstd(_) => zstd::bulk::decompress(&stored, limit)
                .map(Bytes::from)
                .map_err(|error| Error::Corrupt {
                    key: key.to_string(),
                    why: format!("not a zstd frame of at most {limit} bytes ({error})"),
                }),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Raw => write!(f, "none"),
            Codec::Zstd(level) => write!(f, "zstd:{level}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        assert_eq!(Codec::parse("zstd"), Some(Codec::Zstd(3)));
        assert_eq!(Codec::parse("zstd:19"), Some(Codec::Zstd(19)));
        assert_eq!(Codec::parse("none"), Some(Codec::Raw));
        for bad in ["zstd:0", "zstd:20", "lz4", "zstd:x", ""] {
            assert_eq!(Codec::parse(bad), None, "{bad}");
        }
        for codec in [Codec::Raw, Codec::Zstd(7)] {
            assert_eq!(Codec::parse(&codec.to_string()), Some(codec));
        }
    }

    #[test]
    fn content_round_trips_and_damage_is_corrupt() {
        let content: Vec<u8> = (0..65536u32).map(|i| (i % 7) as u8).collect();
        let stored = Codec::Zstd(3).encode(&content);
        assert!(stored.len() < content.len() / 10);
        let back = Codec::Zstd(3)
            .decode("k", stored.clone(), content.len())
            .expect("decodes");
        assert_eq!(&back[..], &content[..]);
        assert!(
            Codec::Zstd(3).decode("k", stored.clone(), 100).is_err(),
            "over the limit"
        );
        let mut cut = stored.to_vec();
        cut.truncate(cut.len() / 2);
        let error = Codec::Zstd(3)
            .decode("k", Bytes::from(cut), content.len())
            .expect_err("cut");
        assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
        let raw = Codec::Raw
            .decode("k", Bytes::from_static(b"as is"), 1)
            .expect("raw");
        assert_eq!(&raw[..], b"as is");
    }
}
