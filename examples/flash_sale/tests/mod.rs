//! Tests of the app against the real Redis, MySQL and Kafka.
//!
//! Each test builds its own [`support::TestEnv`]; tests that touch Kafka run
//! once on the in-process mock cluster and once on the real broker.

mod consumer;
mod demo;
mod http;
mod identity;
mod protection;
mod reconcile;
mod recovery;
mod support;
