//! Typed configuration of one database, from URI parameters, then environment variables,
//! then defaults; validated once, when the database file is opened.

use std::time::Duration;

use crate::backend::s3::Endpoint;
use crate::crypto::{Keyring, CIPHER};
use crate::error::{Error, Result};
use crate::storage::codec::Codec;
use crate::storage::format::MIN_GC_MARGIN_MS;
use crate::storage::history::Pin;
use crate::storage::{BlockSize, Location, Version};
use crate::time::{parse_duration, parse_time};

/// The default byte budget of the block cache of one database.
pub const DEFAULT_CACHE_SIZE: u64 = 64 * 1024 * 1024;
/// The default byte budget of the block caches of databases no connection has open
/// (`S3VFS_IDLE_CACHE_SIZE`): one database's default cache.
pub const DEFAULT_IDLE_CACHE_SIZE: u64 = DEFAULT_CACHE_SIZE;
/// The default byte budget of a disk cache directory (`disk_cache_size`).
pub const DEFAULT_DISK_CACHE_SIZE: u64 = 1 << 30;
/// The default bound on the bytes one B-tree prefetch fetches (`prefetch_size`); a prefetch
/// also stays within a quarter of `cache_size`.
pub const DEFAULT_PREFETCH_SIZE: u64 = 16 * 1024 * 1024;
/// The largest `cache_size`: 1 TiB.
pub const MAX_CACHE_SIZE: u64 = 1 << 40;
/// The longest `staleness`: a day.
pub const MAX_STALENESS: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `gc_margin`: thirty days.
pub const MAX_GC_MARGIN: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// URI parameters SQLite itself understands; s3vfs accepts and leaves them to SQLite.
const SQLITE_PARAMETERS: &[&str] = &[
    "vfs",
    "mode",
    "cache",
    "psow",
    "nolock",
    "immutable",
    "modeof",
];

/// Parameters of s3vfs, as documented in README.md.
pub const PARAMETERS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "path_style",
    "block_size",
    "cache_size",
    "staleness",
    "layout",
    "version",
    "as_of",
    "gc_margin",
    "cache_dir",
    "disk_cache_size",
    "single_writer",
    "prefetch_size",
    "interior_index",
    "compression",
    "encryption",
];

/// How a database is laid out in the bucket, chosen with the `layout` URI parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// s3vfs's own format: immutable blocks and conditional-PUT commit records (the default).
    Versioned,
    /// The layout of the Python package sqlite-s3vfs: one object per block, overwritten in
    /// place ([`crate::vfs::legacy`]).
    SqliteS3vfs,
}

