//! [`Codec`]: how values become bytes in Redis. [`Json`] is the default.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

/// Turns values into the bytes stored in Redis and back.
///
/// The cache adds a one-byte tag in front of what the codec writes, so a
/// codec never has to reserve bytes for the "not found" marker.
///
/// # Examples
///
/// A codec is a small type; here one that stores JSON with pretty printing:
///
/// ```
/// use seckill_cache_aside::{Codec, CodecError};
///
/// struct PrettyJson;
///
/// impl Codec for PrettyJson {
///     fn encode<V: serde::Serialize>(&self, value: &V, out: &mut Vec<u8>) -> Result<(), CodecError> {
///         serde_json::to_writer_pretty(out, value).map_err(|e| CodecError::encode("pretty json", e))
///     }
///     fn decode<V: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, CodecError> {
///         serde_json::from_slice(bytes).map_err(|e| CodecError::decode("pretty json", e))
///     }
/// }
/// ```
pub trait Codec: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// When the value cannot be represented by this codec.
    fn encode<V: Serialize>(&self, value: &V, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a value from `bytes`.
    ///
    /// # Errors
    ///
    /// When the bytes are not a valid encoding of `V` (for example after the
    /// type changed shape); the cache then deletes the entry and reloads.
    fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, CodecError>;
}

/// JSON via `serde_json`: readable in `redis-cli`, tolerant of added fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    fn encode<V: Serialize>(&self, value: &V, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::encode("JSON", e))
    }

    fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::decode("JSON", e))
    }
}

/// A compact binary encoding via `postcard` (feature `postcard`).
///
/// Smaller and faster than JSON, but not self-describing: a value written by
/// an older shape of a type fails to decode (and is then reloaded), so change
/// the key prefix when a cached type changes.
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    fn encode<V: Serialize>(&self, value: &V, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let bytes = postcard::to_allocvec(value).map_err(|e| CodecError::encode("postcard", e))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::decode("postcard", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sku {
        id: u64,
        name: String,
    }

    fn round_trip<C: Codec>(codec: C) {
        let sku = Sku {
            id: 7,
            name: "tea".into(),
        };
        let mut out = vec![b'v'];
        codec.encode(&sku, &mut out).unwrap();
        assert_eq!(out.first(), Some(&b'v'));
        let back: Sku = codec.decode(&out[1..]).unwrap();
        assert_eq!(back, sku);
        assert!(codec.decode::<Sku>(b"\xff\xff").is_err());
    }

    #[test]
    fn json_round_trips() {
        round_trip(Json);
    }

    #[cfg(feature = "postcard")]
    #[test]
    fn postcard_round_trips() {
        round_trip(Postcard);
    }
}
