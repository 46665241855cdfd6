//! An in-memory object store with S3's semantics, for unit tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{Backend, BackendResult, PutOutcome};

#[derive(Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().keys().cloned().collect()
    }

    pub fn object(&self, key: &str) -> Option<Bytes> {
        self.objects.lock().get(key).cloned()
    }

    pub fn set_object(&self, key: &str, body: Bytes) {
        self.objects.lock().insert(key.to_string(), body);
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn bucket(&self) -> &str {
        "memory"
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        Ok(self.objects.lock().get(key).cloned())
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        self.objects.lock().insert(key.to_string(), body);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        let mut objects = self.objects.lock();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_string(), body);
        Ok(PutOutcome::Created)
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> BackendResult<Vec<String>> {
        let objects = self.objects.lock();
        Ok(objects
            .keys()
            .filter(|key| key.starts_with(prefix))
            .filter(|key| start_after.is_none_or(|after| key.as_str() > after))
            .cloned()
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
