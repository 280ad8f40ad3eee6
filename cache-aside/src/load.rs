//! [`Load`]: the bounds every step of the miss path puts on a caller's
//! loader, named once.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A loader: `FnOnce() -> impl Future<Output = Result<Option<V>, E>>`.
pub(crate) trait Load: FnOnce() -> Self::Loading {
    /// The loaded value.
    type Value: Serialize + DeserializeOwned;
    /// The loader's error, shared with every caller of the load.
    type Error: Send + Sync + 'static;
    /// The loader's future.
    type Loading: Future<Output = Result<Option<Self::Value>, Self::Error>>;
}

impl<F, Fut, V, E> Load for F
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<V>, E>>,
    V: Serialize + DeserializeOwned,
    E: Send + Sync + 'static,
{
    type Value = V;
    type Error = E;
    type Loading = Fut;
}
