//! Key replicas for hot keys ([`Options::replicas`](crate::Options::replicas)):
//! the Redis keys holding the copies of one cache key.
//!
//! With `n` = 1 the only copy is the key itself. With `n` ≥ 2, copy `i`
//! (0 ≤ `i` < `n`) is the key with `#j` added at the end of the part Redis
//! Cluster hashes (the key's end, or just inside the closing brace of its
//! hash tag: `{sku:7}:info` becomes `{sku:7#j}:info`), where `j` is the
//! smallest number ≥ 0 whose hash slot falls in the `i`-th of `n` equal
//! ranges of the 16,384 slots. So the copies always lie in `n` different
//! slots, spread evenly over the slot space (and over the primaries of a
//! cluster whose slots are split evenly), and any process computes the same
//! names from the key alone, without asking the cluster.
//!
//! Finding `j` takes `n` tries on average (one CRC16 of a few bytes each).
//! Should no `j` below [`MAX_PROBES`] land in a range (it never did in the
//! tests, which try a thousand keys for every `n`), copy `i` is named
//! `#~i` instead and lands wherever its slot falls.

use std::borrow::Cow;
use std::ops::Range;

/// Hash slots of a Redis Cluster.
const SLOTS: u32 = 16_384;
/// How many `j` are tried per key before falling back to `#~i`.
pub(crate) const MAX_PROBES: u32 = 1 << 14;

/// The Redis key of copy `i` of `key`, among `n` copies.
pub(crate) fn copy_key(key: &str, i: u32, n: u32) -> Cow<'_, str> {
    if n <= 1 {
        return Cow::Borrowed(key);
    }
    let range = hashed(key.as_bytes());
    let at = range.end;
    let found = probe(&key.as_bytes()[range], n, Some(i));
    Cow::Owned(name(key, at, i, found.get(i as usize).copied().flatten()))
}

/// The Redis keys of every copy of `key`, copy 0 first.
pub(crate) fn all_copies(key: &str, n: u32) -> Vec<String> {
    if n <= 1 {
        return vec![key.to_owned()];
    }
    let range = hashed(key.as_bytes());
    let at = range.end;
    let found = probe(&key.as_bytes()[range], n, None);
    (0..n)
        .map(|i| name(key, at, i, found.get(i as usize).copied().flatten()))
        .collect()
}

/// `key` with `#j` (or `#~i` when no `j` was found) inserted at byte `at`.
fn name(key: &str, at: usize, i: u32, j: Option<u32>) -> String {
    let (head, tail) = key.split_at(at);
    match j {
        Some(j) => format!("{head}#{j}{tail}"),
        None => format!("{head}#~{i}{tail}"),
    }
}

/// For each of the `n` slot ranges, the smallest `j` below [`MAX_PROBES`]
/// whose `hashed#j` lands in it; stops early once range `only` (if given)
/// or every range is found.
fn probe(hashed: &[u8], n: u32, only: Option<u32>) -> Vec<Option<u32>> {
    let mut found = vec![None; n as usize];
    let mut missing = n;
    let prefix = crc16(crc16(0, hashed), b"#");
    let mut digits = [0u8; 10];
    for j in 0..MAX_PROBES {
        let slot = u32::from(crc16(prefix, decimal(j, &mut digits))) % SLOTS;
        let range = slot * n / SLOTS;
        if let Some(entry) = found.get_mut(range as usize)
            && entry.is_none()
        {
            *entry = Some(j);
            missing -= 1;
            if missing == 0 || only == Some(range) {
                break;
            }
        }
    }
    found
}

/// The ASCII decimal digits of `n`, written into `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the cast keeps it.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The bytes of `key` that Redis Cluster hashes: the content of the first
/// `{...}` when it is non-empty, else the whole key.
fn hashed(key: &[u8]) -> Range<usize> {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return open + 1..open + 1 + len;
    }
    0..key.len()
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, no reflection), continued from
/// `crc`; Redis Cluster's key hash, started from 0.
fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

/// The hash slot of `key` on a Redis Cluster (`CLUSTER KEYSLOT`).
#[cfg(test)]
fn slot(key: &str) -> u32 {
    let bytes = key.as_bytes();
    u32::from(crc16(0, &bytes[hashed(bytes)])) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // As `CLUSTER KEYSLOT` answers on Redis 7.0.
        for (key, want) in [
            ("somekey", 11058),
            ("foo{hash_tag}", 2515),
            ("foo", 12182),
            ("123456789", 12739),
            ("a{b}c", 3300),
            // An empty tag hashes the whole key; only the first tag counts.
            ("{}", slot_of_whole("{}")),
            ("x{}{b}", slot_of_whole("x{}{b}")),
            ("a{b}{c}", slot("b")),
        ] {
            assert_eq!(slot(key), want, "{key}");
        }
        assert_eq!(crc16(0, b"123456789"), 0x31C3, "the XMODEM check value");
    }

    fn slot_of_whole(key: &str) -> u32 {
        u32::from(crc16(0, key.as_bytes())) % SLOTS
    }

    #[test]
    fn one_copy_is_the_key_itself() {
        assert_eq!(copy_key("sku:1", 0, 1), "sku:1");
        assert_eq!(all_copies("sku:1", 1), vec!["sku:1".to_owned()]);
    }

    #[test]
    fn copies_are_named_inside_the_hashed_part() {
        let plain = all_copies("sku:1", 3);
        assert!(plain.iter().all(|k| k.starts_with("sku:1#")), "{plain:?}");
        let tagged = all_copies("{sale}:sku:1", 3);
        for copy in &tagged {
            assert!(
                copy.starts_with("{sale#") && copy.ends_with("}:sku:1"),
                "{copy}"
            );
        }
    }

    /// For every `n` and a thousand keys (plain and hash-tagged): `n`
    /// distinct names, copy `i` in the `i`-th slot range (so in `n`
    /// distinct slots), never the fallback, and (for every tenth key) the
    /// same names one at a time as all at once.
    #[test]
    fn copies_land_in_their_own_slot_range() {
        for n in [2u32, 3, 4, 6, 7, 16, 63, 64] {
            for k in 0..1_000 {
                let key = if k % 2 == 0 {
                    format!("test:cache-aside:{k}:sku")
                } else {
                    format!("flash-sale:{{ns-{k}}}:sku:v2:{k}")
                };
                let copies = all_copies(&key, n);
                assert_eq!(copies.len(), n as usize);
                for (i, copy) in copies.iter().enumerate() {
                    let i = i as u32;
                    assert!(!copy.contains("#~"), "{key}: fallback for copy {i}");
                    assert_eq!(slot(copy) * n / SLOTS, i, "{copy} of {key}, n {n}");
                    if k % 10 == 0 {
                        assert_eq!(copy_key(&key, i, n), copy.as_str());
                    }
                }
            }
        }
    }

    #[test]
    fn the_fallback_name_is_distinct() {
        assert_eq!(name("k", 1, 5, None), "k#~5");
        assert_eq!(name("{t}x", 2, 5, Some(12)), "{t#12}x");
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
    }
}
