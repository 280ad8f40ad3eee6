//! [`Value`]: a Redis reply, reduced to what scripts and commands return.

/// A Redis reply as every adapter hands it over, so the crates above parse
/// one type whichever client runs underneath.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// No value (a nil bulk string or array, RESP3 null).
    Nil,
    /// An integer.
    Int(i64),
    /// A string: bulk, simple or verbatim, and `OK` as `b"OK"`.
    Data(Vec<u8>),
    /// An array, a set, or a map flattened to key, value, key, value.
    Array(Vec<Value>),
    /// Any other reply (a double, a boolean, ...), in the client's own words.
    Other(String),
}

impl Value {
    /// The integer, also when sent as a decimal string.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Data(d) => std::str::from_utf8(d).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The bytes of a string reply.
    pub fn as_data(&self) -> Option<&[u8]> {
        match self {
            Value::Data(d) => Some(d),
            _ => None,
        }
    }

    /// The string reply as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_data()?).ok()
    }

    /// Whether this is [`Value::Nil`].
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_from_both_shapes() {
        assert_eq!(Value::Int(7).as_int(), Some(7));
        assert_eq!(Value::Data(b"-12".to_vec()).as_int(), Some(-12));
        assert_eq!(Value::Data(b"x".to_vec()).as_int(), None);
        assert_eq!(Value::Nil.as_int(), None);
        assert_eq!(Value::Data(b"ok".to_vec()).as_str(), Some("ok"));
        assert!(Value::Nil.is_nil());
    }
}
