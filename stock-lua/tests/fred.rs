//! The behaviour suite through the fred adapter (feature `fred`).
#![cfg(feature = "fred")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod suite;
mod support;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Config;

impl suite::Client for Client {
    async fn connect() -> Self {
        let config =
            Config::from_url(&suite::redis_url()).unwrap_or_else(|e| suite::unreachable(e));
        let client = Client::new(config, None, None, None);
        client
            .init()
            .await
            .unwrap_or_else(|e| suite::unreachable(e));
        client
    }
}

suite_tests!(Client);
