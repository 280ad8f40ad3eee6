//! [`LoadGate`]: one load for any number of callers that found a script or
//! library missing at the same moment.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// Counts loads in generations. A caller notes the generation before its
/// call; when the call reports the script missing, it asks for a load
/// *of that generation*. The first asker loads; everyone who noted the same
/// generation then finds it advanced and skips, so a burst of `NOSCRIPT`
/// replies costs one `SCRIPT LOAD`. A failed load advances the generation
/// too, so a dead server costs one timeout per burst, not one per caller.
#[derive(Debug, Default)]
pub(crate) struct LoadGate {
    generation: AtomicU64,
    loads: AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

impl LoadGate {
    /// The generation to note before a call.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Successful loads so far.
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Runs `load` unless another caller loaded since generation `seen`.
    pub(crate) async fn load_once<F>(&self, seen: u64, load: F) -> Result<(), Error>
    where
        F: Future<Output = Result<(), Error>>,
    {
        let _one_at_a_time = self.lock.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let loaded = load.await;
        if loaded.is_ok() {
            self.loads.fetch_add(1, Ordering::Relaxed);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        loaded
    }
}
