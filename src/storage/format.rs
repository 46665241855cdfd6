//! The objects that describe versions: commit records, checkpoints and the head hint, in
//! storage format 2, and the format-1 objects earlier builds wrote.
//!
//! Format 2 records and checkpoints are a JSON header line, a binary payload (the pages a
//! record carries) and a CRC-32 of everything before it, so a byte changed in transit or at
//! rest is detected. Format 1 objects are plain JSON and are still read. An object with a
//! format this build does not know is refused with a message saying so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::block::{checksum, BlockRef, Patch};
use super::codec::Codec;
use super::{BlockIndex, BlockSize, TxId, Version};
use crate::error::{Error, Result};

/// The storage format this build writes for a database without compression; it reads formats
/// 1 to [`NEWEST_FORMAT`].
pub const FORMAT_VERSION: u32 = 2;
/// The newest storage format this build reads: format 3 is format 2 with a codec (see
/// [`super::codec`]).
pub const NEWEST_FORMAT: u32 = 3;

/// The collector's safety margin of a database created without `gc_margin=`: one hour.
pub const DEFAULT_GC_MARGIN_MS: u64 = 60 * 60 * 1000;
/// The smallest margin `gc_margin=` accepts.
pub const MIN_GC_MARGIN_MS: u64 = 1000;

fn default_gc_margin_ms() -> u64 {
    DEFAULT_GC_MARGIN_MS
}

/// One entry of a block map: a bare txid (format 1), or where the content comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum RawEntry {
    Txid(String),
    Ref {
        /// The transaction that last changed the block.
        t: String,
        /// The transaction whose object the content starts from, when not `t`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        o: Option<String>,
        /// The version whose record carries the block's pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p: Option<u64>,
        /// CRC-32 of the content.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        s: Option<u32>,
    },
}

/// Where the payload holds one block's pages: the block, the bytes of its object kept, its
/// length at this version, and `(offset within the block, length)` of each range, stored one
/// after another.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RawPatch {
    b: u64,
    k: u64,
    n: u64,
    r: Vec<(u64, u64)>,
}

/// `log/{version}`: created once with `If-None-Match: *`; its existence commits the version.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RawRecord {
    format: u32,
    version: u64,
    /// The transaction that wrote this version (its blocks are keyed by it).
    txid: String,
    /// Commit time, milliseconds since the Unix epoch, by the writer's clock.
    time_ms: u64,
    /// The database file's size in bytes at this version.
    size: u64,
    block_size: u64,
    /// The checkpoint this record's `changes` are relative to.
    base_version: u64,
    base_txid: String,
    /// Every block changed since the base checkpoint.
    changes: BTreeMap<u64, RawEntry>,
    /// How many blocks this commit itself changed.
    blocks_written: u64,
    /// The collector's safety margin, fixed when the database is created and copied into
    /// every record: `s3vfs_gc` deletes no unreferenced object younger than this, and a
    /// writer never commits a transaction whose freshness check is older than half of it.
    /// Absent in records of early builds, which means [`DEFAULT_GC_MARGIN_MS`].
    #[serde(default = "default_gc_margin_ms")]
    gc_margin_ms: u64,
    /// The pages this record carries (format 2), in payload order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pages: Vec<RawPatch>,
}

/// `checkpoints/{version}-{txid}`: the whole block map at one version.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RawCheckpoint {
    format: u32,
    version: u64,
    size: u64,
    block_size: u64,
    blocks: Vec<RawEntry>,
    /// The length of the interior-page index beside it (`storage::interior`); 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    interior: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// `head`: a hint of a recent checkpointed version, so that listing the log starts near its end.
/// Plain JSON, so that a build that reads only format 1 says the database needs a newer s3vfs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub format: u32,
    pub version: u64,
}

fn check_format(key: &str, format: u32) -> Result<()> {
    if (1..=NEWEST_FORMAT).contains(&format) {
        Ok(())
    } else {
        Err(Error::Format(format!(
            "{key} has storage format {format}, but this s3vfs reads formats 1 to \
             {NEWEST_FORMAT}; use a newer s3vfs"
        )))
    }
}

