//! The stored format is unambiguous: a value, whatever its bytes, reads back
//! as that value, never as a lease or a "not found"; bytes this crate did not
//! write (the 0.x format, another program's value) are a miss, never a lease.

// Every test here needs a client adapter.
#![cfg(any(feature = "redis", feature = "fred"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use seckill_cache_aside::{Backfill, Cache, Cached, Options};
use support::{Connect, RawBytes, admin, namespace, proptest_config};

/// The tag bytes of this format and of the 0.x one, and a zero.
const TAG_BYTES: [u8; 7] = [0xFA, 0xFB, 0xFC, b'v', b'n', b'l', 0];

fn options(mode: Backfill) -> Options {
    Options::default()
        .backfill(mode)
        .lease_wait(Duration::from_millis(100))
        .double_delete_delay(Duration::ZERO)
}

/// Defect 1, through the cache: a value whose bytes start with any tag byte
/// (alone, or followed by 16 bytes, the length of a lease marker), made
/// permanent with `PERSIST`, reads back as exactly that value.
async fn values_starting_with_a_tag_byte_read_back(client: impl Connect) {
    let admin = admin(client.topo()).await;
    for mode in [Backfill::SetNx, Backfill::Lease] {
        let cache = Cache::with_codec(client.connect().await, options(mode), RawBytes).unwrap();
        for tag in TAG_BYTES {
            for value in [vec![tag], [vec![tag], vec![7u8; 16]].concat()] {
                let key = format!("{}:v", namespace());
                cache.set(&key, &value).await.unwrap();
                admin.persist(&key).await;
                assert_eq!(admin.pttl(&key).await, -1, "no TTL now");
                assert_eq!(
                    cache.peek::<Vec<u8>>(&key).await.unwrap(),
                    Cached::Value(value.clone()),
                    "{mode:?} {value:?}"
                );
                let got = cache
                    .get_or_load(&key, || async {
                        Err::<Option<Vec<u8>>, _>("no load expected")
                    })
                    .await
                    .unwrap();
                assert_eq!(got, Some(value.clone()), "{mode:?}");
                admin.del(&key).await;
            }
        }
        assert_eq!(cache.stats().loads, 0, "{mode:?}");
    }
}

/// Defect 1, the reported failure: bytes this crate did not write, without a
/// TTL, starting with `l` (the 0.x lease tag) or any other tag byte, shaped
/// like a lease or not, are a miss: loaded once, replaced by a tagged value
/// with a TTL, then hits. Before the fix, `l…` was a lease forever: SetNx
/// loaded on every read (the `SET NX` was always refused), Lease mode
/// answered `LeaseBusy` forever.
async fn foreign_bytes_without_ttl_are_a_miss_not_a_lease(client: impl Connect) {
    let admin = admin(client.topo()).await;
    let mut foreign: Vec<Vec<u8>> = vec![
        b"lemon".to_vec(),
        b"l".to_vec(),
        [&b"l"[..], &[9u8; 16]].concat(),
        b"n".to_vec(),
        b"v\"old 0.x value\"".to_vec(),
        Vec::new(),
    ];
    for tag in TAG_BYTES {
        // `0xFB` alone is this format's "not found": not foreign.
        if tag != 0xFB {
            foreign.push(vec![tag]);
        }
        foreign.push([vec![tag], vec![3u8; 16]].concat());
    }
    for mode in [Backfill::SetNx, Backfill::Lease] {
        for bytes in &foreign {
            let key = format!("{}:foreign", namespace());
            let cache = Cache::new(client.connect().await, options(mode)).unwrap();
            admin.set(&key, bytes).await;
            let loads = AtomicUsize::new(0);
            let load = || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(Some("fresh".to_string()))
            };
            let first = cache.get_or_load(&key, load).await;
            let second = cache.get_or_load(&key, load).await;
            // A 0xFA-tagged foreign entry is a value whose payload does not
            // decode: it is dropped and reloaded like any unreadable one.
            assert_eq!(
                (
                    first.unwrap(),
                    second.unwrap(),
                    loads.load(Ordering::SeqCst)
                ),
                (Some("fresh".to_string()), Some("fresh".to_string()), 1),
                "{mode:?} {bytes:?}"
            );
            assert_eq!(
                admin.get(&key).await.unwrap(),
                [&[0xFA][..], b"\"fresh\""].concat(),
                "{mode:?} {bytes:?}"
            );
            assert!(admin.pttl(&key).await > 0, "{mode:?} {bytes:?}");
            admin.del(&key).await;
        }
    }
}

on_every_topology!(async:
    values_starting_with_a_tag_byte_read_back,
    foreign_bytes_without_ttl_are_a_miss_not_a_lease,
);

fn payloads() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            proptest::sample::select(TAG_BYTES.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(tag, rest)| [vec![tag], rest].concat()),
    ]
}

/// Property: any byte string (empty, tag-led, random), written with `set`
/// or backfilled by a load, optionally made permanent with `PERSIST`, reads
/// back as exactly those bytes (`peek` and `get_or_load`, no load), in both
/// modes, and Redis holds the value tag followed by exactly those bytes.
fn prop_any_bytes_round_trip<C: Connect>(client: C) {
    let rt = support::runtime();
    let conn = rt.block_on(client.connect());
    let admin = rt.block_on(admin(client.topo()));
    let ns = namespace();
    let mut runner = TestRunner::new(proptest_config(support::scaled(client.topo(), 64)));
    let strategy = (
        prop_oneof![Just(Backfill::SetNx), Just(Backfill::Lease)],
        payloads(),
        any::<bool>(),
        any::<bool>(),
    );
    let result = runner.run(&strategy, |(mode, payload, via_load, persist)| {
        rt.block_on(async {
            let cache = Cache::with_codec(conn.clone(), options(mode), RawBytes).unwrap();
            let key = format!("{ns}:{}", uuid::Uuid::new_v4().simple());
            if via_load {
                let p = payload.clone();
                let got = cache
                    .get_or_load(&key, || async move { Ok::<_, String>(Some(p)) })
                    .await
                    .unwrap();
                prop_assert_eq!(got, Some(payload.clone()));
            } else {
                cache.set(&key, &payload).await.unwrap();
            }
            if persist {
                admin.persist(&key).await;
            }
            prop_assert_eq!(
                admin.get(&key).await,
                Some([&[0xFA][..], &payload[..]].concat())
            );
            prop_assert_eq!(
                cache.peek::<Vec<u8>>(&key).await.unwrap(),
                Cached::Value(payload.clone())
            );
            let got = cache
                .get_or_load(&key, || async {
                    Err::<Option<Vec<u8>>, _>("no load expected")
                })
                .await
                .unwrap();
            prop_assert_eq!(got, Some(payload.clone()));
            prop_assert_eq!(cache.stats().loads, u64::from(via_load));
            admin.del(&key).await;
            Ok(())
        })
    });
    rt.block_on(admin.delete_under(&ns));
    result.unwrap();
}

on_every_topology!(sync: prop_any_bytes_round_trip);
