//! Orders: from a granted deduction, through Kafka, to a row in MySQL.

pub mod consumer;
pub mod db;
pub mod kafka;
pub mod message;
pub mod producer;