pub(super) fn corrupt(key: &str, why: impl Into<String>) -> Error {
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

/// The plain first line of a format-3 object: what the zstd frame after it holds is the
/// header line and payload of the same object in format 2's framing.
#[derive(Serialize, Deserialize)]
struct Outer {
    format: u32,
    codec: String,
}

/// An object's JSON header, its payload, and the codec it was stored with.
pub(super) struct Envelope {
    pub header: Bytes,
    pub payload: Bytes,
    pub codec: Codec,
    /// Whether it was framed (formats 2 and 3) rather than plain JSON (format 1).
    pub framed: bool,
}

impl Envelope {
    /// Decodes the JSON header after checking its format, so that a newer format is reported
    /// as such rather than as a malformed object, and that the format matches the framing
    /// and the codec.
    pub(super) fn header<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<T> {
        #[derive(Deserialize)]
        struct Versioned {
            format: u32,
        }
        let versioned: Versioned = serde_json::from_slice(&self.header)
            .map_err(|error| corrupt(key, error.to_string()))?;
        check_format(key, versioned.format)?;
        let expected = if self.framed { self.codec.format() } else { 1 };
        if versioned.format != expected {
            return Err(corrupt(key, "framing does not match its format"));
        }
        serde_json::from_slice(&self.header).map_err(|error| corrupt(key, error.to_string()))
    }
}

/// Splits an object into its JSON header and payload: an envelope (formats 2 and 3) is checked
/// against its checksum, and a format-3 one decompressed; a format-1 object is all header.
pub(super) fn open_envelope(key: &str, body: &Bytes) -> Result<Envelope> {
    if let Some(fingerprint) = crate::crypto::sealed_with(body) {
        // Only an encrypted database's objects are sealed, and this one is read without keys.
        return Err(Error::Encryption(format!(
            "{key} is encrypted with {} (key fingerprint {fingerprint}): the database is \
             encrypted; set its key in S3VFS_ENCRYPTION_KEY or S3VFS_KEY_FILE (and drop \
             encryption=none if the URI has it)",
            crate::crypto::CIPHER
        )));
    }
    let Some(newline) = body.iter().position(|byte| *byte == b'\n') else {
        return Ok(Envelope {
            header: body.clone(),
            payload: Bytes::new(),
            codec: Codec::Raw,
            framed: false,
        });
    };
    if body.len() < newline + 1 + 4 {
        return Err(corrupt(key, "truncated object"));
    }
    let (content, trailer) = body.split_at(body.len() - 4);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if checksum(content) != stored {
        return Err(corrupt(key, "checksum mismatch"));
    }
    let first = body.slice(..newline);
    let rest = body.slice(newline + 1..body.len() - 4);
    // A format-3 first line is short; a format-2 header (a checkpoint's map) may be long.
    let outer = match (first.len() < 256).then(|| serde_json::from_slice::<Outer>(&first)) {
        Some(Ok(outer)) if outer.format == 3 => outer,
        _ => {
            return Ok(Envelope {
                header: first,
                payload: rest,
                codec: Codec::Raw,
                framed: true,
            })
        }
    };
    let codec = Codec::parse(&outer.codec)
        .filter(|codec| *codec != Codec::Raw)
        .ok_or_else(|| corrupt(key, format!("unknown codec {:?}", outer.codec)))?;
    let inner = zstd::stream::decode_all(&rest[..])
        .map(Bytes::from)
        .map_err(|error| corrupt(key, format!("its zstd frame does not decode ({error})")))?;
    let split = inner
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or_else(|| corrupt(key, "no header in its zstd frame"))?;
    Ok(Envelope {
        header: inner.slice(..split),
        payload: inner.slice(split + 1..),
        codec,
        framed: true,
    })
}

/// Frames `header` and `payload` as an object stored with `codec`, ending with the CRC-32 of
/// everything before it.
pub(super) fn seal(codec: Codec, header: &[u8], payload: &[Bytes]) -> Bytes {
    let length = header.len() + 1 + payload.iter().map(Bytes::len).sum::<usize>() + 4;
    let mut inner = BytesMut::with_capacity(length);
    inner.put_slice(header);
    inner.put_u8(b'\n');
    for piece in payload {
        inner.put_slice(piece);
    }
    let mut out = match codec {
        Codec::Raw => inner,
        Codec::Zstd(_) => {
            let outer = encode_json(&Outer {
                format: codec.format(),
                codec: codec.to_string(),
            });
            let frame = codec.encode(&inner);
            let mut out = BytesMut::with_capacity(outer.len() + 1 + frame.len() + 4);
            out.put_slice(&outer);
            out.put_u8(b'\n');
            out.put_slice(&frame);
            out
        }
    };
    let sum = checksum(&out);
    out.put_u32_le(sum);
    out.freeze()
}

fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: every map key is an integer or a string.
    serde_json::to_vec(value).unwrap_or_default()
}

