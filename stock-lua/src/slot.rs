//! Redis Cluster hash slots, to place stock buckets on different primaries.

/// Slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// The slot of a hash tag (the text between `{` and `}` of a key):
/// CRC16 (XMODEM) modulo 16384, as Redis Cluster computes it.
pub(crate) fn slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for byte in tag.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// A stable 64-bit FNV-1a hash: the same bucket for the same id in every
/// process and every version.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The namespace of bucket `index` of `buckets`: `namespace~k`, with the
/// smallest `k` whose slot falls in the middle half of the bucket's share
/// of the slot range (bucket i of n has slots i·16384/n up to
/// (i+1)·16384/n). A cluster made by `redis-cli --cluster create` gives
/// each primary one contiguous share (rounded differently at the edges,
/// hence the middle half), so n buckets over n primaries land one per
/// primary. One bucket is the namespace itself (the keys of an unsharded
/// store).
pub(crate) fn bucket_namespace(namespace: &str, index: usize, buckets: usize) -> String {
    if buckets <= 1 {
        return namespace.to_owned();
    }
    let share = |i: usize| i * usize::from(SLOTS) / buckets;
    let (start, end) = (share(index), share(index + 1));
    let quarter = (end - start) / 4;
    let (low, high) = ((start + quarter) as u16, (end - quarter) as u16);
    // About n tries on average; the bound only guards against a bug.
    (0..1_000_000u32)
        .map(|k| format!("{namespace}~{k}"))
        .find(|tag| (low..high).contains(&slot(tag)))
        .unwrap_or_else(|| format!("{namespace}~{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // `CLUSTER KEYSLOT` answers for these keys.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn buckets_spread_over_the_slot_range() {
        for n in [2, 3, 5, 16, 64] {
            let slots: Vec<u16> = (0..n)
                .map(|i| slot(&bucket_namespace("sale", i, n)))
                .collect();
            for (i, s) in slots.iter().enumerate() {
                let low = (i * 16_384 / n) as u16;
                let high = ((i + 1) * 16_384 / n) as u16;
                assert!((low..high).contains(s), "bucket {i} of {n} at slot {s}");
            }
        }
        assert_eq!(bucket_namespace("sale", 0, 1), "sale");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
