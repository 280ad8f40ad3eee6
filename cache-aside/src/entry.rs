//! The bytes stored under a cache key: a one-byte tag, then the payload.
//!
//! | stored bytes | meaning |
//! |---|---|
//! | `0xFA` + codec bytes (any length, empty included) | a cached value |
//! | `0xFB` alone | a cached "not found" (against penetration) |
//! | `0xFC` + 16 random bytes, with a TTL | a lease: some caller is loading this key |
//!
//! The tags are bytes that never start (or occur in) UTF-8 text, so a value
//! another program wrote (text, JSON, a number) is never taken for one of
//! ours. Every value this crate writes starts with [`VALUE`], so its payload,
//! whatever its bytes, can never read back as a lease or a "not found".
//! Anything else is *unreadable*: the entries of the 0.x format (`v…`,
//! `n`, `l…`), foreign bytes, and a lease-shaped entry without a TTL (this
//! crate always writes leases with one). Unreadable entries are treated as a
//! miss: deleted with a compare-and-delete (or replaced by a lease, in the
//! Lua of `take_lease.lua`), then reloaded. `take_lease.lua` gets the tags as
//! arguments from here, so Rust and Lua share one definition.

/// Tag of a cached value.
pub(crate) const VALUE: u8 = 0xFA;
/// The whole entry for "not found".
pub(crate) const NOT_FOUND: &[u8] = &[0xFB];
/// Tag of a lease marker.
pub(crate) const LEASE: u8 = 0xFC;
/// Random bytes after the lease tag.
pub(crate) const LEASE_TOKEN_LEN: usize = 16;
/// Length of a whole lease marker.
pub(crate) const LEASE_LEN: usize = 1 + LEASE_TOKEN_LEN;

/// What a key holds, borrowed from the bytes read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A value; the codec's bytes.
    Value(&'a [u8]),
    /// The "not found" marker.
    NotFound,
    /// A lease marker (by its shape; whether it has a TTL is checked in
    /// Redis): someone is loading the key.
    Lease,
    /// Bytes this crate did not write.
    Unreadable,
}

impl<'a> Entry<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Self {
        match bytes.split_first() {
            Some((&VALUE, payload)) => Entry::Value(payload),
            Some((&LEASE, _)) if bytes.len() == LEASE_LEN => Entry::Lease,
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
        assert_eq!(Entry::parse(b"\xfa{\"a\":1}"), Entry::Value(b"{\"a\":1}"));
        assert_eq!(Entry::parse(b"\xfa"), Entry::Value(b""));
        assert_eq!(Entry::parse(b"\xfa\xfc"), Entry::Value(b"\xfc"));
        assert_eq!(Entry::parse(b"\xfa\xfb"), Entry::Value(b"\xfb"));
        assert_eq!(Entry::parse(b"\xfb"), Entry::NotFound);
        assert_eq!(Entry::parse(&[LEASE; LEASE_LEN]), Entry::Lease);
        assert_eq!(Entry::parse(b"\xfb\xfb"), Entry::Unreadable);
        assert_eq!(Entry::parse(b"\xfc0123"), Entry::Unreadable);
        assert_eq!(Entry::parse(&[LEASE; LEASE_LEN + 1]), Entry::Unreadable);
        // The 0.x format is unreadable: reloaded, never a lease.
        assert_eq!(Entry::parse(b"v{\"a\":1}"), Entry::Unreadable);
        assert_eq!(Entry::parse(b"n"), Entry::Unreadable);
        assert_eq!(Entry::parse(b"l0123456789abcdef"), Entry::Unreadable);
        assert_eq!(Entry::parse(b"*"), Entry::Unreadable);
        assert_eq!(Entry::parse(b""), Entry::Unreadable);
    }

    /// Every payload of up to two bytes (tags included) parses back as
    /// itself: exhaustive, so no seed is involved.
    #[test]
    fn every_short_payload_parses_back_as_a_value() {
        let mut payloads = vec![vec![]];
        for a in 0..=255u8 {
            payloads.push(vec![a]);
            for b in 0..=255u8 {
                payloads.push(vec![a, b]);
            }
        }
        for payload in payloads {
            let mut stored = vec![VALUE];
            stored.extend_from_slice(&payload);
            assert_eq!(Entry::parse(&stored), Entry::Value(&payload[..]));
        }
    }
}
