//! Client-side encryption: the keys a process is given (`S3VFS_ENCRYPTION_KEY` or
//! `S3VFS_KEY_FILE`), their fingerprints, and sealing one object's content with AES-256-GCM,
//! bound to the object's name.
//!
//! A sealed object is one plain JSON line naming the format, the cipher and the key's
//! fingerprint, then a random 96-bit nonce, the ciphertext, the 16-byte tag, and a CRC-32 of
//! everything before it. The line and the object's name are the associated data: an object
//! moved to another name, or with its line changed, does not open. The CRC lets a build that
//! does not know the format read the line and say that a newer s3vfs is needed.
//!
//! No key is ever written anywhere: not in messages, logs, statistics or `Debug` output; only
//! its fingerprint, which cannot be turned back into the key.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The one cipher s3vfs seals with, as the `encryption=` parameter and sealed objects name it.
pub const CIPHER: &str = "aes-256-gcm";
/// The storage format a sealed object's line names: the object inside is of format 2 or 3.
pub const SEALED_FORMAT: u32 = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const CRC_LEN: usize = 4;
/// A sealed object's line is short; reading a longer first line as one is not tried.
const MAX_LINE: usize = 256;

/// The first 8 bytes of SHA-256 over a fixed label and the key: names a key in the bucket and
/// in messages without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    fn parse(text: &str) -> Option<Fingerprint> {
        let bytes = hex_bytes(text)?;
        Some(Fingerprint(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The bytes `text` spells in hex digits, if it is only hex digits and of even length.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// One 256-bit key, ready to seal and open; only its fingerprint can be shown.
#[derive(Clone)]
pub struct Key {
    cipher: Aes256Gcm,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(fingerprint {})", self.fingerprint)
    }
}

/// Why a stored object does not open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// It is not sealed at all.
    NotSealed,
    /// It is sealed with the key of this fingerprint, which is not the one expected.
    OtherKey(Fingerprint),
    /// Its seal is broken: changed at rest or in transit, moved from another name, or cut.
    Damaged(&'static str),
}

/// A sealed object's plain first line.
#[derive(Serialize, Deserialize)]
struct Line {
    format: u32,
    cipher: String,
    key: String,
}

/// How every sealed object begins: the first field of its line, as `Key::line` writes it.
const LINE_START: &[u8] = b"{\"format\":4,";

/// A stored object read as sealed: its plain line, the key it names, and what follows.
struct Sealed<'a> {
    line: &'a [u8],
    fingerprint: Fingerprint,
    body: &'a [u8],
}

/// `stored` as a sealed object, if it is one; plain objects are told apart by their first
/// bytes, without parsing.
fn parse(stored: &[u8]) -> Option<Sealed<'_>> {
    if !stored.starts_with(LINE_START) {
        return None;
    }
    let newline = stored
        .iter()
        .take(MAX_LINE)
        .position(|byte| *byte == b'\n')?;
    let line: Line = serde_json::from_slice(&stored[..newline]).ok()?;
    let fingerprint = (line.format == SEALED_FORMAT && line.cipher == CIPHER)
        .then(|| Fingerprint::parse(&line.key))
        .flatten()?;
    Some(Sealed {
        line: &stored[..newline],
        fingerprint,
        body: &stored[newline + 1..],
    })
}

/// The fingerprint of the key `body` is sealed with, if it is a sealed object.
pub fn sealed_with(body: &[u8]) -> Option<Fingerprint> {
    parse(body).map(|sealed| sealed.fingerprint)
}

/// The associated data of an object: its name, length-prefixed, then its plain line.
fn associated_data(name: &str, line: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + name.len() + line.len());
    data.extend_from_slice(&(name.len() as u64).to_le_bytes());
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(line);
    data
}

