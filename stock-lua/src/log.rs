//! The per-SKU deduction log: one stream entry per deduction and refund.

/// What a [`LogEntry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogKind {
    /// Units were taken by a deduction.
    Deduction,
    /// Units were put back by a refund.
    Refund,
}

/// One entry of a SKU's deduction log, appended by the same script call that
/// changed the stock, so the log never misses or invents a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogEntry {
    /// The stream entry id (`<ms>-<seq>`): pass it as `after` to read on.
    pub id: String,
    /// Redis server time of the change, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The request that changed the stock.
    pub request_id: String,
    /// The buyer.
    pub user_id: String,
    /// Units taken or put back.
    pub quantity: u64,
    /// Deduction or refund.
    pub kind: LogKind,
}
