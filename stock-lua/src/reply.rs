//! The scripts' replies, parsed.

use crate::error::Error;
use crate::log::{LogEntry, LogKind};
use crate::outcome::{Decision, Outcome, Refund, RequestRecord};

/// Replies arrive as [`seckill_redis::Value`] whichever client runs
/// underneath, so parsing is shared.
pub(crate) use seckill_redis::Value as Reply;

/// Reading one reply as the shape a script promises.
pub(crate) trait Parse: Sized {
    fn unexpected(&self, what: &str) -> Error;
    fn into_int(self) -> Result<i64, Error>;
    fn into_opt_int(self) -> Result<Option<i64>, Error>;
    fn into_string(self) -> Result<String, Error>;
    fn into_array(self) -> Result<Vec<Reply>, Error>;
}

impl Parse for Reply {
    fn unexpected(&self, what: &str) -> Error {
        Error::UnexpectedReply(format!("expected {what}, got {self:?}"))
    }

    fn into_int(self) -> Result<i64, Error> {
        match self {
            Reply::Int(n) => Ok(n),
            Reply::Data(ref d) => std::str::from_utf8(d)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| self.unexpected("an integer")),
            other => Err(other.unexpected("an integer")),
        }
    }

    fn into_opt_int(self) -> Result<Option<i64>, Error> {
        match self {
            Reply::Nil => Ok(None),
            other => other.into_int().map(Some),
        }
    }

    fn into_string(self) -> Result<String, Error> {
        match self {
            Reply::Data(d) => String::from_utf8(d)
                .map_err(|e| Error::UnexpectedReply(format!("a reply is not UTF-8: {e}"))),
            Reply::Int(n) => Ok(n.to_string()),
            other => Err(other.unexpected("a string")),
        }
    }

    fn into_array(self) -> Result<Vec<Reply>, Error> {
        match self {
            Reply::Array(items) => Ok(items),
            Reply::Nil => Ok(Vec::new()),
            other => Err(other.unexpected("an array")),
        }
    }
}

fn non_negative(n: i64) -> Result<u64, Error> {
    u64::try_from(n).map_err(|_| Error::UnexpectedReply(format!("negative amount {n}")))
}

/// Parses the deduct script's `{ code, replayed, sku, number }` for
/// `request_id`; `replayed` 2 (the id was decided for another request)
/// becomes [`Error::RequestConflict`].
pub(crate) fn decision(reply: Reply, request_id: &str) -> Result<Decision, Error> {
    let mut parts = reply.into_array()?.into_iter();
    let (Some(code), Some(replayed), Some(sku), Some(number), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Error::UnexpectedReply(
            "the deduct script must answer 4 values".into(),
        ));
    };
    let replayed = replayed.into_int()?;
    let outcome = outcome(code.into_int()?, sku.into_string()?, number.into_int()?)?;
    match replayed {
        0 | 1 => Ok(Decision {
            outcome,
            replayed: replayed == 1,
        }),
        2 => Err(Error::RequestConflict {
            request_id: request_id.to_owned(),
            stored: outcome,
        }),
        other => Err(Error::UnexpectedReply(format!(
            "unknown deduct replay flag {other}"
        ))),
    }
}

/// Maps a stored or answered outcome code (see `deduct.lua`) to an [`Outcome`].
fn outcome(code: i64, sku: String, number: i64) -> Result<Outcome, Error> {
    Ok(match code {
        0 => Outcome::Deducted,
        1 => Outcome::Insufficient {
            sku,
            available: non_negative(number)?,
        },
        2 => Outcome::SoldOut { sku },
        3 => Outcome::LimitExceeded {
            sku,
            bought: non_negative(number)?,
        },
        4 => Outcome::Cancelled,
        -1 => return Err(Error::UnknownSku { sku }),
        other => {
            return Err(Error::UnexpectedReply(format!(
                "unknown deduct code {other}"
            )));
        }
    })
}

