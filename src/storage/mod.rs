//! How a database becomes objects: object keys, SQLite's page facts, commit records and the
//! snapshots they describe; the history of versions and its collector. Its units live in
//! [`crate::units`].

pub mod block;
pub mod codec;
pub mod format;
pub mod gc;
pub mod history;
pub mod interior;
pub mod log;
pub mod snapshot;

pub use crate::units::{BlockIndex, BlockSize, ByteOffset, Piece, TxId, Version};
pub use format::{Checkpoint, CommitRecord, Head, FORMAT_VERSION};
pub use snapshot::Snapshot;

/// The first bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The length of SQLite's database header, at the start of page 1.
pub const SQLITE_HEADER_LEN: usize = 100;
/// Offsets of big-endian numbers in SQLite's header: the file change counter, the page count,
/// the schema cookie, and the version-valid-for number, which mirrors the change counter when
/// the page count is valid. SQLite keeps a connection's page cache while the counter stays.
pub const CHANGE_COUNTER: usize = 24;
pub const PAGE_COUNT: usize = 28;
pub const SCHEMA_COOKIE: usize = 40;
pub const VERSION_VALID_FOR: usize = 92;

/// The big-endian number at `at` of a SQLite header, when `header` holds it.
pub fn header_u32(header: &[u8], at: usize) -> Option<u32> {
    let bytes = header.get(at..at + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Sets the change counter of `header` (at least [`SQLITE_HEADER_LEN`] bytes) to `counter`,
/// and its version-valid-for with it when `mirror`, so that every connection sees new content.
pub fn set_change_counter(header: &mut [u8], counter: u32, mirror: bool) {
    let bytes = counter.to_be_bytes();
    header[CHANGE_COUNTER..CHANGE_COUNTER + 4].copy_from_slice(&bytes);
    if mirror {
        header[VERSION_VALID_FOR..VERSION_VALID_FOR + 4].copy_from_slice(&bytes);
    }
}

/// Whether `bytes` is a page size SQLite allows: a power of two from 512 to 65536.
pub fn is_page_size(bytes: u64) -> bool {
    bytes.is_power_of_two() && (512..=65536).contains(&bytes)
}

/// The page size a SQLite database header states (bytes 16-17; 1 means 65536), valid or not;
/// `None` when `header` is too short to hold it.
pub fn header_page_size(header: &[u8]) -> Option<u32> {
    let raw = u16::from_be_bytes([*header.get(16)?, *header.get(17)?]);
    Some(if raw == 1 { 65536 } else { u32::from(raw) })
}

/// The 1-based number of the page a read of `len` bytes at `offset` is, when it is exactly one
/// page of a database whose page size is `len`.
pub fn page_number(offset: ByteOffset, len: usize) -> Option<u32> {
    let len = len as u64;
    (is_page_size(len) && offset.0.is_multiple_of(len))
        .then(|| u32::try_from(offset.0 / len + 1).ok())
        .flatten()
}

/// What an interior-page index's key adds to its checkpoint's.
pub const INTERIOR_SUFFIX: &str = ".interior";

/// Where one database lives: a bucket and a key prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
    pub fn block_key(&self, index: BlockIndex, txid: TxId) -> String {
        format!("{}/blocks/{:010}/{}", self.prefix, index.0, txid)
    }
    pub fn log_prefix(&self) -> String {
        format!("{}/log/", self.prefix)
    }
    pub fn log_key(&self, version: Version) -> String {
        format!("{}/log/{:020}", self.prefix, version.0)
    }
    pub fn checkpoint_key(&self, version: Version, txid: TxId) -> String {
        format!("{}/checkpoints/{:020}-{}", self.prefix, version.0, txid)
    }
    /// The interior-page index beside the checkpoint of `version` (see [`interior`]).
    pub fn interior_key(&self, version: Version, txid: TxId) -> String {
        format!("{}{INTERIOR_SUFFIX}", self.checkpoint_key(version, txid))
    }
    pub fn head_key(&self) -> String {
        format!("{}/head", self.prefix)
    }
    /// The version a log key names, if it is one.
    pub fn version_of_log_key(&self, key: &str) -> Option<Version> {
        let digits = key.strip_prefix(&self.log_prefix())?;
        (digits.len() == 20)
            .then(|| digits.parse().ok().map(Version))
            .flatten()
    }
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_page_facts() {
        assert_eq!(header_page_size(&[0u8; 17]), None);
        let mut header = [0u8; 100];
        header[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(header_page_size(&header), Some(65536));
        header[16..18].copy_from_slice(&3000u16.to_be_bytes());
        assert_eq!(header_page_size(&header), Some(3000));
        assert!(!is_page_size(3000) && !is_page_size(256) && is_page_size(4096));
        assert_eq!(page_number(ByteOffset(8192), 4096), Some(3));
        assert_eq!(page_number(ByteOffset(8192), 100), None);
        assert_eq!(page_number(ByteOffset(8193), 4096), None);
    }

    #[test]
    fn log_keys_round_trip_and_sort_by_version() {
        let location = Location {
            bucket: "b".into(),
            prefix: "db/shop.db".into(),
        };
        let key = location.log_key(Version(42));
        assert_eq!(location.version_of_log_key(&key), Some(Version(42)));
        assert!(location.log_key(Version(9)) < location.log_key(Version(10)));
        assert_eq!(location.version_of_log_key("db/shop.db/log/x"), None);
        let txid = TxId::random();
        assert_eq!(TxId::parse(&txid.to_string()), Some(txid));
    }
}
