//! The JSON objects that describe versions: commit records, checkpoints and the head hint.
//!
//! All three carry `format`; an object with a format this build does not know is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{BlockIndex, BlockSize, TxId, Version};
use crate::error::{Error, Result};

/// The on-S3 format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// `log/{version}`: created once with `If-None-Match: *`; its existence commits the version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub format: u32,
    pub version: u64,
    /// The transaction that wrote this version (its blocks are keyed by it).
    pub txid: String,
    /// Commit time, milliseconds since the Unix epoch, by the writer's clock.
    pub time_ms: u64,
    /// The database file's size in bytes at this version.
    pub size: u64,
    pub block_size: u64,
    /// The checkpoint this record's `changes` are relative to.
    pub base_version: u64,
    pub base_txid: String,
    /// Every block changed since the base checkpoint: block index -> txid that wrote it.
    pub changes: BTreeMap<u64, String>,
    /// How many blocks this commit itself wrote.
    pub blocks_written: u64,
    /// The collector's safety margin, fixed when the database is created and copied into
    /// every record: `s3vfs_gc` deletes no unreferenced object younger than this, and a
    /// writer never commits a transaction whose freshness check is older than half of it.
    /// Absent in records of earlier builds, which means [`DEFAULT_GC_MARGIN_MS`].
    #[serde(default = "default_gc_margin_ms")]
    pub gc_margin_ms: u64,
}

/// The collector's safety margin of a database created without `gc_margin=`: one hour.
pub const DEFAULT_GC_MARGIN_MS: u64 = 60 * 60 * 1000;
/// The smallest margin `gc_margin=` accepts.
pub const MIN_GC_MARGIN_MS: u64 = 1000;

fn default_gc_margin_ms() -> u64 {
    DEFAULT_GC_MARGIN_MS
}

/// `checkpoints/{version}-{txid}`: the whole block map at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub version: u64,
    pub size: u64,
    pub block_size: u64,
    /// `blocks[i]` is the txid that wrote block `i`.
    pub blocks: Vec<String>,
}

/// `head`: a hint of a recent checkpointed version, so that listing the log starts near its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub format: u32,
    pub version: u64,
}

fn check_format(key: &str, format: u32) -> Result<()> {
    if format == FORMAT_VERSION {
        Ok(())
    } else {
        Err(Error::Format(format!(
            "{key} has storage format {format}, but this s3vfs reads format {FORMAT_VERSION}; \
             use a newer s3vfs"
        )))
    }
}

fn corrupt(key: &str, why: impl Into<String>) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        why: why.into(),
    }
}

fn parse_txid(key: &str, text: &str) -> Result<TxId> {
    TxId::parse(text).ok_or_else(|| corrupt(key, format!("bad transaction id {text:?}")))
}

fn parse_block_size(key: &str, bytes: u64) -> Result<BlockSize> {
    BlockSize::new(bytes).ok_or_else(|| corrupt(key, format!("bad block size {bytes}")))
}

