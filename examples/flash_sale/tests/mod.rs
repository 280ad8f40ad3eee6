//! Tests of the app against the real Redis, MySQL and Kafka.
