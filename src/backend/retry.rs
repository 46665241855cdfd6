//! Retries transient failures with jittered exponential backoff, within a time budget.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, BackendErrorKind, BackendResult, ObjectInfo, PutOutcome};

/// How long and how often to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// No new attempt starts after this much time since the first.
    pub budget: Duration,
    /// The first backoff; each next one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(20),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

pub struct RetryingBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl RetryingBackend {
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> RetryingBackend {
        RetryingBackend { inner, policy }
    }

    async fn retry<T, F, Fut>(&self, mut attempt: F) -> BackendResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        let started = Instant::now();
        let mut backoff = self.policy.first_backoff;
        loop {
            match attempt().await {
                Err(error) if error.kind == BackendErrorKind::Transient => {
                    if started.elapsed() + backoff > self.policy.budget {
                        return Err(error);
                    }
                    // Full jitter keeps many clients that failed together from retrying together.
                    let jitter = (crate::storage::TxId::random().0 % 1000) as u32;
                    tokio::time::sleep(backoff.mul_f64(0.5) + backoff.mul_f64(0.5) * jitter / 1000)
                        .await;
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Backend for RetryingBackend {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        self.retry(|| self.inner.get(key)).await
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        self.retry(|| self.inner.put(key, body.clone())).await
    }

    /// A retry after a lost reply sees 412 for its own object: the caller must check whose
    /// record exists (see `storage::log::commit`).
    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        self.retry(|| self.inner.put_if_absent(key, body.clone()))
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        self.retry(|| self.inner.list(prefix, start_after)).await
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        self.retry(|| self.inner.delete(keys)).await
    }
}