/// Decodes an object after checking its format, so that a newer format is reported as such
/// rather than as a malformed object.
fn decode<T: for<'de> Deserialize<'de>>(key: &str, body: &[u8]) -> Result<T> {
    #[derive(Deserialize)]
    struct Versioned {
        format: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(body).map_err(|error| corrupt(key, error.to_string()))?;
    check_format(key, versioned.format)?;
    serde_json::from_slice(body).map_err(|error| corrupt(key, error.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail: every map key is an integer or a string.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// A commit record after validation, with parsed units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRecord {
    pub version: Version,
    pub txid: TxId,
    pub time_ms: u64,
    pub size: u64,
    pub block_size: BlockSize,
    pub base_version: Version,
    pub base_txid: TxId,
    pub changes: BTreeMap<BlockIndex, TxId>,
    pub blocks_written: u64,
    pub gc_margin: Duration,
}

impl CommitRecord {
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    pub fn decode(key: &str, body: &[u8]) -> Result<ParsedRecord> {
        let raw: CommitRecord = decode(key, body)?;
        let mut changes = BTreeMap::new();
        for (index, txid) in &raw.changes {
            changes.insert(BlockIndex(*index), parse_txid(key, txid)?);
        }
        if raw.base_version > raw.version {
            return Err(corrupt(key, "base checkpoint is newer than the record"));
        }
        Ok(ParsedRecord {
            version: Version(raw.version),
            txid: parse_txid(key, &raw.txid)?,
            time_ms: raw.time_ms,
            size: raw.size,
            block_size: parse_block_size(key, raw.block_size)?,
            base_version: Version(raw.base_version),
            base_txid: parse_txid(key, &raw.base_txid)?,
            changes,
            blocks_written: raw.blocks_written,
            gc_margin: Duration::from_millis(raw.gc_margin_ms.max(MIN_GC_MARGIN_MS)),
        })
    }
}

/// A checkpoint after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCheckpoint {
    pub version: Version,
    pub size: u64,
    pub block_size: BlockSize,
    pub blocks: Vec<TxId>,
}

impl Checkpoint {
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    pub fn decode(key: &str, body: &[u8]) -> Result<ParsedCheckpoint> {
        let raw: Checkpoint = decode(key, body)?;
        let block_size = parse_block_size(key, raw.block_size)?;
        let blocks = raw
            .blocks
            .iter()
            .map(|txid| parse_txid(key, txid))
            .collect::<Result<Vec<_>>>()?;
        if blocks.len() as u64 != block_size.block_count(raw.size) {
            return Err(corrupt(key, "block list does not match the file size"));
        }
        Ok(ParsedCheckpoint {
            version: Version(raw.version),
            size: raw.size,
            block_size,
            blocks,
        })
    }
}

impl Head {
    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    pub fn decode(key: &str, body: &[u8]) -> Result<Version> {
        let raw: Head = decode(key, body)?;
        Ok(Version(raw.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CommitRecord {
        CommitRecord {
            format: FORMAT_VERSION,
            version: 3,
            txid: TxId(7).to_string(),
            time_ms: 1,
            size: 8192,
            block_size: 4096,
            base_version: 1,
            base_txid: TxId(9).to_string(),
            changes: BTreeMap::from([(1, TxId(7).to_string())]),
            blocks_written: 1,
            gc_margin_ms: 5000,
        }
    }

    #[test]
    fn records_round_trip() {
        let parsed = CommitRecord::decode("k", &record().encode()).expect("valid record");
        assert_eq!(parsed.version, Version(3));
        assert_eq!(parsed.changes.get(&BlockIndex(1)), Some(&TxId(7)));
        assert_eq!(parsed.gc_margin, Duration::from_secs(5));
    }

    #[test]
    fn records_of_earlier_builds_have_the_default_margin() {
        let mut value = serde_json::to_value(record()).expect("json");
        value
            .as_object_mut()
            .expect("object")
            .remove("gc_margin_ms");
        let body = serde_json::to_vec(&value).expect("json");
        let parsed = CommitRecord::decode("k", &body).expect("valid record");
        assert_eq!(
            parsed.gc_margin,
            Duration::from_millis(DEFAULT_GC_MARGIN_MS)
        );
    }

    #[test]
    fn unknown_format_is_refused_with_a_clear_message() {
        let mut future = record();
        future.format = 99;
        let error = CommitRecord::decode("k", &future.encode()).expect_err("must refuse");
        assert!(error.to_string().contains("format 99"), "{error}");
        // A future format may have other fields: the format is still what is reported.
        let error =
            CommitRecord::decode("k", br#"{"format":2,"other":1}"#).expect_err("must refuse");
        assert!(error.to_string().contains("format 2"), "{error}");
    }

    #[test]
    fn garbage_is_corrupt() {
        let error = CommitRecord::decode("k", b"not json").expect_err("must refuse");
        assert!(matches!(error, Error::Corrupt { .. }));
        let error = Checkpoint::decode("k", b"{\"format\":1}").expect_err("must refuse");
        assert!(matches!(error, Error::Corrupt { .. }));
    }

    #[test]
    fn checkpoint_block_count_must_match_size() {
        let checkpoint = Checkpoint {
            format: FORMAT_VERSION,
            version: 1,
            size: 4097,
            block_size: 4096,
            blocks: vec![TxId(1).to_string()],
        };
        assert!(Checkpoint::decode("k", &checkpoint.encode()).is_err());
    }
}