impl Key {
    /// The key 64 hex digits spell (surrounding whitespace ignored), or `None`.
    pub fn from_hex(text: &str) -> Option<Key> {
        let text = text.trim();
        if text.len() != 64 {
            return None;
        }
        let bytes = hex_bytes(text)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).ok()?;
        let mut hasher = Sha256::new();
        hasher.update(b"s3vfs key fingerprint\n");
        hasher.update(&bytes);
        let digest = hasher.finalize();
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&digest[..8]);
        Some(Key {
            cipher,
            fingerprint: Fingerprint(fingerprint),
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    fn line(&self) -> Vec<u8> {
        // A plain struct of a number and strings: serializing cannot fail.
        serde_json::to_vec(&Line {
            format: SEALED_FORMAT,
            cipher: CIPHER.to_string(),
            key: self.fingerprint.to_string(),
        })
        .unwrap_or_default()
    }

    /// `content` sealed as the object `name`, under a fresh random nonce.
    pub fn seal(&self, name: &str, content: &[u8]) -> Bytes {
        let line = self.line();
        let mut nonce = [0u8; NONCE_LEN];
        // The operating system's generator fails only when the system cannot run at all; a
        // nonce that might repeat must never be used, so failing here stops the process.
        getrandom::getrandom(&mut nonce).expect("the operating system's random numbers");
        let mut out =
            BytesMut::with_capacity(line.len() + 1 + NONCE_LEN + content.len() + TAG_LEN + CRC_LEN);
        out.put_slice(&line);
        out.put_u8(b'\n');
        out.put_slice(&nonce);
        let start = out.len();
        out.put_slice(content);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &associated_data(name, &line),
                &mut out[start..],
            )
            // Only a message longer than 64 GiB is refused; no object is that large.
            .expect("an object within AES-GCM's length limit");
        out.put_slice(&tag);
        let sum = crc32fast::hash(&out);
        out.put_u32_le(sum);
        out.freeze()
    }

    /// The content of the object `name` sealed with this key.
    pub fn open(&self, name: &str, stored: &[u8]) -> Result<Bytes, OpenError> {
        let sealed = parse(stored).ok_or(OpenError::NotSealed)?;
        self.open_sealed(name, stored, &sealed)
    }

    /// As [`Key::open`], for `stored` already read as `sealed`.
    fn open_sealed(&self, name: &str, stored: &[u8], sealed: &Sealed) -> Result<Bytes, OpenError> {
        let body = sealed.body;
        if body.len() < NONCE_LEN + TAG_LEN + CRC_LEN {
            return Err(OpenError::Damaged("cut short"));
        }
        // Checked first, so that a byte changed in transit in the line is seen as damage (and
        // fetched again), not as another key.
        let (summed, trailer) = stored.split_at(stored.len() - CRC_LEN);
        if crc32fast::hash(summed).to_le_bytes() != trailer {
            return Err(OpenError::Damaged("checksum mismatch"));
        }
        if sealed.fingerprint != self.fingerprint {
            return Err(OpenError::OtherKey(sealed.fingerprint));
        }
        let (nonce, rest) = body[..body.len() - CRC_LEN].split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut content = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &associated_data(name, sealed.line),
                &mut content,
                Tag::from_slice(tag),
            )
            .map_err(|_| {
                OpenError::Damaged("it does not authenticate: changed, or moved from another name")
            })?;
        Ok(Bytes::from(content))
    }
}

/// The keys a process was given, the first the one new databases are sealed with, and where
/// they came from (for messages).
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<[Key]>,
    source: Arc<str>,
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Keyring) -> bool {
        self.fingerprints().eq(other.fingerprints())
    }
}

