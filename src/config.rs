//! Typed configuration of one database, from URI parameters, then environment variables,
//! then defaults; validated once, when the database file is opened.

use std::time::Duration;

use crate::backend::s3::Endpoint;
use crate::error::{Error, Result};
use crate::storage::format::MIN_GC_MARGIN_MS;
use crate::storage::history::{parse_time, Pin};
use crate::storage::{BlockSize, Location, Version};

/// The default byte budget of the block cache of one database.
pub const DEFAULT_CACHE_SIZE: u64 = 64 * 1024 * 1024;

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
    "version",
    "as_of",
    "gc_margin",
];

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
    /// `version=` or `as_of=`: the connection reads this past version, read-only.
    pub pin: Option<Pin>,
    /// `gc_margin=`: the collector's safety margin of a database being created.
    pub gc_margin: Option<Duration>,
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

/// Parses `0`, `250ms`, `2s` (a bare number is milliseconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(seconds) = text.strip_suffix("ms") {
        return seconds.parse().ok().map(Duration::from_millis);
    }
    if let Some(seconds) = text.strip_suffix('s') {
        return seconds
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
    }
    text.parse().ok().map(Duration::from_millis)
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
        "URI parameter {name}={value:?} is malformed: expected {expected}"
    ))
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
        let mut block_size = None;
        let mut cache_size = DEFAULT_CACHE_SIZE;
        let mut staleness = Duration::ZERO;
        let mut pin = None;
        let mut gc_margin = None;
        for (name, value) in parameters {
            match name.as_str() {
                "bucket" => bucket = Some(value.clone()),
                "endpoint" => endpoint_url = Some(value.clone()),
                "region" => region = Some(value.clone()),
                "path_style" => {
                    path_style =
                        Some(parse_bool(value).ok_or_else(|| malformed(name, value, "0 or 1"))?)
                }
                "block_size" => {
                    let bytes = parse_bytes(value)
                        .ok_or_else(|| malformed(name, value, "a size such as 65536 or 64k"))?;
                    block_size = Some(BlockSize::new(bytes).ok_or_else(|| {
                        malformed(name, value, "a power of two from 512 bytes to 16 MiB")
                    })?);
                }
                "cache_size" => {
                    cache_size = parse_bytes(value)
                        .ok_or_else(|| malformed(name, value, "a size such as 67108864 or 64M"))?;
                }
                "staleness" => {
                    staleness = parse_duration(value).ok_or_else(|| {
                        malformed(name, value, "a duration such as 0, 500ms or 2s")
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
                    let margin = crate::storage::gc::parse_span(value)
                        .filter(|margin| margin.as_millis() >= u128::from(MIN_GC_MARGIN_MS))
                        .ok_or_else(|| {
                            malformed(name, value, "a duration of at least 1s, such as 1h or 90s")
                        })?;
                    gc_margin = Some(margin);
                }
                other if SQLITE_PARAMETERS.contains(&other) => {}
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
        let prefix = path
            .trim_start_matches('/')
            .trim_end_matches('/')
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
        }
        // Custom servers (MinIO, moto, Garage, Ceph) want path-style addressing.
        let path_style = path_style.unwrap_or(endpoint_url.is_some());
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
            pin,
            gc_margin,
        })
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
    }

    #[test]
    fn errors_name_the_parameter() {
        let error = Config::parse("x", &params(&[("bucket", "b"), ("blok_size", "1")]), no_env)
            .unwrap_err();
        assert!(error.to_string().contains("blok_size"), "{error}");
        let error = Config::parse(
            "x",
            &params(&[("bucket", "b"), ("block_size", "1000")]),
            no_env,
        )
        .unwrap_err();
        assert!(error.to_string().contains("block_size"), "{error}");
        let error = Config::parse(
            "x",
            &params(&[("bucket", "b"), ("cache_size", "lots")]),
            no_env,
        )
        .unwrap_err();
        assert!(error.to_string().contains("cache_size"), "{error}");
        let error = Config::parse("x", &[], no_env).unwrap_err();
        assert!(error.to_string().contains("S3VFS_BUCKET"), "{error}");
        let error = Config::parse(
            "x",
            &params(&[("bucket", "b"), ("endpoint", "localhost:9")]),
            no_env,
        )
        .unwrap_err();
        assert!(error.to_string().contains("endpoint"), "{error}");
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
        assert!(config.endpoint.path_style);
        let config = Config::parse("db", &params(&[("bucket", "b")]), no_env).expect("valid");
        assert!(!config.endpoint.path_style);
    }

    #[test]
    fn units_parse() {
        assert_eq!(parse_bytes("64k"), Some(65536));
        assert_eq!(parse_bytes("16MiB"), Some(16 << 20));
        assert_eq!(parse_bytes("12q"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("soon"), None);
    }
}
