//! The request-id rule, once: 1 to [`MAX_LEN`] visible ASCII characters,
//! case-sensitive. A [`RequestId`] can only hold a valid id (parse, don't
//! validate), so everything past the HTTP edge, the Kafka decoder and the
//! deduction log takes one without checking again.

use std::fmt;

/// Longest request id, in bytes (`orders.request_id` is `VARCHAR(64)`).
pub const MAX_LEN: usize = 64;

/// A client's id of one purchase request: the key of its deduplication in
/// Redis and of its order in MySQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Box<str>);

/// Why a string is not a request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    /// Empty, or longer than [`MAX_LEN`] bytes.
    #[error("request_id must be 1 to {MAX_LEN} characters")]
    Length,
    /// A space, a control character or a non-ASCII character.
    #[error("request_id must be visible ASCII characters (no spaces)")]
    Characters,
}

impl RequestId {
    /// Parses `id`.
    ///
    /// # Errors
    ///
    /// `id` breaks the rule; the error says which part.
    pub fn parse(id: impl Into<String>) -> Result<Self, RequestIdError> {
        let id: String = id.into();
        if id.is_empty() || id.len() > MAX_LEN {
            return Err(RequestIdError::Length);
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RequestIdError::Characters);
        }
        Ok(Self(id.into_boxed_str()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert_eq!(RequestId::parse("a-1").unwrap().as_str(), "a-1");
        assert_eq!(RequestId::parse("x".repeat(64)).unwrap().as_str().len(), 64);
        assert_eq!(RequestId::parse(""), Err(RequestIdError::Length));
        assert_eq!(
            RequestId::parse("x".repeat(65)),
            Err(RequestIdError::Length)
        );
        assert_eq!(RequestId::parse("a b"), Err(RequestIdError::Characters));
        assert_eq!(RequestId::parse("é"), Err(RequestIdError::Characters));
        assert_eq!(RequestId::parse("a\n"), Err(RequestIdError::Characters));
        // Case-sensitive: two ids.
        assert_ne!(
            RequestId::parse("ABC").unwrap(),
            RequestId::parse("abc").unwrap()
        );
    }

    #[test]
    fn deserializing_applies_the_rule() {
        let id: RequestId = serde_json::from_str("\"r-1\"").unwrap();
        assert_eq!(id.as_str(), "r-1");
        assert!(serde_json::from_str::<RequestId>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"r-1\"");
    }
}