impl Eq for Keyring {}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("source", &self.source)
            .field("fingerprints", &self.fingerprints().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A ring of `keys` (at least one), described as coming from `source`.
    pub fn new(keys: Vec<Key>, source: &str) -> Option<Keyring> {
        (!keys.is_empty()).then(|| Keyring {
            keys: keys.into(),
            source: source.into(),
        })
    }

    /// The keys the environment gives: `S3VFS_ENCRYPTION_KEY` (64 hex digits), or the file
    /// `S3VFS_KEY_FILE` names, one key per line (blank lines and `#` comments ignored), the
    /// first sealing new databases and the others only opening those sealed with them. `None`
    /// when neither is set. No message shows any part of a key.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Keyring>, String> {
        let variable = env("S3VFS_ENCRYPTION_KEY").filter(|value| !value.is_empty());
        let file = env("S3VFS_KEY_FILE").filter(|value| !value.is_empty());
        match (variable, file) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => {
                Err("S3VFS_ENCRYPTION_KEY and S3VFS_KEY_FILE are both set: set one of them".into())
            }
            (Some(text), None) => {
                let key = Key::from_hex(&text).ok_or_else(|| {
                    format!(
                        "S3VFS_ENCRYPTION_KEY must be 64 hex digits (a 32-byte key), and it is \
                         {} characters that are not: generate one with `openssl rand -hex 32`",
                        text.trim().len()
                    )
                })?;
                Ok(Keyring::new(vec![key], "S3VFS_ENCRYPTION_KEY"))
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| format!("cannot read S3VFS_KEY_FILE {path}: {error}"))?;
                let mut keys = Vec::new();
                for (number, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    keys.push(Key::from_hex(line).ok_or_else(|| {
                        format!(
                            "S3VFS_KEY_FILE {path}: line {} is not a key of 64 hex digits",
                            number + 1
                        )
                    })?);
                }
                Keyring::new(keys, &format!("S3VFS_KEY_FILE ({path})"))
                    .map(Some)
                    .ok_or_else(|| format!("S3VFS_KEY_FILE {path} holds no key"))
            }
        }
    }

    pub fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.keys.iter().map(Key::fingerprint)
    }

    /// Where the keys came from, such as `S3VFS_ENCRYPTION_KEY`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where in the ring the key of `fingerprint` is.
    fn position(&self, fingerprint: Fingerprint) -> Option<usize> {
        self.keys
            .iter()
            .position(|key| key.fingerprint == fingerprint)
    }
}

/// Seals and opens the objects of one database. Its key is fixed by the first object opened
/// (the database's), or for a new database by the first sealed (the ring's first); from then
/// on, every object must be sealed with it.
pub struct Sealer {
    ring: Keyring,
    /// Where the database's key is in the ring, once known.
    key: Mutex<Option<usize>>,
}

impl Sealer {
    pub fn new(ring: Keyring) -> Sealer {
        Sealer {
            ring,
            key: Mutex::new(None),
        }
    }

    pub fn ring(&self) -> &Keyring {
        &self.ring
    }

    /// The fingerprint of the database's key, once known.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.key.lock().map(|at| self.ring.keys[at].fingerprint)
    }

    /// `content` sealed as the object `name` with the database's key.
    pub fn seal(&self, name: &str, content: &[u8]) -> Bytes {
        let at = *self.key.lock().get_or_insert(0);
        self.ring.keys[at].seal(name, content)
    }

    /// The content of the object `name`; its key becomes the database's if none is yet.
    pub fn open(&self, name: &str, stored: &[u8]) -> Result<Bytes, OpenError> {
        let sealed = parse(stored).ok_or(OpenError::NotSealed)?;
        let chosen = *self.key.lock();
        let at = match chosen {
            Some(at) => at,
            None => self
                .ring
                .position(sealed.fingerprint)
                .ok_or(OpenError::OtherKey(sealed.fingerprint))?,
        };
        let content = self.ring.keys[at].open_sealed(name, stored, &sealed)?;
        // Only an object that authenticates decides the database's key.
        self.key.lock().get_or_insert(at);
        Ok(content)
    }

    /// What to tell a person about `error` opening object `name` of this database.
    pub fn explain(&self, error: &OpenError) -> String {
        let source = self.ring.source();
        match error {
            OpenError::NotSealed => format!(
                "is not encrypted, but {source} is set: with a key, s3vfs opens only encrypted \
                 databases (so that whoever can write to the bucket cannot slip in a plain \
                 one); add encryption=none to the URI to open an unencrypted database"
            ),
            OpenError::OtherKey(found) => match self.fingerprint() {
                Some(own) if own != *found => format!(
                    "is encrypted with the key of fingerprint {found}, but the database's key \
                     has fingerprint {own}: the object was replaced"
                ),
                _ => format!(
                    "is encrypted with the key of fingerprint {found}, and {source} holds {}: \
                     set the database's key",
                    describe(self.ring.fingerprints())
                ),
            },
            OpenError::Damaged(why) => format!("its encryption does not check out: {why}"),
        }
    }
}