/// Parses a request record (`HGETALL`); `None` when there is none.
pub(crate) fn record(reply: Reply) -> Result<Option<RequestRecord>, Error> {
    let flat = reply.into_array()?;
    if flat.is_empty() {
        return Ok(None);
    }
    let (mut code, mut sku, mut number) = (None, String::new(), 0);
    let mut user_id = String::new();
    let mut items = Vec::new();
    let mut refunded = false;
    let mut pairs = flat.into_iter();
    while let (Some(field), Some(value)) = (pairs.next(), pairs.next()) {
        let field = field.into_string()?;
        match field.as_str() {
            "o" => code = Some(value.into_int()?),
            "s" => sku = value.into_string()?,
            "n" => number = value.into_int()?,
            "u" => user_id = value.into_string()?,
            "st" => refunded = value.into_string()? == "r",
            other => {
                if let Some(item) = other.strip_prefix("q:") {
                    items.push((item.to_owned(), non_negative(value.into_int()?)?));
                }
            }
        }
    }
    let code =
        code.ok_or_else(|| Error::UnexpectedReply("a request record has no outcome field".into()))?;
    Ok(Some(RequestRecord {
        outcome: outcome(code, sku, number)?,
        user_id,
        items,
        refunded,
    }))
}

/// What the refund script answered.
pub(crate) enum RefundReply {
    Done(Refund),
    /// The items read from the record do not match it: read again.
    Stale,
}

/// Parses the refund script's `{ code }`; `items` are what was sent.
pub(crate) fn refund(reply: Reply, items: Vec<(String, u64)>) -> Result<RefundReply, Error> {
    let code = reply
        .into_array()?
        .into_iter()
        .next()
        .ok_or_else(|| Error::UnexpectedReply("the refund script answered nothing".into()))?
        .into_int()?;
    Ok(match code {
        0 => RefundReply::Done(Refund::Refunded { items }),
        1 => RefundReply::Done(Refund::AlreadyRefunded),
        2 => RefundReply::Done(Refund::NothingDeducted),
        3 => RefundReply::Done(Refund::NotFound),
        -2 => RefundReply::Stale,
        other => {
            return Err(Error::UnexpectedReply(format!(
                "unknown refund code {other}"
            )));
        }
    })
}

/// The items of a request record (`HGETALL`): fields `q:<sku>` → quantity.
pub(crate) fn record_items(reply: Reply) -> Result<Vec<(String, u64)>, Error> {
    let flat = reply.into_array()?;
    let mut items = Vec::new();
    let mut pairs = flat.into_iter();
    while let (Some(field), Some(value)) = (pairs.next(), pairs.next()) {
        let field = field.into_string()?;
        if let Some(sku) = field.strip_prefix("q:") {
            items.push((sku.to_owned(), non_negative(value.into_int()?)?));
        }
    }
    Ok(items)
}

/// Parses the trim script's `{ dropped, more }`.
pub(crate) fn trimmed(reply: Reply) -> Result<(u64, bool), Error> {
    let mut parts = reply.into_array()?.into_iter();
    match (parts.next(), parts.next()) {
        (Some(dropped), Some(more)) => {
            Ok((non_negative(dropped.into_int()?)?, more.into_int()? != 0))
        }
        _ => Err(Error::UnexpectedReply(
            "the trim script must answer 2 values".into(),
        )),
    }
}

/// Parses the add-stock script's `{ status, stock }`.
pub(crate) fn added(reply: Reply) -> Result<(bool, u64), Error> {
    let mut parts = reply.into_array()?.into_iter();
    match (parts.next(), parts.next()) {
        (Some(status), Some(stock)) => {
            Ok((status.into_int()? == 0, non_negative(stock.into_int()?)?))
        }
        _ => Err(Error::UnexpectedReply(
            "the add-stock script must answer 2 values".into(),
        )),
    }
}

/// Parses `XRANGE` entries.
pub(crate) fn log_entries(reply: Reply) -> Result<Vec<LogEntry>, Error> {
    reply.into_array()?.into_iter().map(log_entry).collect()
}

