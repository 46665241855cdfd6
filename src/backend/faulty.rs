//! A fault-injecting layer: fails chosen requests, or performs a request and then loses its
//! reply, so tests can check retries and the lost-reply rule of commits.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{Backend, BackendError, BackendErrorKind, BackendResult, ObjectInfo, PutOutcome};

/// What to do to the next matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail with a transient error before reaching the store.
    FailTransient,
    /// Fail as if the server could not be reached (connection refused).
    FailUnreachable,
    /// Reach the store, then report a transient error as if the reply was lost.
    LoseReply,
    /// A conditional PUT answered 412 (the key exists) without reaching the store, as a
    /// misbehaving server might.
    RefuseCondition,
    /// A GET whose body arrives with one byte changed, as a faulty network might deliver it.
    FlipByte,
    /// The same, with the byte at this offset changed.
    FlipByteAt(usize),
}

pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    /// Pending faults: (operation name, fault), taken in order by matching requests.
    faults: Mutex<Vec<(&'static str, Fault)>>,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>) -> FaultyBackend {
        FaultyBackend {
            inner,
            faults: Mutex::new(Vec::new()),
        }
    }

    /// Injects `fault` into the next request of `operation` ("GET", "PUT", "PUT If-None-Match", "LIST").
    pub fn inject(&self, operation: &'static str, fault: Fault) {
        self.faults.lock().push((operation, fault));
    }

    fn take(&self, operation: &'static str) -> Option<Fault> {
        let mut faults = self.faults.lock();
        let position = faults.iter().position(|(name, _)| *name == operation)?;
        Some(faults.remove(position).1)
    }

    fn error(&self, operation: &'static str, key: &str) -> BackendError {
        BackendError {
            kind: BackendErrorKind::Transient,
            operation,
            bucket: self.inner.bucket().to_string(),
            key: key.to_string(),
            status: Some(503),
            detail: "injected fault".into(),
        }
    }

    async fn around<T>(
        &self,
        operation: &'static str,
        key: &str,
        request: impl std::future::Future<Output = BackendResult<T>>,
    ) -> BackendResult<T> {
        match self.take(operation) {
            Some(Fault::FailTransient) => Err(self.error(operation, key)),
            Some(Fault::FailUnreachable) => Err(BackendError {
                kind: BackendErrorKind::Unreachable,
                ..self.error(operation, key)
            }),
            Some(Fault::LoseReply) => {
                request.await?;
                Err(self.error(operation, key))
            }
            Some(Fault::RefuseCondition | Fault::FlipByte | Fault::FlipByteAt(_)) | None => {
                request.await
            }
        }
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        let flip = match self.faults.lock().first() {
            Some(("GET", Fault::FlipByte)) => Some(None),
            Some(("GET", Fault::FlipByteAt(at))) => Some(Some(*at)),
            _ => None,
        };
        if let Some(at) = flip {
            self.take("GET");
            let body = self.inner.get(key).await?;
            return Ok(body.map(|body| {
                let mut changed = body.to_vec();
                if let Some(byte) = changed.get_mut(at.unwrap_or(body.len() / 2)) {
                    *byte ^= 0x20;
                }
                Bytes::from(changed)
            }));
        }
        self.around("GET", key, self.inner.get(key)).await
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        self.around("PUT", key, self.inner.put(key, body)).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        let operation = "PUT If-None-Match";
        if self.faults.lock().first() == Some(&(operation, Fault::RefuseCondition)) {
            self.take(operation);
            return Ok(PutOutcome::AlreadyExists);
        }
        self.around(
            "PUT If-None-Match",
            key,
            self.inner.put_if_absent(key, body),
        )
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        self.around("LIST", prefix, self.inner.list(prefix, start_after))
            .await
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        self.around("DELETE", "", self.inner.delete(keys)).await
    }
}