fn parse_entry(key: &str, entry: &RawEntry, before: u64) -> Result<BlockRef> {
    match entry {
        RawEntry::Txid(txid) => Ok(BlockRef::whole(parse_txid(key, txid)?, None)),
        RawEntry::Ref { t, o, p, s } => {
            let txid = parse_txid(key, t)?;
            let object = match o {
                Some(object) => parse_txid(key, object)?,
                None => txid,
            };
            if p.is_some_and(|version| version > before) {
                return Err(corrupt(key, "names the pages of a later version"));
            }
            Ok(BlockRef {
                txid,
                object,
                patch: p.map(Version),
                sum: *s,
            })
        }
    }
}

fn raw_entry(entry: &BlockRef) -> RawEntry {
    RawEntry::Ref {
        t: entry.txid.to_string(),
        o: (entry.object != entry.txid).then(|| entry.object.to_string()),
        p: entry.patch.map(|version| version.0),
        s: entry.sum,
    }
}

/// The JSON header of `record` in `format`, its entries written by `entry`.
fn raw_record(
    record: &ParsedRecord,
    format: u32,
    entry: fn(&BlockRef) -> RawEntry,
    pages: Vec<RawPatch>,
) -> RawRecord {
    RawRecord {
        format,
        version: record.version.0,
        txid: record.txid.to_string(),
        time_ms: record.time_ms,
        size: record.size,
        block_size: record.block_size.bytes(),
        base_version: record.base_version.0,
        base_txid: record.base_txid.to_string(),
        changes: record
            .changes
            .iter()
            .map(|(index, block)| (index.0, entry(block)))
            .collect(),
        blocks_written: record.blocks_written,
        gc_margin_ms: record.gc_margin.as_millis() as u64,
        pages,
    }
}

/// A commit record, with parsed units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRecord {
    pub version: Version,
    pub txid: TxId,
    pub time_ms: u64,
    pub size: u64,
    pub block_size: BlockSize,
    pub base_version: Version,
    pub base_txid: TxId,
    pub changes: BTreeMap<BlockIndex, BlockRef>,
    pub blocks_written: u64,
    pub gc_margin: Duration,
    /// The pages this record carries, by block.
    pub patches: Arc<BTreeMap<BlockIndex, Patch>>,
    /// The storage format the record was written in.
    pub format: u32,
    /// How the database's objects are stored (format 3: compressed).
    pub codec: Codec,
}

/// Commit records.
pub struct CommitRecord;

impl CommitRecord {
    pub fn encode(record: &ParsedRecord) -> Bytes {
        let mut payload = Vec::new();
        let pages = record
            .patches
            .iter()
            .map(|(index, patch)| RawPatch {
                b: index.0,
                k: patch.keep,
                n: patch.len,
                r: patch
                    .ranges
                    .iter()
                    .map(|(within, data)| {
                        payload.push(data.clone());
                        (*within, data.len() as u64)
                    })
                    .collect(),
            })
            .collect();
        let raw = raw_record(record, record.codec.format(), raw_entry, pages);
        seal(record.codec, &encode_json(&raw), &payload)
    }

    pub fn decode(key: &str, body: &Bytes) -> Result<ParsedRecord> {
        let envelope = open_envelope(key, body)?;
        let raw: RawRecord = envelope.header(key)?;
        let payload = envelope.payload.clone();
        let mut changes = BTreeMap::new();
        for (index, entry) in &raw.changes {
            changes.insert(BlockIndex(*index), parse_entry(key, entry, raw.version)?);
        }
        if raw.base_version > raw.version {
            return Err(corrupt(key, "base checkpoint is newer than the record"));
        }
        let mut patches = BTreeMap::new();
        let mut at = 0usize;
        for page in &raw.pages {
            let mut ranges = Vec::with_capacity(page.r.len());
            for (within, len) in &page.r {
                let len = usize::try_from(*len).map_err(|_| corrupt(key, "bad page length"))?;
                let end = at
                    .checked_add(len)
                    .filter(|end| *end <= payload.len())
                    .ok_or_else(|| corrupt(key, "pages run past the payload"))?;
                if within.saturating_add(len as u64) > page.n {
                    return Err(corrupt(key, "a page runs past its block"));
                }
                ranges.push((*within, payload.slice(at..end)));
                at = end;
            }
            patches.insert(
                BlockIndex(page.b),
                Patch {
                    keep: page.k.min(page.n),
                    len: page.n,
                    ranges,
                },
            );
        }
        if at != payload.len() {
            return Err(corrupt(key, "payload longer than its pages"));
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
            format: raw.format,
            codec: envelope.codec,
            patches: Arc::new(patches),
        })
    }
}

