//! [`Shared`]: the outcome of one load, shared by every caller of a flight.

use std::any::Any;
use std::sync::Arc;

use crate::entry::{self, Entry};
use crate::error::{CodecError, RedisError};

/// A cache entry as it is (or would be) stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shared {
    /// The whole entry, tag byte included.
    Value(Arc<[u8]>),
    NotFound,
}

impl Shared {
    /// The entry's bytes as stored in Redis.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Shared::Value(bytes) => bytes,
            Shared::NotFound => entry::NOT_FOUND,
        }
    }

    /// The codec payload of a value; `None` for "not found".
    pub(crate) fn payload(&self) -> Option<&[u8]> {
        match self {
            Shared::Value(bytes) => bytes.get(1..),
            Shared::NotFound => None,
        }
    }

    /// A usable entry read from Redis; `None` for a lease or unreadable bytes.
    pub(crate) fn from_read(bytes: Vec<u8>) -> Option<Shared> {
        match Entry::parse(&bytes) {
            Entry::Value(_) => Some(Shared::Value(bytes.into())),
            Entry::NotFound => Some(Shared::NotFound),
            Entry::Lease | Entry::Unreadable => None,
        }
    }
}

/// Why a flight produced no entry; cloned to every caller of the flight.
#[derive(Clone)]
pub(crate) enum FlightError {
    /// The loader's error, type-erased (`Arc<E>` inside).
    Load(Arc<dyn Any + Send + Sync>),
    Redis(RedisError),
    Codec(CodecError),
    LeaseBusy(std::time::Duration),
}
