//! Retries transient failures with jittered exponential backoff, within a time budget.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The budget for an unreachable server before any request of this client succeeded.
    pub unreachable_budget: Duration,
    /// The first backoff; each next one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// At most this many attempts per request (`AWS_MAX_ATTEMPTS`), when configured; else only
    /// the budgets bound them.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(20),
            unreachable_budget: Duration::from_secs(2),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_attempts: None,
        }
    }
}

pub struct RetryingBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
    /// Whether a request of this client has succeeded: the server was reachable once.
    reached: AtomicBool,
}

impl RetryingBackend {
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> RetryingBackend {
        RetryingBackend {
            inner,
            policy,
            reached: AtomicBool::new(false),
        }
    }

    async fn retry<T, F, Fut>(&self, operation: &str, key: &str, mut attempt: F) -> BackendResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        let started = Instant::now();
        let mut backoff = self.policy.first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let sent = Instant::now();
            let outcome = attempt().await;
            if log::log_enabled!(log::Level::Debug) {
                let status = match &outcome {
                    Ok(_) => "ok".to_string(),
                    Err(error) => error
                        .status
                        .map_or_else(|| format!("{:?}", error.kind), |status| status.to_string()),
                };
                log::debug!(
                    "s3vfs: {operation} s3://{}/{key} {status} {} ms (attempt {attempts})",
                    self.inner.bucket(),
                    sent.elapsed().as_millis()
                );
            }
            let budget = match &outcome {
                Ok(_) => {
                    self.reached.store(true, Ordering::Relaxed);
                    None
                }
                Err(error) => match error.kind {
                    BackendErrorKind::Transient => Some(self.policy.budget),
                    BackendErrorKind::Unreachable if self.reached.load(Ordering::Relaxed) => {
                        Some(self.policy.budget)
                    }
                    BackendErrorKind::Unreachable => Some(self.policy.unreachable_budget),
                    _ => None,
                },
            };
            match (outcome, budget) {
                (Err(error), Some(budget)) => {
                    let spent = self.policy.max_attempts.is_some_and(|max| attempts >= max);
                    if spent || started.elapsed() + backoff > budget {
                        return Err(error);
                    }
                    // Full jitter keeps many clients that failed together from retrying together.
                    let jitter = (crate::units::TxId::random().0 % 1000) as u32;
                    tokio::time::sleep(backoff.mul_f64(0.5) + backoff.mul_f64(0.5) * jitter / 1000)
                        .await;
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                }
                (outcome, _) => return outcome,
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
        self.retry("GET", key, || self.inner.get(key)).await
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        self.retry("PUT", key, || self.inner.put(key, body.clone()))
            .await
    }

    /// A retry after a lost reply sees 412 for its own object: the caller must check whose
    /// record exists (see `storage::log::commit`).
    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        self.retry("PUT If-None-Match", key, || {
            self.inner.put_if_absent(key, body.clone())
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        self.retry("LIST", prefix, || self.inner.list(prefix, start_after))
            .await
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        let first = keys.first().map_or("", String::as_str);
        self.retry("DELETE", first, || self.inner.delete(keys))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::faulty::{Fault, FaultyBackend};
    use crate::backend::memory::MemoryBackend;
    use crate::runtime::block_on;

    #[test]
    fn an_unreachable_server_fails_fast_until_it_was_reached_once() {
        let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::new())));
        let policy = RetryPolicy {
            budget: Duration::from_secs(20),
            unreachable_budget: Duration::from_millis(300),
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_attempts: None,
        };
        let backend = Arc::new(RetryingBackend::new(faulty.clone(), policy));
        for _ in 0..1000 {
            faulty.inject("GET", Fault::FailUnreachable);
        }
        let started = Instant::now();
        let outcome = {
            let backend = backend.clone();
            block_on(async move { Ok(backend.get("k").await) })
        }
        .expect("runs");
        let error = outcome.expect_err("unreachable");
        assert_eq!(error.kind, BackendErrorKind::Unreachable);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Once a request succeeded, a refused connection is a server restarting: retried
        // like any transient failure, and it comes back.
        let clean = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::new())));
        let backend = Arc::new(RetryingBackend::new(clean.clone(), policy));
        let first = backend.clone();
        block_on(async move { Ok(first.put("k", Bytes::from_static(b"v")).await) })
            .expect("runs")
            .expect("reached");
        for _ in 0..20 {
            clean.inject("GET", Fault::FailUnreachable);
        }
        let again = backend.clone();
        let found = block_on(async move { Ok(again.get("k").await) })
            .expect("runs")
            .expect("retried past the short budget");
        assert_eq!(found.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn configured_attempts_bound_the_retries() {
        use crate::backend::metered::{MeteredBackend, Metrics};
        let faulty = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::new())));
        for _ in 0..5 {
            faulty.inject("GET", Fault::FailTransient);
        }
        let metrics = Arc::new(Metrics::default());
        let metered = Arc::new(MeteredBackend::new(faulty, vec![metrics.clone()]));
        let policy = RetryPolicy {
            first_backoff: Duration::from_millis(1),
            max_attempts: Some(2),
            ..RetryPolicy::default()
        };
        let backend = Arc::new(RetryingBackend::new(metered, policy));
        let outcome = block_on(async move { Ok(backend.get("k").await) }).expect("runs");
        assert!(outcome.is_err(), "both attempts failed");
        assert_eq!(metrics.snapshot().get, 2, "{:?}", metrics.snapshot());
    }
}