/// A checkpoint, with parsed units. Its entries never carry patches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCheckpoint {
    pub version: Version,
    pub size: u64,
    pub block_size: BlockSize,
    pub blocks: Vec<BlockRef>,
    /// The length of its interior-page index, 0 when it has none.
    pub interior: u64,
    pub codec: Codec,
}

/// Checkpoints.
pub struct Checkpoint;

impl Checkpoint {
    pub fn encode(checkpoint: &ParsedCheckpoint) -> Bytes {
        let raw = RawCheckpoint {
            format: checkpoint.codec.format(),
            version: checkpoint.version.0,
            size: checkpoint.size,
            block_size: checkpoint.block_size.bytes(),
            blocks: checkpoint.blocks.iter().map(raw_entry).collect(),
            interior: checkpoint.interior,
        };
        seal(checkpoint.codec, &encode_json(&raw), &[])
    }

    pub fn decode(key: &str, body: &Bytes) -> Result<ParsedCheckpoint> {
        let envelope = open_envelope(key, body)?;
        let raw: RawCheckpoint = envelope.header(key)?;
        let block_size = parse_block_size(key, raw.block_size)?;
        let blocks = raw
            .blocks
            .iter()
            .map(|entry| parse_entry(key, entry, raw.version))
            .collect::<Result<Vec<_>>>()?;
        if blocks.len() as u64 != block_size.block_count(raw.size) {
            return Err(corrupt(key, "block list does not match the file size"));
        }
        if blocks.iter().any(|entry| entry.patch.is_some()) {
            return Err(corrupt(key, "a checkpoint entry names patches"));
        }
        Ok(ParsedCheckpoint {
            version: Version(raw.version),
            size: raw.size,
            block_size,
            blocks,
            interior: raw.interior,
            codec: envelope.codec,
        })
    }
}

impl Head {
    pub fn encode(&self) -> Bytes {
        Bytes::from(encode_json(self))
    }

    pub fn decode(key: &str, body: &[u8]) -> Result<Version> {
        let raw: Head =
            serde_json::from_slice(body).map_err(|error| corrupt(key, error.to_string()))?;
        check_format(key, raw.format)?;
        Ok(Version(raw.version))
    }
}

/// Format-1 objects, as earlier builds wrote them, for the tests that check they still open.
#[cfg(test)]
pub mod format1 {
    use super::*;

    pub fn record(record: &ParsedRecord) -> Bytes {
        let bare = |entry: &BlockRef| RawEntry::Txid(entry.txid.to_string());
        Bytes::from(encode_json(&raw_record(record, 1, bare, Vec::new())))
    }

