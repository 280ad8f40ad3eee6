//! The layer on every topology the test script starts (a single node, a
//! 3-primary Cluster, a Sentinel group) through both clients: scripts and
//! libraries load once for thousands of callers, errors are classified the
//! same way, and calls route by key.
#![cfg(all(feature = "redis", feature = "fred"))]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::future::join_all;
use seckill_redis::{Arg, Connection, Error, Library, Script, Value, command, send};

mod support;
use support::{Client, Topo, connect, flush_functions, flush_scripts};

const CALLERS: usize = 2_000;

/// A fresh script per test (a unique comment makes a unique SHA), so
/// parallel tests never flush each other's.
fn unique_script(body: &str) -> Script {
    Script::new(format!("-- {}\n{body}", uuid()))
}

fn uuid() -> String {
    format!("{:x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    u128::from(h.finish()) << 64 | u128::from(std::process::id())
}

async fn script_cache_loads_once<C: Connection>(conn: C, topo: Topo) {
    let script = Arc::new(unique_script(
        "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    ));
    let key = format!("{{layer-{}}}:n", uuid());
    // Scripts are not cached anywhere yet; then flushed once more under load.
    flush_scripts(topo).await;
    let calls = (0..CALLERS).map(|_| {
        let (conn, script, key) = (conn.clone(), script.clone(), key.clone());
        tokio::spawn(async move { script.run(&conn, &[&key], &[Arg::Int(1)]).await })
    });
    for result in join_all(calls).await {
        assert!(result.expect("task").expect("call").as_int().is_some());
    }
    let total = command(&conn, "GET", &[&key], &[]).await.expect("GET");
    assert_eq!(total.as_int(), Some(CALLERS as i64));
    assert_eq!(
        script.loads(),
        1,
        "{CALLERS} callers hit NOSCRIPT: one SCRIPT LOAD"
    );

    flush_scripts(topo).await;
    let again = (0..CALLERS).map(|_| {
        let (conn, script, key) = (conn.clone(), script.clone(), key.clone());
        tokio::spawn(async move { script.run(&conn, &[&key], &[Arg::Int(1)]).await })
    });
    for result in join_all(again).await {
        result.expect("task").expect("call after a flush");
    }
    assert_eq!(script.loads(), 2, "one more load after one more flush");
    command(&conn, "DEL", &[&key], &[]).await.expect("DEL");
}

async fn script_cache_library_loads_once<C: Connection>(conn: C, topo: Topo) {
    let incr = unique_script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let library = Arc::new(Library::new("layer_test", &[("incr", &incr)]).expect("library"));
    let key = format!("{{layer-{}}}:f", uuid());
    let calls = (0..CALLERS).map(|_| {
        let (conn, library, key) = (conn.clone(), library.clone(), key.clone());
        tokio::spawn(async move { library.call(&conn, "incr", &[&key], &[Arg::Int(1)]).await })
    });
    for result in join_all(calls).await {
        result.expect("task").expect("fcall");
    }
    assert_eq!(
        library.loads(),
        1,
        "{CALLERS} callers found no library: one FUNCTION LOAD"
    );
    let total = command(&conn, "GET", &[&key], &[]).await.expect("GET");
    assert_eq!(total.as_int(), Some(CALLERS as i64));
    // Unknown function names are a configuration error, sent nowhere.
    let unknown = library.call(&conn, "nope", &[&key], &[]).await;
    assert!(matches!(unknown, Err(Error::Config(_))), "{unknown:?}");
    command(&conn, "DEL", &[&key], &[]).await.expect("DEL");
    let _ = flush_functions(topo, library.name()).await;
}

async fn errors_are_classified<C: Connection>(conn: C, topo: Topo) {
    let key = format!("{{layer-{}}}:list", uuid());
    command(&conn, "RPUSH", &[&key], &[Arg::Str("x")])
        .await
        .expect("RPUSH");
    let wrong = command(&conn, "INCR", &[&key], &[]).await;
    assert!(matches!(wrong, Err(Error::WrongType { .. })), "{wrong:?}");
    let in_script = unique_script("return redis.call('INCR', KEYS[1])")
        .run(&conn, &[&key], &[])
        .await;
    assert!(
        matches!(in_script, Err(Error::WrongType { .. })),
        "a WRONGTYPE inside a script keeps its class: {in_script:?}"
    );
    let raised = unique_script("return redis.error_reply('boom')")
        .run(&conn, &[&key], &[])
        .await;
    assert!(
        matches!(raised, Err(Error::Server { .. } | Error::Script { .. })),
        "{raised:?}"
    );
    let broken = unique_script("return nosuchglobal.x")
        .run(&conn, &[&key], &[])
        .await;
    assert!(matches!(broken, Err(Error::Script { .. })), "{broken:?}");
    let raw = send(
        &conn,
        seckill_redis::Call::EvalSha {
            sha: "0000000000000000000000000000000000000000",
            keys: &[&key],
            args: &[],
        },
    )
    .await;
    assert!(matches!(raw, Err(Error::NoScript { .. })), "{raw:?}");
    // Two keys in different slots: a configuration error on a cluster only.
    let (a, b) = (format!("{{a-{}}}", uuid()), format!("{{b-{}}}", uuid()));
    let cross = unique_script("return #KEYS")
        .run(&conn, &[&a, &b], &[])
        .await;
    match topo {
        Topo::Cluster => assert!(matches!(cross, Err(Error::CrossSlot { .. })), "{cross:?}"),
        _ => assert_eq!(cross.expect("two keys on one node"), Value::Int(2)),
    }
    command(&conn, "DEL", &[&key], &[]).await.expect("DEL");
}

/// Keys of many slots (so, on a cluster, of every primary) all answer.
async fn routes_by_key<C: Connection>(conn: C, _topo: Topo) {
    let run = uuid();
    let script =
        unique_script("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])");
    for i in 0..64 {
        let key = format!("{{route-{run}-{i}}}");
        let got = script
            .run(&conn, &[&key], &[Arg::Str(&key)])
            .await
            .expect("script");
        assert_eq!(got.as_str(), Some(key.as_str()));
        let got = command(&conn, "GET", &[&key], &[]).await.expect("GET");
        assert_eq!(got.as_str(), Some(key.as_str()));
        command(&conn, "DEL", &[&key], &[]).await.expect("DEL");
    }
}

macro_rules! on_every_topology {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_rs_single() {
                let conn = connect(Client::RedisRs, Topo::Single).await;
                super::$case(conn.redis_rs(), Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_rs_cluster() {
                let conn = connect(Client::RedisRs, Topo::Cluster).await;
                super::$case(conn.redis_rs(), Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_rs_sentinel() {
                let conn = connect(Client::RedisRs, Topo::Sentinel).await;
                super::$case(conn.redis_rs(), Topo::Sentinel).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fred_single() {
                let conn = connect(Client::Fred, Topo::Single).await;
                super::$case(conn.fred(), Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fred_cluster() {
                let conn = connect(Client::Fred, Topo::Cluster).await;
                super::$case(conn.fred(), Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fred_sentinel() {
                let conn = connect(Client::Fred, Topo::Sentinel).await;
                super::$case(conn.fred(), Topo::Sentinel).await;
            }
        }
    )*};
}

on_every_topology!(
    script_cache_loads_once,
    script_cache_library_loads_once,
    errors_are_classified,
    routes_by_key
);
