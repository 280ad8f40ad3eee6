//! The bulkhead's admit+release and rejection beside tower's
//! `ConcurrencyLimit` (admit) and `LoadShed<ConcurrencyLimit>` (reject).
//!
//! Run with `cargo bench -p seckill-overload --bench overload`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use seckill_overload::adaptive::{AdaptiveLimit, Gradient};
use seckill_overload::bulkhead::{Bulkhead, BulkheadLayer};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{Layer, Service, ServiceExt};

/// An inner service that is always ready and answers at once.
#[derive(Clone)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        ready(Ok(req))
    }
}

fn admit(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit_release");
    let bulkhead = Bulkhead::new(1_000).unwrap();
    group.bench_function("bulkhead_try_acquire", |b| {
        b.iter(|| drop(black_box(bulkhead.try_acquire().unwrap())))
    });
    let limit = AdaptiveLimit::builder(Gradient::builder().build().unwrap())
        .build()
        .unwrap();
    group.bench_function("adaptive_try_acquire_success", |b| {
        b.iter(|| black_box(limit.try_acquire().unwrap()).success())
    });
    let mut ours = BulkheadLayer::new(Bulkhead::new(1_000).unwrap()).layer(Echo);
    group.bench_function("bulkhead_layer_call", |b| {
        b.iter(|| {
            let svc = ours.ready().now_or_never().unwrap().unwrap();
            black_box(svc.call(1).now_or_never().unwrap().unwrap())
        })
    });
    let mut tower_limit = ConcurrencyLimitLayer::new(1_000).layer(Echo);
    group.bench_function("tower_concurrency_limit_call", |b| {
        b.iter(|| {
            let svc = tower_limit.ready().now_or_never().unwrap().unwrap();
            black_box(svc.call(1).now_or_never().unwrap().unwrap())
        })
    });
    group.finish();
}

fn reject(c: &mut Criterion) {
    let mut group = c.benchmark_group("reject");
    let bulkhead = Bulkhead::new(1).unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    group.bench_function("bulkhead_try_acquire_full", |b| {
        b.iter(|| black_box(bulkhead.try_acquire().is_err()))
    });
    let full = Bulkhead::new(1).unwrap();
    let _held_too = full.try_acquire().unwrap();
    let mut ours = BulkheadLayer::new(full.clone()).layer(Echo);
    group.bench_function("bulkhead_layer_call_full", |b| {
        b.iter(|| {
            let svc = ours.ready().now_or_never().unwrap().unwrap();
            black_box(svc.call(1).now_or_never().unwrap().is_err())
        })
    });
    // tower: a ConcurrencyLimit of 1 whose only permit is held by a clone
    // that is ready, behind LoadShed, which rejects when not ready.
    let mut holder = ConcurrencyLimitLayer::new(1).layer(Echo);
    let _ = holder.ready().now_or_never().unwrap().unwrap();
    let mut shed = LoadShedLayer::new().layer(holder.clone());
    group.bench_function("tower_load_shed_concurrency_limit_full", |b| {
        b.iter(|| {
            let svc = shed.ready().now_or_never().unwrap().unwrap();
            black_box(svc.call(1).now_or_never().unwrap().is_err())
        })
    });
    group.finish();
}

criterion_group!(benches, admit, reject);
criterion_main!(benches);