    pub fn checkpoint(checkpoint: &ParsedCheckpoint) -> Bytes {
        let raw = RawCheckpoint {
            format: 1,
            version: checkpoint.version.0,
            size: checkpoint.size,
            block_size: checkpoint.block_size.bytes(),
            blocks: checkpoint
                .blocks
                .iter()
                .map(|entry| RawEntry::Txid(entry.txid.to_string()))
                .collect(),
            interior: 0,
        };
        Bytes::from(encode_json(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ParsedRecord {
        ParsedRecord {
            version: Version(3),
            txid: TxId(7),
            time_ms: 1,
            size: 8192,
            block_size: BlockSize::new(4096).expect("valid"),
            base_version: Version(1),
            base_txid: TxId(9),
            changes: BTreeMap::from([
                (BlockIndex(1), BlockRef::whole(TxId(7), Some(5))),
                (
                    BlockIndex(0),
                    BlockRef {
                        txid: TxId(7),
                        object: TxId(9),
                        patch: Some(Version(3)),
                        sum: Some(6),
                    },
                ),
            ]),
            blocks_written: 2,
            gc_margin: Duration::from_secs(5),
            format: FORMAT_VERSION,
            codec: Codec::Raw,
            patches: Arc::new(BTreeMap::from([(
                BlockIndex(0),
                Patch {
                    keep: 4096,
                    len: 4096,
                    ranges: vec![
                        (24, Bytes::from_static(b"\0\0\0\x09")),
                        (100, Bytes::from_static(b"row")),
                    ],
                },
            )])),
        }
    }

    #[test]
    fn records_round_trip() {
        let parsed = CommitRecord::decode("k", &CommitRecord::encode(&record())).expect("valid");
        assert_eq!(parsed, record());
    }

    #[test]
    fn format_1_records_still_decode() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&format1::record(&record())).expect("json");
        value
            .as_object_mut()
            .expect("object")
            .remove("gc_margin_ms");
        let body = Bytes::from(serde_json::to_vec(&value).expect("json"));
        let parsed = CommitRecord::decode("k", &body).expect("valid record");
        assert_eq!(
            parsed.gc_margin,
            Duration::from_millis(DEFAULT_GC_MARGIN_MS)
        );
        assert_eq!(
            parsed.changes.get(&BlockIndex(0)),
            Some(&BlockRef::whole(TxId(7), None))
        );
        assert!(parsed.patches.is_empty());
    }

    #[test]
    fn any_changed_byte_is_detected() {
        let body = CommitRecord::encode(&record());
        for at in 0..body.len() {
            let mut flipped = body.to_vec();
            flipped[at] ^= 0x10;
            let flipped = Bytes::from(flipped);
            let error = CommitRecord::decode("k", &flipped).expect_err("must refuse");
            assert!(
                matches!(error, Error::Corrupt { .. } | Error::Format(_)),
                "byte {at}: {error:?}"
            );
        }
        let cut = body.slice(..body.len() - 3);
        assert!(CommitRecord::decode("k", &cut).is_err());
    }

    #[test]
    fn compressed_objects_are_format_3_and_round_trip() {
        let compressed = ParsedRecord {
            codec: Codec::Zstd(5),
            format: 3,
            ..record()
        };
        let body = CommitRecord::encode(&compressed);
        assert!(body.starts_with(br#"{"format":3,"codec":"zstd:5"}"#));
        assert_eq!(CommitRecord::decode("k", &body).expect("valid"), compressed);
        for at in (0..body.len()).step_by(3) {
            let mut flipped = body.to_vec();
            flipped[at] ^= 0x20;
            assert!(
                CommitRecord::decode("k", &Bytes::from(flipped)).is_err(),
                "byte {at}"
            );
        }
        let checkpoint = ParsedCheckpoint {
            version: Version(1),
            size: 4096,
            block_size: BlockSize::new(4096).expect("valid"),
            blocks: vec![BlockRef::whole(TxId(1), Some(3))],
            interior: 0,
            codec: Codec::Zstd(5),
        };
        let body = Checkpoint::encode(&checkpoint);
        assert_eq!(Checkpoint::decode("k", &body).expect("valid"), checkpoint);
        // A format-2 header inside a format-3 frame, or the reverse, is refused.
        let mismatched = seal(Codec::Zstd(1), br#"{"format":2,"version":1}"#, &[]);
        assert!(Checkpoint::decode("k", &mismatched).is_err());
    }

    #[test]
    fn unknown_format_is_refused_with_a_clear_message() {
        let error = CommitRecord::decode("k", &Bytes::from_static(br#"{"format":99,"x":1}"#))
            .expect_err("must refuse");
        assert!(error.to_string().contains("format 99"), "{error}");
        let future = seal(Codec::Raw, br#"{"format":4,"other":1}"#, &[]);
        let error = CommitRecord::decode("k", &future).expect_err("must refuse");
        assert!(error.to_string().contains("format 4"), "{error}");
        let error = Head::decode("k", br#"{"format":4,"version":1}"#).expect_err("refused");
        assert!(error.to_string().contains("newer s3vfs"), "{error}");
    }

    #[test]
    fn garbage_is_corrupt() {
        let error =
            CommitRecord::decode("k", &Bytes::from_static(b"not json")).expect_err("refuse");
        assert!(matches!(error, Error::Corrupt { .. }));
        let error =
            Checkpoint::decode("k", &Bytes::from_static(b"{\"format\":1}")).expect_err("refuse");
        assert!(matches!(error, Error::Corrupt { .. }));
    }

    #[test]
    fn checkpoints_round_trip_in_both_formats_and_must_match_their_size() {
        let checkpoint = ParsedCheckpoint {
            version: Version(1),
            size: 4097,
            block_size: BlockSize::new(4096).expect("valid"),
            blocks: vec![
                BlockRef::whole(TxId(1), Some(3)),
                BlockRef::whole(TxId(2), None),
            ],
            interior: 777,
            codec: Codec::Raw,
        };
        let parsed = Checkpoint::decode("k", &Checkpoint::encode(&checkpoint)).expect("valid");
        assert_eq!(parsed, checkpoint);
        let parsed = Checkpoint::decode("k", &format1::checkpoint(&checkpoint)).expect("valid");
        assert_eq!(parsed.blocks[0], BlockRef::whole(TxId(1), None));
        assert_eq!(parsed.interior, 0);
        let short = ParsedCheckpoint {
            size: 9000,
            ..checkpoint
        };
        assert!(Checkpoint::decode("k", &Checkpoint::encode(&short)).is_err());
    }
}
