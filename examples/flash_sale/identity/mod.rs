//! Proving who the buyer is, at the HTTP edge: signed bearer tokens whose
//! subject is the user id (a device id bound into them when present), and
//! an optional challenge a buyer solves before a purchase.
//!
//! - [`token`]: HS256 tokens (`jsonwebtoken`): mint, verify, every refusal named.
//! - [`challenge`]: the challenge hook and its proof-of-work implementation.
//! - [`settings`]: the flags, each with its range.

pub mod challenge;
pub mod settings;
pub mod token;
