//! An in-memory object store with S3's semantics, for unit tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{Backend, BackendResult, ObjectInfo, PutOutcome};

/// The hex MD5 of `body`: the entity tag S3 gives a single-part PUT.
fn md5_hex(body: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[derive(Clone)]
struct Stored {
    body: Bytes,
    modified_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

impl Stored {
    fn new(body: Bytes) -> Stored {
        Stored {
            body,
            modified_ms: now_ms(),
        }
    }
}

#[derive(Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Stored>>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().keys().cloned().collect()
    }

    pub fn object(&self, key: &str) -> Option<Bytes> {
        self.objects
            .lock()
            .get(key)
            .map(|stored| stored.body.clone())
    }

    pub fn set_object(&self, key: &str, body: Bytes) {
        self.objects
            .lock()
            .insert(key.to_string(), Stored::new(body));
    }

    /// Moves an object's modification time `by_ms` into the past.
    pub fn age_object(&self, key: &str, by_ms: u64) {
        if let Some(stored) = self.objects.lock().get_mut(key) {
            stored.modified_ms = stored.modified_ms.saturating_sub(by_ms);
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn bucket(&self) -> &str {
        "memory"
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        Ok(self.object(key))
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        self.set_object(key, body);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        let mut objects = self.objects.lock();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_string(), Stored::new(body));
        Ok(PutOutcome::Created)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        let objects = self.objects.lock();
        Ok(objects
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .filter(|(key, _)| start_after.is_none_or(|after| key.as_str() > after))
            .map(|(key, stored)| ObjectInfo {
                key: key.clone(),
                size: stored.body.len() as u64,
                modified_ms: stored.modified_ms,
                etag: Some(md5_hex(&stored.body)),
            })
            .collect())
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        let mut objects = self.objects.lock();
        for key in keys {
            objects.remove(key);
        }
        Ok(())
    }
}
