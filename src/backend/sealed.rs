//! The encryption layer of an encrypted database's store: every object it PUTs is sealed with
//! the database's key, bound to the object's key, and every object it GETs must open with it
//! (see [`crate::crypto`]). It sits above retries and metrics, so a retried PUT resends the
//! same sealed bytes and the counters show what crosses the network.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, BackendError, BackendErrorKind, BackendResult, ObjectInfo, PutOutcome};
use crate::crypto::{OpenError, Sealer};

/// At most this many GETs of one object that does not open as sealed with the database's key.
const MAX_ATTEMPTS: usize = 8;

pub struct SealedBackend {
    inner: Arc<dyn Backend>,
    sealer: Arc<Sealer>,
}

impl SealedBackend {
    pub fn new(inner: Arc<dyn Backend>, sealer: Arc<Sealer>) -> SealedBackend {
        SealedBackend { inner, sealer }
    }
}

#[async_trait]
impl Backend for SealedBackend {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        let mut attempt = 1;
        let mut previous: Option<Bytes> = None;
        loop {
            let Some(stored) = self.inner.get(key).await? else {
                return Ok(None);
            };
            let error = match self.sealer.open(key, &stored) {
                Ok(content) => return Ok(Some(content)),
                Err(error) => error,
            };
            let kind = match error {
                // Changed at rest or in transit: verified reads fetch it again.
                OpenError::Damaged(_) => BackendErrorKind::Damaged,
                OpenError::NotSealed | OpenError::OtherKey(_) => BackendErrorKind::Key,
            };
            // A line damaged in transit can look unsealed: that is reported only when the
            // store sends the same bytes twice.
            let again = kind == BackendErrorKind::Key
                && attempt < MAX_ATTEMPTS
                && previous.as_ref() != Some(&stored);
            if again {
                attempt += 1;
                previous = Some(stored);
                continue;
            }
            return Err(BackendError {
                kind,
                operation: "GET",
                bucket: self.inner.bucket().to_string(),
                key: key.to_string(),
                status: None,
                detail: self.sealer.explain(&error),
            });
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        let sealed = self.sealer.seal(key, &body);
        self.inner.put(key, sealed).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        let sealed = self.sealer.seal(key, &body);
        self.inner.put_if_absent(key, sealed).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        self.inner.delete(keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::faulty::{Fault, FaultyBackend};
    use crate::backend::memory::MemoryBackend;
    use crate::crypto::{Key, Keyring};

    const KEY: &str = "5f3a0c1e9b7d2f4a6c8e0a1b3c5d7e9f00112233445566778899aabbccddeeff";

    #[tokio::test]
    async fn objects_are_sealed_at_rest_and_opened_on_the_way_back() {
        let memory = Arc::new(MemoryBackend::new());
        let key = Key::from_hex(KEY).expect("key");
        let ring = Keyring::new(vec![key.clone()], "S3VFS_ENCRYPTION_KEY").expect("ring");
        let sealed = SealedBackend::new(memory.clone(), Arc::new(Sealer::new(ring.clone())));
        sealed
            .put("db/log/1", Bytes::from_static(b"secret record"))
            .await
            .expect("put");
        let at_rest = memory.get("db/log/1").await.expect("get").expect("stored");
        assert!(!at_rest.windows(6).any(|window| window == b"secret"));
        let back = sealed.get("db/log/1").await.expect("get").expect("found");
        assert_eq!(&back[..], b"secret record");
        assert_eq!(sealed.get("db/log/2").await.expect("get"), None);

        // An object moved to another key does not open, and is reported as damaged.
        memory.put("db/log/2", at_rest).await.expect("put");
        let moved = sealed.get("db/log/2").await.expect_err("moved");
        assert_eq!(moved.kind, BackendErrorKind::Damaged);
        // A plain object in its place is refused as not encrypted.
        memory
            .put("db/log/3", Bytes::from_static(b"{\"format\":2}\n"))
            .await
            .expect("put");
        let plain = sealed.get("db/log/3").await.expect_err("plain");
        assert_eq!(plain.kind, BackendErrorKind::Key);
        assert!(plain.detail.contains("encryption=none"), "{}", plain.detail);
        // Another process with the same key reads what this one wrote.
        let other = SealedBackend::new(memory.clone(), Arc::new(Sealer::new(ring)));
        let back = other.get("db/log/1").await.expect("get").expect("found");
        assert_eq!(&back[..], b"secret record");
    }

    #[tokio::test]
    async fn a_line_damaged_in_transit_is_fetched_again_not_taken_for_another_key() {
        let memory = Arc::new(MemoryBackend::new());
        let ring = Keyring::new(
            vec![Key::from_hex(KEY).expect("key")],
            "S3VFS_ENCRYPTION_KEY",
        );
        let sealer = Arc::new(Sealer::new(ring.expect("ring")));
        SealedBackend::new(memory.clone(), sealer.clone())
            .put(
                "db/head",
                Bytes::from_static(b"{\"format\":2,\"version\":7}"),
            )
            .await
            .expect("put");
        // Bytes 2 to 4 are in "format": the line no longer parses, so the object looks
        // unsealed, and is fetched again until it opens.
        let faulty = Arc::new(FaultyBackend::new(memory.clone()));
        for at in 2..5 {
            faulty.inject("GET", Fault::FlipByteAt(at));
        }
        let sealed = SealedBackend::new(faulty.clone(), sealer.clone());
        let body = sealed
            .get("db/head")
            .await
            .expect("fetched again")
            .expect("found");
        assert_eq!(&body[..], b"{\"format\":2,\"version\":7}");
        // The same damage twice is what the store holds.
        faulty.inject("GET", Fault::FlipByteAt(2));
        faulty.inject("GET", Fault::FlipByteAt(2));
        let error = sealed
            .get("db/head")
            .await
            .expect_err("the same bytes twice");
        assert_eq!(error.kind, BackendErrorKind::Key, "{error:?}");
        // Past the line, the checksum calls it damage (which verified reads fetch again).
        faulty.inject("GET", Fault::FlipByteAt(70));
        let error = sealed.get("db/head").await.expect_err("damaged");
        assert_eq!(error.kind, BackendErrorKind::Damaged, "{error:?}");
    }
}
