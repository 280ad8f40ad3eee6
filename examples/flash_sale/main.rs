//! Run with `cargo run --example flash_sale`.
//!
//! The flash-sale application (HTTP on Redis, MySQL and Kafka) is coming with
//! the app issue. Until then this shows the first building block at work:
//! a thousand concurrent readers of one expired hot key cause one load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use seckill::singleflight::Group;

#[tokio::main]
async fn main() {
    let group: Group<u64, String, String> = Group::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..1_000)
        .map(|_| {
            let (group, loads) = (group.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                group
                    .run(1, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, String>("sku 1: 100 in stock".to_string())
                    })
                    .await
            })
        })
        .collect();
    let mut served = 0;
    for reader in readers {
        if matches!(reader.await, Ok(Ok(_))) {
            served += 1;
        }
    }
    println!(
        "1000 concurrent readers of an expired hot key: {served} served, {} database load(s).",
        loads.load(Ordering::SeqCst)
    );
    println!("The full flash-sale app (HTTP + Redis + MySQL + Kafka) is coming; see README.md.");
}