impl Layout {
    /// Every value of the `layout` parameter, the default first.
    pub const NAMES: &'static [&'static str] = &["versioned", "sqlite-s3vfs"];

    pub fn parse(text: &str) -> Option<Layout> {
        match text {
            "versioned" => Some(Layout::Versioned),
            "sqlite-s3vfs" => Some(Layout::SqliteS3vfs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Versioned => "versioned",
            Layout::SqliteS3vfs => "sqlite-s3vfs",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub location: Location,
    pub endpoint: Endpoint,
    /// `None`: the database's own, or [`BlockSize::DEFAULT`] for a new database.
    pub block_size: Option<BlockSize>,
    /// Bytes of block data the cache may hold.
    pub cache_size: u64,
    /// A read transaction may skip the freshness check if the last one is younger than this.
    pub staleness: Duration,
    pub layout: Layout,
    /// `version=` or `as_of=`: the connection reads this past version, read-only.
    pub pin: Option<Pin>,
    /// `gc_margin=`: the collector's safety margin of a database being created.
    pub gc_margin: Option<Duration>,
    /// `S3VFS_IDLE_CACHE_SIZE`: bytes of cached blocks the process keeps for databases no
    /// connection has open.
    pub idle_cache_size: u64,
    /// `cache_dir=` / `S3VFS_CACHE_DIR`: the disk cache directory, if any, and its budget.
    pub disk_cache: Option<(std::path::PathBuf, u64)>,
    /// `single_writer=1`: only this process writes the database, so s3vfs does not check that
    /// the server honours `If-None-Match: *` before its first commit.
    pub single_writer: bool,
    /// `prefetch_size=`: bytes one B-tree prefetch may fetch; 0 turns it off.
    pub prefetch_size: u64,
    /// `interior_index=0`: cold reads do not load the checkpoint's interior-page index.
    pub interior_index: bool,
    /// `compression=`: how a database created by this open stores its objects; `None`: as
    /// the database says, raw for a new one.
    pub compression: Option<Codec>,
    /// The keys of `S3VFS_ENCRYPTION_KEY` or `S3VFS_KEY_FILE`, unless `encryption=none`:
    /// with keys, a database created by this open is encrypted, and only an encrypted
    /// database opens. `None`: no key, or `encryption=none`.
    pub encryption: Option<Keyring>,
}

/// Parses `65536`, `64k`, `64KiB`, `16M`, `1GiB` (binary units).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn malformed(name: &str, value: &str, expected: &str) -> Error {
    Error::Config(format!(
        "URI parameter {name}={:?} is malformed: expected {expected}",
        crate::error::redact_credentials(value)
    ))
}

fn out_of_range(name: &str, value: &str, range: &str) -> Error {
    Error::Config(format!(
        "URI parameter {name}={value:?} is out of range: {range}"
    ))
}

/// A size parameter: well formed, and at most [`MAX_CACHE_SIZE`].
fn size_parameter(name: &str, value: &str) -> Result<u64> {
    let well_formed =
        !value.trim().is_empty() && value.trim().starts_with(|c: char| c.is_ascii_digit());
    match parse_bytes(value) {
        Some(bytes) if bytes <= MAX_CACHE_SIZE => Ok(bytes),
        None if !well_formed => Err(malformed(name, value, "a size such as 67108864 or 64M")),
        _ => Err(out_of_range(name, value, "at most 1 TiB (1024G)")),
    }
}

/// A size from environment variable `name`, at most [`MAX_CACHE_SIZE`]; `default` when unset.
fn size_variable(env: impl Fn(&str) -> Option<String>, name: &str, default: u64) -> Result<u64> {
    let Some(text) = env(name) else {
        return Ok(default);
    };
    parse_bytes(&text)
        .filter(|bytes| *bytes <= MAX_CACHE_SIZE)
        .ok_or_else(|| {
            Error::Config(format!(
                "environment variable {name}={text:?} is malformed: expected a size up to 1 TiB, \
                 such as 0, 64M or 1G"
            ))
        })
}

/// A duration parameter: well formed, and at most `max`.
fn duration_parameter(name: &str, value: &str, max: Duration, range: &str) -> Result<Duration> {
    match parse_duration(value) {
        None => Err(malformed(name, value, "a duration such as 0, 500ms or 2s")),
        Some(Ok(duration)) if duration <= max => Ok(duration),
        Some(_) => Err(out_of_range(name, value, range)),
    }
}

impl Config {
    /// Builds the configuration of the database at `path` from its URI `parameters`
    /// (in order) and the environment `env`.
    pub fn parse(
        path: &str,
        parameters: &[(String, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let mut bucket = None;
        let mut endpoint_url = None;
        let mut region = None;
        let mut path_style = None;
        let mut single_writer = false;
        let mut block_size = None;
        let mut cache_size = DEFAULT_CACHE_SIZE;
        let mut prefetch_size = DEFAULT_PREFETCH_SIZE;
        let mut interior_index = true;
        let mut compression = None;
        let mut encryption = None;
        let mut staleness = Duration::ZERO;
        let mut layout = Layout::Versioned;
        let mut pin = None;
        let mut gc_margin = None;
        let mut cache_dir = None;
        let mut disk_cache_size = None;
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in parameters {
            if PARAMETERS.contains(&name.as_str()) {
                if seen.contains(&name.as_str()) {
                    return Err(Error::Config(format!(
                        "URI parameter {name} is given more than once: give it once"
                    )));
                }
                seen.push(name);
            }
            match name.as_str() {
                "bucket" => bucket = Some(value.clone()),
                "endpoint" => endpoint_url = Some(value.clone()),
                "region" => region = Some(value.clone()),
                "path_style" => {
                    path_style =
                        Some(parse_bool(value).ok_or_else(|| malformed(name, value, "0 or 1"))?)
                }
                "single_writer" => {
                    single_writer =
                        parse_bool(value).ok_or_else(|| malformed(name, value, "0 or 1"))?
                }
                "compression" => {
                    compression = Some(Codec::parse(value).ok_or_else(|| {
                        malformed(
                            name,
                            value,
                            "none, zstd, or zstd:LEVEL with a level from 1 to 19",
                        )
                    })?)
                }
                "encryption" => {
                    encryption = Some(match value.trim() {
                        "none" => false,
                        CIPHER => true,
                        _ => return Err(malformed(name, value, "none or aes-256-gcm")),
                    })
                }
                "interior_index" => {
                    interior_index =
                        parse_bool(value).ok_or_else(|| malformed(name, value, "0 or 1"))?
                }
                "block_size" => {
                    let bytes = parse_bytes(value)
                        .ok_or_else(|| malformed(name, value, "a size such as 65536 or 64k"))?;
                    block_size = Some(BlockSize::new(bytes).ok_or_else(|| {
                        malformed(name, value, "a power of two from 512 bytes to 16 MiB")
                    })?);
                }
                "cache_size" => cache_size = size_parameter(name, value)?,
                "prefetch_size" => prefetch_size = size_parameter(name, value)?,
                "staleness" => {
                    staleness =
                        duration_parameter(name, value, MAX_STALENESS, "at most a day (86400s)")?;
                }
                "layout" => {
                    layout = Layout::parse(value).ok_or_else(|| {
                        Error::Config(format!(
                            "unknown layout {value:?}: layout= takes one of {}",
                            Layout::NAMES.join(", ")
                        ))
                    })?;
                }
                "version" | "as_of" if pin.is_some() => {
                    return Err(Error::Config(
                        "URI parameters version= and as_of= name one version: give one of them"
                            .into(),
                    ))
                }
                "version" => {
                    let number = value
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|number| *number > 0)
                        .ok_or_else(|| malformed(name, value, "a version number such as 42"))?;
                    pin = Some(Pin::Version(Version(number)));
                }
                "as_of" => {
                    let time = parse_time(value).ok_or_else(|| {
                        malformed(
                            name,
                            value,
                            "a UTC time such as 2026-11-21T10:00:00Z, or Unix seconds or milliseconds",
                        )
                    })?;
                    pin = Some(Pin::AsOf(time));
                }
                "gc_margin" => {
                    let margin = parse_duration(value).and_then(Result::ok).ok_or_else(|| {
                        malformed(name, value, "a duration of at least 1s, such as 1h or 90s")
                    })?;
                    if margin.as_millis() < u128::from(MIN_GC_MARGIN_MS) || margin > MAX_GC_MARGIN {
                        return Err(out_of_range(name, value, "from 1s to 30 days (30d)"));
                    }
                    gc_margin = Some(margin);
                }
                "cache_dir" => {
                    if value.is_empty() {
                        return Err(malformed(name, value, "a directory path"));
                    }
                    cache_dir = Some(value.clone());
                }
                "disk_cache_size" => disk_cache_size = Some(size_parameter(name, value)?),
                other if SQLITE_PARAMETERS.contains(&other) => {}
                // Options of the host's driver, which some (Go's mattn/go-sqlite3) leave in the
                // filename they pass to SQLite: theirs, not ours.
                other if other.starts_with('_') => {}
                other => {
                    return Err(Error::Config(format!(
                        "unknown URI parameter {other:?}; s3vfs knows {}",
                        PARAMETERS.join(", ")
                    )))
                }
            }
        }
        let bucket = bucket
            .or_else(|| env("S3VFS_BUCKET"))
            .filter(|bucket| !bucket.is_empty())
            .ok_or_else(|| {
                Error::Config("no bucket: add ?bucket=NAME to the URI or set S3VFS_BUCKET".into())
            })?;
        if bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
            return Err(malformed(
                "bucket",
                &bucket,
                "a bucket name without '/' or spaces",
            ));
        }
        if layout == Layout::SqliteS3vfs && (pin.is_some() || gc_margin.is_some()) {
            return Err(Error::Config(
                "version=, as_of= and gc_margin= need the versioned layout: layout=sqlite-s3vfs \
                 overwrites blocks in place and keeps no history"
                    .into(),
            ));
        }
        if layout == Layout::SqliteS3vfs && compression.is_some_and(|codec| codec != Codec::Raw) {
            return Err(Error::Config(
                "compression= needs the versioned layout: layout=sqlite-s3vfs stores blocks as \
                 the Python package reads them"
                    .into(),
            ));
        }
        let keys = Keyring::from_env(&env).map_err(Error::Config)?;
        let encryption = match (encryption, keys) {
            (Some(false), _) | (None, None) => None,
            (Some(true), None) => {
                return Err(Error::Config(
                    "encryption=aes-256-gcm needs a key: set S3VFS_ENCRYPTION_KEY to 64 hex \
                     digits, or S3VFS_KEY_FILE to a file of them"
                        .into(),
                ))
            }
            (_, Some(keys)) => Some(keys),
        };
        if let (Layout::SqliteS3vfs, Some(keys)) = (layout, &encryption) {
            return Err(Error::Config(format!(
                "layout=sqlite-s3vfs stores blocks as the Python package reads them, unencrypted, \
                 and {} is set: add encryption=none to the URI",
                keys.source()
            )));
        }
        let prefix = match layout {
            Layout::Versioned => path.trim_start_matches('/').trim_end_matches('/'),
            // The Python package keys objects by the file name exactly as SQLite passes it.
            Layout::SqliteS3vfs => path,
        }
        .to_string();
        if prefix.is_empty() {
            return Err(Error::Config(
                "the database path is empty: name the database, as in file:shop.db".into(),
            ));
        }
        let endpoint_url = endpoint_url
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .filter(|url| !url.is_empty());
        if let Some(url) = &endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(malformed(
                    "endpoint",
                    url,
                    "a URL starting with http:// or https://",
                ));
            }
            if crate::error::redact_credentials(url) != *url {
                return Err(Error::Config(format!(
                    "the endpoint {} has credentials in it, which s3vfs does not use: give the \
                     endpoint as http(s)://host:port and the keys through AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY (or a profile)",
                    crate::error::redact_credentials(url)
                )));
            }
        }
        if let Some(level) = env("S3VFS_LOG") {
            if crate::logging::parse(&level).is_none() {
                return Err(Error::Config(format!(
                    "S3VFS_LOG={level:?} is not a log level: use one of {} (default warn)",
                    crate::logging::LEVELS
                )));
            }
        }
        let idle_cache_size =
            size_variable(&env, "S3VFS_IDLE_CACHE_SIZE", DEFAULT_IDLE_CACHE_SIZE)?;
        let cache_dir = cache_dir
            .or_else(|| env("S3VFS_CACHE_DIR"))
            .filter(|dir| !dir.is_empty());
        let disk_cache_size = match disk_cache_size {
            Some(bytes) => bytes,
            None => size_variable(&env, "S3VFS_DISK_CACHE_SIZE", DEFAULT_DISK_CACHE_SIZE)?,
        };
        let disk_cache = cache_dir.map(|dir| (std::path::PathBuf::from(dir), disk_cache_size));
        // Custom servers (MinIO, moto, Garage, Ceph) want path-style addressing.
        let path_style = path_style.or(endpoint_url.is_some().then_some(true));
        Ok(Config {
            location: Location { bucket, prefix },
            endpoint: Endpoint {
                url: endpoint_url,
                region,
                path_style,
            },
            block_size,
            cache_size,
            staleness,
            layout,
            pin,
            gc_margin,
            idle_cache_size,
            disk_cache,
            single_writer,
            prefetch_size,
            interior_index,
            compression,
            encryption,
        })
    }

    /// The block size of a database: as given, else the layout's default.
    pub fn block_size_or_default(&self) -> BlockSize {
        self.block_size.unwrap_or(match self.layout {
            Layout::Versioned => BlockSize::DEFAULT,
            Layout::SqliteS3vfs => BlockSize::LEGACY_DEFAULT,
        })
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Splits a SQLite URI filename, `file:NAME?key=value&...`, into its path and parameters,
/// following SQLite's rules: an authority, if any, must be empty or `localhost`; `%XX`
/// escapes are decoded; a fragment is ignored.
pub fn split_uri(uri: &str) -> Result<(String, Vec<(String, String)>)> {
    let bad = |why: &str| {
        Error::Config(format!(
            "{uri:?} is not a database URI: {why} (expected file:NAME?bucket=BUCKET&...)"
        ))
    };
    let rest = uri
        .strip_prefix("file:")
        .ok_or_else(|| bad("it does not start with file:"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match path.strip_prefix("//") {
        Some(authority_and_path) => {
            let slash = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            let (authority, path) = authority_and_path.split_at(slash);
            if !authority.is_empty() && authority != "localhost" {
                return Err(bad("its authority must be empty or localhost"));
            }
            path
        }
        None => path,
    };
    let path = percent_decode(path).ok_or_else(|| bad("malformed %-escape in the name"))?;
    let mut parameters = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).ok_or_else(|| bad("malformed %-escape in a parameter"))?;
        let value =
            percent_decode(value).ok_or_else(|| bad("malformed %-escape in a parameter"))?;
        parameters.push((key, value));
    }
    Ok((path, parameters))
}

impl Config {
    /// The configuration a URI filename such as `file:shop.db?bucket=acme` names, as if it
    /// were opened with `vfs=s3vfs`.
    pub fn from_uri(uri: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let (path, parameters) = split_uri(uri)?;
        Config::parse(&path, &parameters, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn uri_parameters_win_over_environment() {
        let env = |name: &str| (name == "S3VFS_BUCKET").then(|| "from-env".to_string());
        let config = Config::parse(
            "/shop.db",
            &params(&[("bucket", "acme"), ("block_size", "4k")]),
            env,
        )
        .expect("valid");
        assert_eq!(config.location.bucket, "acme");
        assert_eq!(config.location.prefix, "shop.db");
        assert_eq!(config.block_size, BlockSize::new(4096));
        let config = Config::parse("shop.db", &[], env).expect("valid");
        assert_eq!(config.location.bucket, "from-env");
        assert_eq!(config.cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(config.prefetch_size, DEFAULT_PREFETCH_SIZE);
    }

    /// `pairs` after `bucket=b`, parsed without environment.
    fn with_bucket(pairs: &[(&str, &str)]) -> Result<Config> {
        let mut all = vec![("bucket", "b")];
        all.extend_from_slice(pairs);
        Config::parse("x", &params(&all), no_env)
    }

    #[test]
    fn a_key_in_the_environment_encrypts_unless_encryption_none() {
        const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let keyed = |name: &str| (name == "S3VFS_ENCRYPTION_KEY").then(|| KEY.to_string());
        let parse = |pairs: &[(&str, &str)], env: &dyn Fn(&str) -> Option<String>| {
            let mut all = vec![("bucket", "b")];
            all.extend_from_slice(pairs);
            Config::parse("x", &params(&all), env)
        };
        let encrypted = parse(&[], &keyed).expect("valid");
        let keys = encrypted.encryption.expect("keys");
        assert_eq!(keys.source(), "S3VFS_ENCRYPTION_KEY");
        assert!(!format!("{keys:?}").contains(&KEY[..12]));
        let plain = parse(&[("encryption", "none")], &keyed).expect("valid");
        assert_eq!(plain.encryption, None);
        assert_eq!(parse(&[], &no_env).expect("valid").encryption, None);
        let asked = parse(&[("encryption", "aes-256-gcm")], &keyed).expect("valid");
        assert!(asked.encryption.is_some());
        for (pairs, env, expected) in [
            (
                &[("encryption", "aes-256-gcm")][..],
                &no_env as &dyn Fn(&str) -> Option<String>,
                "needs a key",
            ),
            (&[("encryption", "aes")][..], &no_env, "none or aes-256-gcm"),
            (&[("layout", "sqlite-s3vfs")][..], &keyed, "encryption=none"),
        ] {
            let error = parse(pairs, env).expect_err("refused");
            assert!(error.to_string().contains(expected), "{error}");
        }
        let legacy = parse(
            &[("layout", "sqlite-s3vfs"), ("encryption", "none")],
            &keyed,
        );
        assert!(legacy.expect("valid").encryption.is_none());
        let bad = |name: &str| (name == "S3VFS_ENCRYPTION_KEY").then(|| KEY[1..].to_string());
        let error = parse(&[], &bad).expect_err("malformed key");
        assert!(!error.to_string().contains(&KEY[1..13]), "{error}");
    }

    #[test]
    fn errors_name_the_parameter() {
        for (name, value) in [
            ("blok_size", "1"),
            ("block_size", "1000"),
            ("cache_size", "lots"),
            ("prefetch_size", "some"),
            ("interior_index", "yes please"),
            ("endpoint", "localhost:9"),
        ] {
            let error = with_bucket(&[(name, value)]).expect_err("refused");
            assert!(error.to_string().contains(name), "{error}");
        }
        let off = with_bucket(&[("prefetch_size", "0")]).expect("0 turns prefetch off");
        assert_eq!(off.prefetch_size, 0);
        assert!(off.interior_index);
        let without = with_bucket(&[("interior_index", "0")]).expect("valid");
        assert!(!without.interior_index);
        let zstd = with_bucket(&[("compression", "zstd:9")]).expect("valid");
        assert_eq!(zstd.compression, Some(Codec::Zstd(9)));
        for (value, layout) in [("zstd:99", "versioned"), ("zstd", "sqlite-s3vfs")] {
            let error =
                with_bucket(&[("compression", value), ("layout", layout)]).expect_err("refused");
            assert!(error.to_string().contains("compression"), "{error}");
        }
        let error = Config::parse("x", &[], no_env).unwrap_err();
        assert!(error.to_string().contains("S3VFS_BUCKET"), "{error}");
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        let error =
            Config::parse("x", &params(&[("bucket", "a"), ("bucket", "b")]), no_env).unwrap_err();
        assert!(
            error.to_string().contains("bucket is given more than once"),
            "{error}"
        );
        // SQLite's own and a driver's parameters are theirs to judge.
        Config::parse(
            "x",
            &params(&[
                ("bucket", "a"),
                ("mode", "rw"),
                ("mode", "rwc"),
                ("_x", "1"),
                ("_x", "2"),
            ]),
            no_env,
        )
        .expect("valid");
    }

    #[test]
    fn durations_and_sizes_out_of_range_name_the_parameter() {
        for (name, value) in [
            ("staleness", "1e30s"),
            ("staleness", "2d"),
            ("staleness", "86401s"),
            ("staleness", "99999999999999999999999"),
            ("cache_size", "2048G"),
            ("cache_size", "99999999999999999999"),
            ("gc_margin", "0s"),
            ("gc_margin", "31d"),
            ("gc_margin", "999999999999999999w"),
        ] {
            let error = Config::parse("x", &params(&[("bucket", "b"), (name, value)]), no_env)
                .expect_err(value);
            let message = error.to_string();
            assert!(message.contains(name), "{message}");
            assert!(
                message.contains("out of range") || message.contains("malformed"),
                "{message}"
            );
        }
        let config = Config::parse(
            "x",
            &params(&[
                ("bucket", "b"),
                ("staleness", "1.5s"),
                ("cache_size", "1024G"),
            ]),
            no_env,
        )
        .expect("valid");
        assert_eq!(config.staleness, Duration::from_millis(1500));
        assert_eq!(config.cache_size, MAX_CACHE_SIZE);
    }

    #[test]
    fn cache_settings_come_from_the_uri_then_the_environment() {
        let env = |name: &str| match name {
            "S3VFS_CACHE_DIR" => Some("/var/cache/s3vfs".to_string()),
            "S3VFS_DISK_CACHE_SIZE" => Some("2G".to_string()),
            "S3VFS_IDLE_CACHE_SIZE" => Some("0".to_string()),
            _ => None,
        };
        let config = Config::parse("x", &params(&[("bucket", "b")]), env).expect("valid");
        assert_eq!(config.idle_cache_size, 0);
        assert_eq!(
            config.disk_cache,
            Some((std::path::PathBuf::from("/var/cache/s3vfs"), 2 << 30))
        );
        let config = Config::parse(
            "x",
            &params(&[
                ("bucket", "b"),
                ("cache_dir", "/tmp/c"),
                ("disk_cache_size", "64M"),
            ]),
            env,
        )
        .expect("valid");
        assert_eq!(
            config.disk_cache,
            Some((std::path::PathBuf::from("/tmp/c"), 64 << 20))
        );
        let config = Config::parse("x", &params(&[("bucket", "b")]), no_env).expect("valid");
        assert_eq!(config.disk_cache, None);
        assert_eq!(config.idle_cache_size, DEFAULT_IDLE_CACHE_SIZE);
        let loud = |name: &str| (name == "S3VFS_LOG").then(|| "verbose".to_string());
        let error = Config::parse("x", &params(&[("bucket", "b")]), loud).unwrap_err();
        assert!(
            error.to_string().contains("S3VFS_LOG") && error.to_string().contains("debug"),
            "{error}"
        );
        let bad = |name: &str| (name == "S3VFS_IDLE_CACHE_SIZE").then(|| "lots".to_string());
        let error = Config::parse("x", &params(&[("bucket", "b")]), bad).unwrap_err();
        assert!(
            error.to_string().contains("S3VFS_IDLE_CACHE_SIZE"),
            "{error}"
        );
        let error = Config::parse(
            "x",
            &params(&[("bucket", "b"), ("disk_cache_size", "2048G")]),
            no_env,
        )
        .unwrap_err();
        assert!(error.to_string().contains("disk_cache_size"), "{error}");
    }

    #[test]
    fn credentials_in_an_endpoint_are_refused_and_never_shown() {
        for endpoint in [
            "http://user:secret@127.0.0.1:9000",
            "ftp://user:secret@host",
        ] {
            let error = Config::parse(
                "x",
                &params(&[("bucket", "b"), ("endpoint", endpoint)]),
                no_env,
            )
            .unwrap_err();
            let message = error.to_string();
            assert!(!message.contains("secret"), "{message}");
            assert!(!message.contains("user"), "{message}");
            assert!(message.contains("endpoint"), "{message}");
        }
        let env = |name: &str| {
            (name == "AWS_ENDPOINT_URL").then(|| "http://key:secret@host:1".to_string())
        };
        let error = Config::parse("x", &params(&[("bucket", "b")]), env).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn sqlite_parameters_pass_through_and_endpoints_get_path_style() {
        let config = Config::parse(
            "db",
            &params(&[
                ("bucket", "b"),
                ("mode", "ro"),
                ("endpoint", "http://127.0.0.1:9000"),
            ]),
            no_env,
        )
        .expect("valid");
        assert_eq!(config.endpoint.path_style, Some(true));
        // Without an endpoint here, the one a profile may name decides (at connect).
        let config = Config::parse("db", &params(&[("bucket", "b")]), no_env).expect("valid");
        assert_eq!(config.endpoint.path_style, None);
    }

    #[test]
    fn layouts_parse_and_an_unknown_one_lists_the_known() {
        let config = Config::parse("/x.db", &params(&[("bucket", "b")]), no_env).expect("valid");
        assert_eq!(config.layout, Layout::Versioned);
        assert_eq!(config.location.prefix, "x.db");
        let config = Config::parse(
            "/x.db",
            &params(&[("bucket", "b"), ("layout", "sqlite-s3vfs")]),
            no_env,
        )
        .expect("valid");
        assert_eq!(config.layout, Layout::SqliteS3vfs);
        assert_eq!(
            config.location.prefix, "/x.db",
            "kept exactly, as the package keys it"
        );
        assert_eq!(config.block_size_or_default().bytes(), 4096);
        let explicit = Config::parse(
            "x.db",
            &params(&[("bucket", "b"), ("layout", "versioned")]),
            no_env,
        )
        .expect("valid");
        assert_eq!(explicit.block_size_or_default().bytes(), 262144);
        let error = Config::parse("x", &params(&[("bucket", "b"), ("layout", "flat")]), no_env)
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("versioned, sqlite-s3vfs"), "{message}");
        assert_eq!(
            error.sqlite_code(crate::error::Operation::Open),
            crate::error::code::CANTOPEN
        );
    }

    #[test]
    fn units_parse() {
        assert_eq!(parse_bytes("64k"), Some(65536));
        assert_eq!(parse_bytes("16MiB"), Some(16 << 20));
        assert_eq!(parse_bytes("12q"), None);
    }

    #[test]
    fn uris_split_like_sqlite_splits_them() {
        let (path, parameters) =
            split_uri("file:dir/shop%20x.db?bucket=acme&block_size=4k&mode=ro#frag").expect("ok");
        assert_eq!(path, "dir/shop x.db");
        assert_eq!(
            parameters,
            params(&[("bucket", "acme"), ("block_size", "4k"), ("mode", "ro")])
        );
        let (path, _) = split_uri("file://localhost/shop.db").expect("ok");
        assert_eq!(path, "/shop.db");
        let (path, parameters) = split_uri("file:///shop.db").expect("ok");
        assert_eq!((path.as_str(), parameters.len()), ("/shop.db", 0));
        assert!(split_uri("shop.db?bucket=acme").is_err());
        assert!(split_uri("file://example.com/shop.db").is_err());
        assert!(split_uri("file:shop.db?bucket=%zz").is_err());
        let config = Config::from_uri("file:/shop.db?bucket=acme", no_env).expect("valid");
        assert_eq!(config.location.prefix, "shop.db");
        let config = Config::from_uri(
            "file:shop.db?bucket=acme&endpoint=http%3A%2F%2F127.0.0.1%3A9000",
            no_env,
        )
        .expect("valid");
        assert_eq!(
            config.endpoint.url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(Config::from_uri("file:shop.db?colour=red&bucket=b", no_env).is_err());
        assert!(Config::from_uri("file:shop.db?_busy_timeout=5000&bucket=b", no_env).is_ok());
    }
}