/// `the key of fingerprint X`, or `the keys of fingerprints X, Y`.
fn describe(fingerprints: impl Iterator<Item = Fingerprint>) -> String {
    let all: Vec<String> = fingerprints
        .map(|fingerprint| fingerprint.to_string())
        .collect();
    match all.len() {
        1 => format!("the key of fingerprint {}", all[0]),
        _ => format!("the keys of fingerprints {}", all.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";

    fn key(hex: &str) -> Key {
        Key::from_hex(hex).expect("valid key")
    }

    #[test]
    fn sealed_objects_open_only_with_their_key_and_name() {
        let (a, b) = (key(KEY_A), key(KEY_B));
        let content = b"SQLite format 3\0 and some pages".repeat(100);
        let sealed = a.seal("db/blocks/0000000001/x", &content);
        assert_eq!(sealed_with(&sealed), Some(a.fingerprint()));
        assert!(
            !sealed
                .windows(15)
                .any(|window| window == b"SQLite format 3"),
            "no plaintext in the sealed object"
        );
        let opened = a.open("db/blocks/0000000001/x", &sealed).expect("opens");
        assert_eq!(&opened[..], &content[..]);
        // A fresh nonce each time: sealing the same content twice differs.
        assert_ne!(a.seal("n", &content), a.seal("n", &content));
        assert_eq!(
            b.open("db/blocks/0000000001/x", &sealed),
            Err(OpenError::OtherKey(a.fingerprint()))
        );
        assert!(matches!(
            a.open("db/blocks/0000000002/x", &sealed),
            Err(OpenError::Damaged(_))
        ));
        assert_eq!(
            a.open("n", b"{\"format\":2}\nplain"),
            Err(OpenError::NotSealed)
        );
        // Any byte changed after the line, with the checksum fixed up, fails to authenticate;
        // without the fix-up, the checksum catches it.
        let line = sealed.iter().position(|byte| *byte == b'\n').expect("line") + 1;
        for at in (line..sealed.len() - CRC_LEN).step_by(97) {
            let mut changed = sealed.to_vec();
            changed[at] ^= 0x20;
            assert_eq!(
                a.open("db/blocks/0000000001/x", &changed),
                Err(OpenError::Damaged("checksum mismatch"))
            );
            let end = changed.len() - CRC_LEN;
            let sum = crc32fast::hash(&changed[..end]);
            changed[end..].copy_from_slice(&sum.to_le_bytes());
            assert!(
                matches!(
                    a.open("db/blocks/0000000001/x", &changed),
                    Err(OpenError::Damaged(_))
                ),
                "byte {at}"
            );
        }
        assert!(matches!(
            a.open("db/blocks/0000000001/x", &sealed[..line + 10]),
            Err(OpenError::Damaged(_))
        ));
    }

    #[test]
    fn keys_parse_from_hex_and_show_only_their_fingerprint() {
        let a = key(KEY_A);
        assert_eq!(a.fingerprint(), key(&format!(" {KEY_A}\n")).fingerprint());
        assert_ne!(a.fingerprint(), key(KEY_B).fingerprint());
        assert_eq!(a.fingerprint().to_string().len(), 16);
        for bad in [
            &KEY_A[..62],
            &format!("{KEY_A}00"),
            &KEY_A.replace('0', "g"),
            "",
        ] {
            assert!(Key::from_hex(bad).is_none(), "{bad}");
        }
        let ring = Keyring::new(vec![a.clone(), key(KEY_B)], "S3VFS_KEY_FILE (k)").expect("ring");
        for shown in [format!("{a:?}"), format!("{ring:?}")] {
            assert!(shown.contains(&a.fingerprint().to_string()), "{shown}");
            assert!(!shown.contains(&KEY_A[..16]), "{shown}");
        }
    }

    #[test]
    fn the_environment_gives_one_key_or_a_file_of_them_and_messages_never_show_them() {
        let env = |pairs: Vec<(&'static str, String)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.clone())
            }
        };
        assert_eq!(Keyring::from_env(env(vec![])), Ok(None));
        let one = Keyring::from_env(env(vec![("S3VFS_ENCRYPTION_KEY", KEY_A.into())]))
            .expect("valid")
            .expect("a ring");
        assert_eq!(
            one.fingerprints().collect::<Vec<_>>(),
            vec![key(KEY_A).fingerprint()]
        );
        let short = &KEY_A[..63];
        let error = Keyring::from_env(env(vec![("S3VFS_ENCRYPTION_KEY", short.into())]))
            .expect_err("too short");
        assert!(
            error.contains("64 hex digits") && !error.contains(&short[..8]),
            "{error}"
        );
        let both = Keyring::from_env(env(vec![
            ("S3VFS_ENCRYPTION_KEY", KEY_A.into()),
            ("S3VFS_KEY_FILE", "/nowhere".into()),
        ]));
        assert!(both.expect_err("both").contains("both set"));

        let path = std::env::temp_dir().join(format!("s3vfs-keys-{}", std::process::id()));
        std::fs::write(&path, format!("# rotated 2026-12\n{KEY_B}\n\n{KEY_A}\n")).expect("write");
        let file = env(vec![("S3VFS_KEY_FILE", path.display().to_string())]);
        let ring = Keyring::from_env(file).expect("valid").expect("a ring");
        let fingerprints: Vec<_> = ring.fingerprints().collect();
        assert_eq!(
            fingerprints,
            vec![key(KEY_B).fingerprint(), key(KEY_A).fingerprint()]
        );
        std::fs::write(&path, format!("{KEY_B}\n{}\n", &KEY_A[2..])).expect("write");
        let error = Keyring::from_env(env(vec![("S3VFS_KEY_FILE", path.display().to_string())]))
            .expect_err("bad line");
        assert!(
            error.contains("line 2") && !error.contains(&KEY_A[2..18]),
            "{error}"
        );
        std::fs::write(&path, "# nothing\n").expect("write");
        let error = Keyring::from_env(env(vec![("S3VFS_KEY_FILE", path.display().to_string())]))
            .expect_err("empty");
        assert!(error.contains("holds no key"), "{error}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_sealer_keeps_to_the_database_key() {
        let (a, b) = (key(KEY_A), key(KEY_B));
        let ring = Keyring::new(vec![b.clone(), a.clone()], "S3VFS_KEY_FILE (k)").expect("ring");
        // An existing database sealed with the ring's second key keeps being sealed with it.
        let existing = Sealer::new(ring.clone());
        let record = a.seal("db/log/1", b"record");
        assert_eq!(
            &existing.open("db/log/1", &record).expect("opens")[..],
            b"record"
        );
        assert_eq!(existing.fingerprint(), Some(a.fingerprint()));
        assert_eq!(
            sealed_with(&existing.seal("db/log/2", b"next")),
            Some(a.fingerprint())
        );
        let other = b.seal("db/log/3", b"swapped");
        let error = existing.open("db/log/3", &other).expect_err("other key");
        assert!(
            existing.explain(&error).contains("replaced"),
            "{}",
            existing.explain(&error)
        );
        // A new database is sealed with the ring's first.
        let new = Sealer::new(ring.clone());
        assert_eq!(
            sealed_with(&new.seal("db/log/1", b"first")),
            Some(b.fingerprint())
        );
        // A key not in the ring is named by fingerprint only.
        let stranger = Sealer::new(Keyring::new(vec![b], "S3VFS_ENCRYPTION_KEY").expect("ring"));
        let error = stranger
            .open("db/log/1", &record)
            .expect_err("not in the ring");
        let message = stranger.explain(&error);
        assert!(message.contains(&a.fingerprint().to_string()), "{message}");
        assert!(message.contains("S3VFS_ENCRYPTION_KEY"), "{message}");
        assert!(stranger
            .explain(&OpenError::NotSealed)
            .contains("encryption=none"));
    }
}
