//! Counts requests by kind and bytes moved, for `s3vfs_stats()` and the benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use super::{Backend, BackendResult, ObjectInfo, PutOutcome};

/// Request and byte counters; every attempt counts, retries included.
#[derive(Default, Debug)]
pub struct Metrics {
    pub get: AtomicU64,
    pub put: AtomicU64,
    pub put_if_absent: AtomicU64,
    pub list: AtomicU64,
    pub delete: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// A copy of [`Metrics`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    pub get: u64,
    pub put: u64,
    pub put_if_absent: u64,
    pub list: u64,
    pub delete: u64,
    pub errors: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl MetricsSnapshot {
    pub fn requests(&self) -> u64 {
        self.get + self.put + self.put_if_absent + self.list + self.delete
    }
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            get: read(&self.get),
            put: read(&self.put),
            put_if_absent: read(&self.put_if_absent),
            list: read(&self.list),
            delete: read(&self.delete),
            errors: read(&self.errors),
            bytes_up: read(&self.bytes_up),
            bytes_down: read(&self.bytes_down),
        }
    }
}

/// The counters of the whole process, over every database.
pub fn process_metrics() -> &'static Arc<Metrics> {
    static METRICS: std::sync::OnceLock<Arc<Metrics>> = std::sync::OnceLock::new();
    METRICS.get_or_init(Default::default)
}

pub struct MeteredBackend {
    inner: Arc<dyn Backend>,
    /// Counted into each: the database's own counters and the process's.
    metrics: Vec<Arc<Metrics>>,
}

impl MeteredBackend {
    pub fn new(inner: Arc<dyn Backend>, metrics: Vec<Arc<Metrics>>) -> MeteredBackend {
        MeteredBackend { inner, metrics }
    }

    fn count<T>(&self, counter: fn(&Metrics) -> &AtomicU64, result: &BackendResult<T>) {
        for metrics in &self.metrics {
            counter(metrics).fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn add_bytes(&self, counter: fn(&Metrics) -> &AtomicU64, bytes: usize) {
        for metrics in &self.metrics {
            counter(metrics).fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl Backend for MeteredBackend {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        let result = self.inner.get(key).await;
        self.count(|metrics| &metrics.get, &result);
        if let Ok(Some(body)) = &result {
            self.add_bytes(|metrics| &metrics.bytes_down, body.len());
        }
        result
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        let len = body.len();
        let result = self.inner.put(key, body).await;
        self.count(|metrics| &metrics.put, &result);
        self.add_bytes(|metrics| &metrics.bytes_up, len);
        result
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        let len = body.len();
        let result = self.inner.put_if_absent(key, body).await;
        self.count(|metrics| &metrics.put_if_absent, &result);
        self.add_bytes(|metrics| &metrics.bytes_up, len);
        result
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        let result = self.inner.list(prefix, start_after).await;
        self.count(|metrics| &metrics.list, &result);
        result
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        let result = self.inner.delete(keys).await;
        self.count(|metrics| &metrics.delete, &result);
        result
    }
}