fn log_entry(entry: Reply) -> Result<LogEntry, Error> {
    let mut parts = entry.into_array()?.into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(Error::UnexpectedReply(
            "a stream entry without fields".into(),
        ));
    };
    let id = id.into_string()?;
    let time_ms = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .ok_or_else(|| Error::UnexpectedReply(format!("stream id {id:?}")))?;
    let (mut request_id, mut user_id, mut quantity, mut kind) = (None, None, None, None);
    let mut fields = fields.into_array()?.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.into_string()?.as_str() {
            "r" => request_id = Some(value.into_string()?),
            "u" => user_id = Some(value.into_string()?),
            "q" => quantity = Some(non_negative(value.into_int()?)?),
            "k" => {
                kind = Some(match value.into_string()?.as_str() {
                    "r" => LogKind::Refund,
                    _ => LogKind::Deduction,
                })
            }
            _ => {}
        }
    }
    match (request_id, user_id, quantity, kind) {
        (Some(request_id), Some(user_id), Some(quantity), Some(kind)) => Ok(LogEntry {
            id,
            time_ms,
            request_id,
            user_id,
            quantity,
            kind,
        }),
        _ => Err(Error::UnexpectedReply(format!(
            "log entry {id} lacks a field"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Reply {
        Reply::Data(s.as_bytes().to_vec())
    }

    #[test]
    fn deduct_codes_map_to_outcomes() {
        let r = |code, replayed, sku: &str, n| {
            decision(
                Reply::Array(vec![
                    Reply::Int(code),
                    Reply::Int(replayed),
                    data(sku),
                    Reply::Int(n),
                ]),
                "req",
            )
        };
        assert_eq!(
            r(0, 0, "", 0).unwrap(),
            Decision {
                outcome: Outcome::Deducted,
                replayed: false
            }
        );
        assert_eq!(
            r(1, 1, "a", 3).unwrap().outcome,
            Outcome::Insufficient {
                sku: "a".into(),
                available: 3
            }
        );
        assert!(r(1, 1, "a", 3).unwrap().replayed);
        assert_eq!(
            r(2, 0, "b", 0).unwrap().outcome,
            Outcome::SoldOut { sku: "b".into() }
        );
        assert_eq!(
            r(3, 0, "c", 2).unwrap().outcome,
            Outcome::LimitExceeded {
                sku: "c".into(),
                bought: 2
            }
        );
        assert_eq!(r(4, 1, "", 0).unwrap().outcome, Outcome::Cancelled);
        assert!(matches!(r(-1, 0, "z", 0), Err(Error::UnknownSku { sku }) if sku == "z"));
        assert!(matches!(r(9, 0, "", 0), Err(Error::UnexpectedReply(_))));
        assert!(matches!(
            decision(Reply::Int(1), "req"),
            Err(Error::UnexpectedReply(_))
        ));
        assert!(matches!(
            r(2, 2, "s", 0),
            Err(Error::RequestConflict { request_id, stored: Outcome::SoldOut { sku } })
                if request_id == "req" && sku == "s"
        ));
        assert!(matches!(r(0, 3, "", 0), Err(Error::UnexpectedReply(_))));
    }

    #[test]
    fn record_items_skip_other_fields() {
        let flat = Reply::Array(vec![
            data("o"),
            data("0"),
            data("q:a"),
            data("2"),
            data("u"),
            data("x"),
            data("q:b:c"),
            data("1"),
        ]);
        assert_eq!(
            record_items(flat).unwrap(),
            vec![("a".to_owned(), 2), ("b:c".to_owned(), 1)]
        );
    }

    #[test]
    fn log_entries_parse() {
        let entry = Reply::Array(vec![
            data("1700000000123-0"),
            Reply::Array(vec![
                data("r"),
                data("req"),
                data("u"),
                data("bob"),
                data("q"),
                data("3"),
                data("k"),
                data("d"),
            ]),
        ]);
        let parsed = log_entries(Reply::Array(vec![entry])).unwrap();
        assert_eq!(
            parsed,
            vec![LogEntry {
                id: "1700000000123-0".into(),
                time_ms: 1_700_000_000_123,
                request_id: "req".into(),
                user_id: "bob".into(),
                quantity: 3,
                kind: LogKind::Deduction,
            }]
        );
    }
}
