//! The blacklist: users, client addresses and devices whose purchases are
//! refused before any limiter, Redis or Kafka work. The record is shared by
//! every instance (the `redis/blacklist` edge); each instance answers from
//! this in-process copy, swapped whole when the record changes.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::buyer::{Buyer, DeviceId};

/// Most entries of one kind (users, addresses or devices): every instance
/// holds the whole list in memory and reloads it on every change.
pub const MAX_ENTRIES: u64 = 100_000;

/// The three lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// User ids.
    Users,
    /// Client IP addresses (exact; IPv4-mapped IPv6 counts as IPv4).
    Ips,
    /// Device ids bound into tokens.
    Devices,
}

impl ListKind {
    /// Every kind.
    pub const ALL: [ListKind; 3] = [ListKind::Users, ListKind::Ips, ListKind::Devices];

    /// Its name in URLs, keys and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Users => "users",
            ListKind::Ips => "ips",
            ListKind::Devices => "devices",
        }
    }

    /// `value` in its canonical form for this list.
    ///
    /// # Errors
    ///
    /// Not a user id (a decimal `u64`), an IP address or a device id.
    pub fn canonical(self, value: &str) -> Result<String, EntryError> {
        let bad = || EntryError {
            kind: self,
            value: value.chars().take(80).collect(),
        };
        match self {
            ListKind::Users => value
                .parse::<u64>()
                .map(|u| u.to_string())
                .map_err(|_| bad()),
            ListKind::Ips => IpAddr::from_str(value)
                .map(|ip| ip.to_canonical().to_string())
                .map_err(|_| bad()),
            ListKind::Devices => DeviceId::parse(value)
                .map(|d| d.as_str().to_owned())
                .map_err(|_| bad()),
        }
    }
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ListKind {
    type Err = UnknownList;

    fn from_str(s: &str) -> Result<Self, UnknownList> {
        ListKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or(UnknownList)
    }
}

/// A list name other than `users`, `ips`, `devices`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the blacklists are `users`, `ips` and `devices`")]
pub struct UnknownList;

/// A value that does not belong on its list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a valid entry of the {kind} blacklist (users: a user id; ips: an IP address; devices: 1 to 64 bytes of visible ASCII)"
)]
pub struct EntryError {
    /// The list.
    pub kind: ListKind,
    /// The value (at most 80 characters of it).
    pub value: String,
}

/// The entries of the three lists, in canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    /// Blocked users.
    pub users: HashSet<u64>,
    /// Blocked addresses.
    pub ips: HashSet<IpAddr>,
    /// Blocked devices.
    pub devices: HashSet<String>,
}

impl Entries {
    /// Entries from the record's strings; a malformed one (written around
    /// the app) is skipped and counted.
    pub fn from_record(users: &[String], ips: &[String], devices: &[String]) -> (Self, usize) {
        let mut skipped = 0;
        let mut entries = Entries::default();
        for u in users {
            match u.parse() {
                Ok(u) => drop(entries.users.insert(u)),
                Err(_) => skipped += 1,
            }
        }
        for ip in ips {
            match IpAddr::from_str(ip) {
                Ok(ip) => drop(entries.ips.insert(ip.to_canonical())),
                Err(_) => skipped += 1,
            }
        }
        for d in devices {
            match DeviceId::parse(d) {
                Ok(_) => drop(entries.devices.insert(d.clone())),
                Err(_) => skipped += 1,
            }
        }
        (entries, skipped)
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.ips.is_empty() && self.devices.is_empty()
    }
}

/// Which list refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this {0} is blocked from buying")]
pub struct Blocked(pub Blocking);

/// What was found on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// The user.
    User,
    /// The client address.
    Ip,
    /// The device.
    Device,
}

impl fmt::Display for Blocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blocking::User => "user",
            Blocking::Ip => "address",
            Blocking::Device => "device",
        })
    }
}

/// This instance's copy of the lists: checked on every purchase without a
/// lock (one atomic load), replaced whole when the record changes.
#[derive(Debug, Clone, Default)]
pub struct Blacklist {
    current: Arc<ArcSwap<Entries>>,
}

impl Blacklist {
    /// An empty blacklist.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the copy.
    pub fn replace(&self, entries: Entries) {
        self.current.store(Arc::new(entries));
    }

    /// The current copy.
    pub fn entries(&self) -> Arc<Entries> {
        self.current.load_full()
    }

    /// Whether `buyer` from `ip` may go on.
    ///
    /// # Errors
    ///
    /// The user, the address or the device is on its list (checked in
    /// that order).
    pub fn check(&self, buyer: &Buyer, ip: IpAddr) -> Result<(), Blocked> {
        let entries = self.current.load();
        if entries.is_empty() {
            return Ok(());
        }
        if entries.users.contains(&buyer.user_id) {
            return Err(Blocked(Blocking::User));
        }
        if entries.ips.contains(&ip.to_canonical()) {
            return Err(Blocked(Blocking::Ip));
        }
        if let Some(device) = &buyer.device
            && entries.devices.contains(device.as_str())
        {
            return Err(Blocked(Blocking::Device));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buyer(user_id: u64, device: Option<&str>) -> Buyer {
        Buyer {
            user_id,
            device: device.map(|d| DeviceId::parse(d).unwrap()),
        }
    }

    #[test]
    fn each_list_blocks_its_own() {
        let list = Blacklist::new();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(list.check(&buyer(1, Some("d")), ip), Ok(()));
        let (entries, skipped) = Entries::from_record(
            &["1".into(), "x".into()],
            &["10.0.0.1".into(), "::ffff:10.0.0.3".into()],
            &["d".into(), "".into()],
        );
        assert_eq!(skipped, 2);
        list.replace(entries);
        assert_eq!(
            list.check(&buyer(1, None), other),
            Err(Blocked(Blocking::User))
        );
        assert_eq!(list.check(&buyer(2, None), ip), Err(Blocked(Blocking::Ip)));
        // An IPv4-mapped address is the IPv4 one.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            list.check(&buyer(2, None), mapped),
            Err(Blocked(Blocking::Ip))
        );
        let v4: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(list.check(&buyer(2, None), v4), Err(Blocked(Blocking::Ip)));
        assert_eq!(
            list.check(&buyer(2, Some("d")), other),
            Err(Blocked(Blocking::Device))
        );
        assert_eq!(list.check(&buyer(2, Some("e")), other), Ok(()));
        list.replace(Entries::default());
        assert_eq!(list.check(&buyer(1, Some("d")), ip), Ok(()));
    }

    #[test]
    fn entries_are_canonical_and_checked() {
        assert_eq!(ListKind::Users.canonical("007").unwrap(), "7");
        assert_eq!(
            ListKind::Ips.canonical("::ffff:1.2.3.4").unwrap(),
            "1.2.3.4"
        );
        assert!(ListKind::Users.canonical("-1").is_err());
        assert!(ListKind::Ips.canonical("1.2.3").is_err());
        assert!(ListKind::Devices.canonical("a b").is_err());
        assert_eq!("ips".parse::<ListKind>(), Ok(ListKind::Ips));
        assert_eq!("ip".parse::<ListKind>(), Err(UnknownList));
    }
}
