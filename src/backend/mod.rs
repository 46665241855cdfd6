//! The object-store trait s3vfs is written against, and its layers: S3 (aws-sdk-s3), an
//! in-memory store for unit tests, retries with backoff, request metrics, fault injection and
//! client-side encryption.
//!
//! The trait is async and object-level; it knows nothing of SQLite.

pub mod faulty;
pub mod memory;
pub mod metered;
pub mod retry;
pub mod s3;
pub mod sealed;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// How a failed request should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Worth retrying: 5xx, throttling, timeouts, connection resets.
    Transient,
    /// The bucket does not exist.
    NoSuchBucket,
    /// Credentials missing, wrong, or without permission.
    AccessDenied,
    /// No HTTP reply because the server cannot be reached at all: the connection was refused,
    /// the host name does not resolve, or TLS failed. Retried briefly until the client has
    /// reached the server once (a wrong endpoint should fail within seconds), and like a
    /// transient failure after that (a server restarting).
    Unreachable,
    /// Anything else; retrying will not help.
    Permanent,
    /// The object came back, but its encryption does not check out: changed at rest or in
    /// transit, or moved from another key (see [`sealed`]).
    Damaged,
    /// The object is not encrypted with the database's key, or not encrypted at all while a
    /// key is set (see [`sealed`]).
    Key,
}

/// A failed object request, with what a person needs to act on it.
#[derive(Clone, Debug)]
pub struct BackendError {
    pub kind: BackendErrorKind,
    /// The request: GET, PUT, PUT If-None-Match, LIST, DELETE.
    pub operation: &'static str,
    pub bucket: String,
    pub key: String,
    pub status: Option<u16>,
    pub detail: String,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} s3://{}/{} failed",
            self.operation, self.bucket, self.key
        )?;
        if let Some(status) = self.status {
            write!(f, " with HTTP {status}")?;
        }
        write!(f, ": {}", self.detail)?;
        match self.kind {
            BackendErrorKind::NoSuchBucket => write!(
                f,
                " (bucket '{}' does not exist: create it, or fix the bucket parameter or S3VFS_BUCKET)",
                self.bucket
            ),
            BackendErrorKind::AccessDenied => write!(
                f,
                " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile, and the bucket's permissions)"
            ),
            BackendErrorKind::Transient => write!(f, " (gave up after retries)"),
            BackendErrorKind::Unreachable
            | BackendErrorKind::Permanent
            | BackendErrorKind::Damaged
            | BackendErrorKind::Key => Ok(()),
        }
    }
}

/// The outcome of a conditional create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The key already existed (HTTP 412): nothing was written.
    AlreadyExists,
}

pub type BackendResult<T> = Result<T, BackendError>;

/// One object as a LIST reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch, by the store's clock.
    pub modified_ms: u64,
    /// The store's entity tag, without quotes (the hex MD5 of the body for a single-part PUT on
    /// S3 and most compatible stores), when the store reports one.
    pub etag: Option<String>,
}

/// Whether the store honours `If-None-Match: *`: creates `key` twice with it, expecting the
/// second to be refused, then deletes it. Three requests.
pub async fn honours_if_none_match(backend: &Arc<dyn Backend>, key: &str) -> BackendResult<bool> {
    let body = Bytes::from_static(b"s3vfs: a check that the server refuses a second create");
    let first = backend.put_if_absent(key, body.clone()).await?;
    let second = backend.put_if_absent(key, body).await?;
    backend.delete(&[key.to_string()]).await?;
    Ok(first == PutOutcome::Created && second == PutOutcome::AlreadyExists)
}

/// An object store: one bucket, flat keys.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The bucket's name, for messages.
    fn bucket(&self) -> &str;
    /// How many attempts per request the store's configuration asks for, when it asks
    /// (`AWS_MAX_ATTEMPTS`); the retry layer honours it.
    fn max_attempts(&self) -> Option<u32> {
        None
    }
    /// The whole object, or `None` when the key does not exist.
    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>>;
    /// Creates or replaces an object.
    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()>;
    /// Creates an object only if the key does not exist (`If-None-Match: *`), atomically.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome>;
    /// Every object under `prefix`, in ascending key order, after `start_after` when given.
    async fn list(&self, prefix: &str, start_after: Option<&str>)
        -> BackendResult<Vec<ObjectInfo>>;
    /// Deletes keys; a key that does not exist is not an error.
    async fn delete(&self, keys: &[String]) -> BackendResult<()>;
}

/// The stack every database's requests go through, from the top: encryption (when `sealer`
/// is given), so that a retried PUT resends the same sealed bytes; retries with backoff,
/// bounded by `retry`; metrics, under the retries, so that every attempt is counted (into each
/// of `metrics`); then `origin`, the store itself.
pub fn stack(
    origin: Arc<dyn Backend>,
    metrics: Vec<Arc<metered::Metrics>>,
    retry: retry::RetryPolicy,
    sealer: Option<Arc<crate::crypto::Sealer>>,
) -> Arc<dyn Backend> {
    let metered: Arc<dyn Backend> = Arc::new(metered::MeteredBackend::new(origin, metrics));
    let retrying: Arc<dyn Backend> = Arc::new(retry::RetryingBackend::new(metered, retry));
    match sealer {
        Some(sealer) => Arc::new(sealed::SealedBackend::new(retrying, sealer)),
        None => retrying,
    }
}

/// Runs `tasks` with at most `limit` in flight, returning their results in order, or the
/// first error.
pub async fn run_bounded<T, E, F>(limit: usize, tasks: Vec<F>) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut handles = Vec::with_capacity(tasks.len());
    for task in tasks {
        let semaphore = semaphore.clone();
        handles.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            task.await
        }));
    }
    let mut results = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(value)) => results.push(value),
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(results),
    }
}
