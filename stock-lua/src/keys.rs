//! The key layout: every key of one namespace shares the hash tag `{namespace}`.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `seckill:{ns}:stock:<sku>` | string | sellable units of the SKU |
//! | `seckill:{ns}:soldout` | set | SKUs whose stock reached 0 |
//! | `seckill:{ns}:log:<sku>` | stream | one entry per deduction and refund |
//! | `seckill:{ns}:bought:<sku>` | hash | user id → units bought |
//! | `seckill:{ns}:req:<request id>` | hash | the decided outcome, the items taken, the refund state |
//! | `seckill:{ns}:quota:<sku>` | hash | user id → units reserved (sharded stock's per-user limit) |
//! | `seckill:{ns}:qreq:<request id>` | hash | one request's quota reservation and its release state |
//!
//! The namespace contains no `{` or `}`, so the tag ends where the namespace
//! ends and every key above lands in one Redis Cluster slot: a request for
//! several SKUs of one namespace is one single-slot script call.

use crate::error::InvalidInput;

/// The longest namespace accepted, in bytes.
pub(crate) const MAX_NAMESPACE_LEN: usize = 64;

/// Builds the keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `seckill:{ns}:`
    prefix: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Result<Self, InvalidInput> {
        if namespace.is_empty() || namespace.len() > MAX_NAMESPACE_LEN {
            return Err(InvalidInput::Namespace {
                namespace: namespace.to_owned(),
            });
        }
        if namespace.contains(['{', '}']) {
            return Err(InvalidInput::Namespace {
                namespace: namespace.to_owned(),
            });
        }
        Ok(Self {
            prefix: format!("seckill:{{{namespace}}}:"),
        })
    }

    fn key(&self, kind: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len());
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push_str(id);
        key
    }

    pub(crate) fn stock(&self, sku: &str) -> String {
        self.key("stock:", sku)
    }

    pub(crate) fn sold_out(&self) -> String {
        self.key("soldout", "")
    }

    pub(crate) fn log(&self, sku: &str) -> String {
        self.key("log:", sku)
    }

    pub(crate) fn bought(&self, sku: &str) -> String {
        self.key("bought:", sku)
    }

    pub(crate) fn request(&self, request_id: &str) -> String {
        self.key("req:", request_id)
    }

    pub(crate) fn quota(&self, sku: &str) -> String {
        self.key("quota:", sku)
    }

    /// The quota scripts' keys: the reservation record, then each item's quota hash.
    pub(crate) fn quota_keys<'a>(
        &self,
        request_id: &str,
        skus: impl Iterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut keys = vec![self.key("qreq:", request_id)];
        keys.extend(skus.map(|sku| self.quota(sku)));
        keys
    }

    /// The script keys for `items`: request record, sold-out set, then the
    /// stock, log and bought keys of every item (the order the scripts expect).
    pub(crate) fn item_keys<'a>(
        &self,
        request_id: &str,
        skus: impl Iterator<Item = &'a str> + Clone,
    ) -> Vec<String> {
        let mut keys = vec![self.request(request_id), self.sold_out()];
        keys.extend(skus.clone().map(|sku| self.stock(sku)));
        keys.extend(skus.clone().map(|sku| self.log(sku)));
        keys.extend(skus.map(|sku| self.bought(sku)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_namespace_tag() {
        let keys = Keys::new("shop").unwrap();
        assert_eq!(keys.stock("a:b"), "seckill:{shop}:stock:a:b");
        assert_eq!(keys.sold_out(), "seckill:{shop}:soldout");
        assert_eq!(keys.log("x"), "seckill:{shop}:log:x");
        assert_eq!(keys.bought("x"), "seckill:{shop}:bought:x");
        assert_eq!(keys.request("r{1}"), "seckill:{shop}:req:r{1}");
        let all = keys.item_keys("r", ["a", "b"].into_iter());
        assert_eq!(all.len(), 8);
        assert!(all.iter().all(|k| k.starts_with("seckill:{shop}:")));
    }

    #[test]
    fn namespaces_that_would_break_the_tag_are_refused() {
        for bad in ["", "a}b", "a{b", &"x".repeat(65)] {
            assert!(Keys::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Keys::new("sale-2026-11").is_ok());
    }
}
