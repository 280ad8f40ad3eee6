//! The bytes stored under a cache key: a one-byte tag, then the payload.
//!
//! | tag | payload | meaning |
//! |---|---|---|
//! | `v` | codec bytes | a cached value |
//! | `n` | none | a cached "not found" (against penetration) |
//! | `l` | random token | a lease: some caller is loading this key |
//!
//! Anything else is unreadable and is deleted, then reloaded.

/// Tag of a cached value.
pub(crate) const VALUE: u8 = b'v';
/// The whole entry for "not found".
pub(crate) const NOT_FOUND: &[u8] = b"n";
/// Tag of a lease marker.
pub(crate) const LEASE: u8 = b'l';

/// What a key holds, borrowed from the bytes read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A value; the codec's bytes.
    Value(&'a [u8]),
    /// The "not found" marker.
    NotFound,
    /// A lease marker: someone is loading the key.
    Lease,
    /// Bytes this crate did not write.
    Unreadable,
}

impl<'a> Entry<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Self {
        match bytes.split_first() {
            Some((&VALUE, payload)) => Entry::Value(payload),
            Some((&LEASE, _)) => Entry::Lease,
            _ if bytes == NOT_FOUND => Entry::NotFound,
            _ => Entry::Unreadable,
        }
    }
}

/// What a read of the cache found, without loading anything.
///
/// Returned by [`Cache::peek`](crate::Cache::peek); it tells a cached
/// "not found" apart from an absent key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cached<V> {
    /// A cached value.
    Value(V),
    /// A cached "not found": the loader said the row does not exist, and
    /// readers get `None` without reaching the database until
    /// [`Options::not_found_ttl`](crate::Options::not_found_ttl) elapses.
    NotFound,
    /// Nothing usable is cached (no key, an expired one, or a load in
    /// progress under a lease).
    Absent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_told_apart() {
        assert_eq!(Entry::parse(b"v{\"a\":1}"), Entry::Value(b"{\"a\":1}"));
        assert_eq!(Entry::parse(b"v"), Entry::Value(b""));
        assert_eq!(Entry::parse(b"n"), Entry::NotFound);
        assert_eq!(Entry::parse(b"l0123"), Entry::Lease);
        assert_eq!(Entry::parse(b"nx"), Entry::Unreadable);
        assert_eq!(Entry::parse(b"*"), Entry::Unreadable);
        assert_eq!(Entry::parse(b""), Entry::Unreadable);
    }
}
