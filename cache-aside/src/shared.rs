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

/// What a flight hands every caller: the entry, and whether a writer
/// revoked the lease it was loaded under.
#[derive(Debug, Clone)]
pub(crate) struct Flown {
    pub(crate) entry: Shared,
    /// In lease mode, set when the fill was refused (the lease was revoked
    /// by an `invalidate` or a `set`, or expired): the instant the flight
    /// started. The entry may then be older than a write that completed
    /// after that instant, so a waiter whose read started after it reads
    /// again instead of taking the entry.
    pub(crate) revoked_since: Option<tokio::time::Instant>,
}

impl Flown {
    pub(crate) fn fresh(entry: Shared) -> Flown {
        Flown {
            entry,
            revoked_since: None,
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
