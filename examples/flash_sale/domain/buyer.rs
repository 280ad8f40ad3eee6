//! Who is buying: the authenticated user, the device their token was bound
//! to, and where the request came from.

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::LazyLock;

/// Longest device id, in bytes.
pub const DEVICE_ID_MAX: usize = 64;

/// A device id: 1 to [`DEVICE_ID_MAX`] bytes of visible ASCII (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

/// A device id that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a device id must be 1 to {DEVICE_ID_MAX} bytes of visible ASCII")]
pub struct DeviceIdError;

impl DeviceId {
    /// Checks `value` against the rule.
    ///
    /// # Errors
    ///
    /// Empty, longer than [`DEVICE_ID_MAX`], or a byte outside `!`..=`~`.
    pub fn parse(value: &str) -> Result<Self, DeviceIdError> {
        let valid = (1..=DEVICE_ID_MAX).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(DeviceIdError)
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A 64-bit key for the per-device limiter: a keyed hash (the key is
    /// random per process, so a client cannot aim two device ids at one slot).
    pub fn key(&self) -> u64 {
        static HASHER: LazyLock<std::collections::hash_map::RandomState> =
            LazyLock::new(std::collections::hash_map::RandomState::new);
        HASHER.hash_one(&self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A buyer whose identity was proven (a signed token): the user and, when
/// the token was bound to one, the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    /// The user (the token's subject).
    pub user_id: u64,
    /// The device the token was issued to.
    pub device: Option<DeviceId>,
}

/// Where one request comes from, as the per-client limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// The key of its bound device ([`DeviceId::key`]), if any.
    pub device: Option<u64>,
}

impl Client {
    /// A client at `ip` with no bound device.
    #[cfg(test)]
    pub const fn at(ip: IpAddr) -> Self {
        Self { ip, device: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_follow_the_rule() {
        assert!(DeviceId::parse("phone-1").is_ok());
        assert!(DeviceId::parse(&"x".repeat(DEVICE_ID_MAX)).is_ok());
        for bad in ["", " a", "a b", "é", "x".repeat(DEVICE_ID_MAX + 1).as_str()] {
            assert_eq!(DeviceId::parse(bad), Err(DeviceIdError), "{bad:?}");
        }
        let a = DeviceId::parse("a").unwrap();
        assert_eq!(a.key(), DeviceId::parse("a").unwrap().key());
        assert_ne!(a.key(), DeviceId::parse("b").unwrap().key());
    }
}
