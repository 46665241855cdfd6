//! The tokio runtime of s3vfs and the one blocking bridge SQLite's synchronous callbacks use.
//!
//! The runtime is created on first use and again in a child process after `fork()` (the
//! parent's worker threads do not exist there). [`block_on`] hands the future to the runtime
//! and waits on a channel, so it works whether or not the calling thread is itself inside
//! another tokio runtime of the host program.

use std::future::Future;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};

struct Owned {
    pid: u32,
    runtime: Runtime,
}

fn slot() -> &'static Mutex<Option<Owned>> {
    static SLOT: OnceLock<Mutex<Option<Owned>>> = OnceLock::new();
    SLOT.get_or_init(|| Mutex::new(None))
}

/// The runtime of this process, created if this process has none yet.
pub fn handle() -> Result<Handle> {
    let mut slot = slot().lock();
    let pid = std::process::id();
    if let Some(owned) = slot.as_ref() {
        if owned.pid == pid {
            return Ok(owned.runtime.handle().clone());
        }
    }
    // After fork() the old runtime's threads are gone: dropping it would wait for them.
    if let Some(stale) = slot.take() {
        std::mem::forget(stale);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("s3vfs-io")
        .enable_all()
        .build()
        .map_err(|error| Error::Runtime(format!("cannot start the I/O runtime: {error}")))?;
    let handle = runtime.handle().clone();
    *slot = Some(Owned { pid, runtime });
    Ok(handle)
}

/// The process id the current runtime belongs to; state tied to a runtime (clients,
/// connections) is keyed by it.
pub fn generation() -> u32 {
    std::process::id()
}

/// Runs `future` on the s3vfs runtime and blocks the calling thread until it finishes.
pub fn block_on<F, T>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle()?.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver
        .recv()
        .map_err(|_| Error::Runtime("the I/O task ended without a result".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_returns_the_future_result() {
        assert_eq!(block_on(async { Ok(41 + 1) }).expect("runs"), 42);
    }

    #[test]
    fn bridge_works_inside_a_host_runtime() {
        let host = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("host runtime");
        let value = host
            .block_on(async { block_on(async { Ok(7) }) })
            .expect("runs");
        assert_eq!(value, 7);
    }
}
