//! The crate's one configuration error: every part validates its settings
//! into it, so a message always reads `FIELD must be RANGE, got VALUE`.

use std::fmt::Display;

/// A setting outside its documented range. Nothing was built; fix the value
/// the message names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be {range}, got {got}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, named as the method that takes it (`max_concurrent`,
    /// `window`, `quota`…).
    pub field: &'static str,
    /// Its valid values, e.g. `1 to 1000000`.
    pub range: String,
    /// The value given, as the message shows it.
    pub got: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, range: impl Into<String>, got: impl Display) -> Self {
        Self {
            field,
            range: range.into(),
            got: got.to_string(),
        }
    }
}
