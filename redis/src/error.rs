//! [`Error`]: every way a call through this layer can fail, classified so a
//! caller knows whether to retry and whether the call may have run.

use std::time::Duration;

/// A boxed client error, kept as the source of [`Error::Connection`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a Redis call returned no answer.
///
/// Two questions decide what to do next: [`is_retryable`](Self::is_retryable)
/// (the same call may succeed later: a lost connection, a timeout, a
/// failover in progress) and [`may_have_run`](Self::may_have_run) (the
/// server may have executed it, so a retry must be idempotent, as every
/// script of the seckill crates is by request id).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed or was lost before the reply arrived.
    #[error(
        "Redis connection failed: {source}; the call may or may not have run: retry it (the seckill scripts are idempotent by request id)"
    )]
    Connection {
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// No reply within the call's timeout ([`Connection::timeout`](crate::Connection::timeout)).
    #[error(
        "Redis did not answer within {after:?}; the call may or may not have run: retry it, or raise the timeout with WithTimeout"
    )]
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// The server is switching roles or not ready: `READONLY` (a write
    /// reached a replica after a failover), `LOADING`, `MASTERDOWN`,
    /// `TRYAGAIN`, `CLUSTERDOWN`, `BUSY`, `NOREPLICAS` (a write refused by
    /// `min-replicas-to-write`, also from inside a script, before its first
    /// write). Nothing ran; retry shortly.
    #[error("Redis cannot serve the call right now ({message}); nothing ran: retry shortly")]
    Unavailable {
        /// The server's error text.
        message: String,
    },
    /// A cluster redirect (`MOVED`, `ASK`) reached the caller: the client
    /// followed as many redirects as it would and the slot still moved.
    #[error(
        "Redis Cluster redirect not resolved ({message}); nothing ran: retry once the cluster's slots settle"
    )]
    Redirect {
        /// The server's error text.
        message: String,
    },
    /// `CROSSSLOT`: the keys of one call live in different hash slots. A
    /// configuration error: give every key of one call the same hash tag.
    #[error(
        "the keys of one call are in different Redis Cluster slots ({message}): give them one hash tag, e.g. {{sale}}:stock and {{sale}}:log"
    )]
    CrossSlot {
        /// The server's error text.
        message: String,
    },
    /// `WRONGTYPE`: a key holds another type than the call expects, usually
    /// another program writing to the same key names.
    #[error(
        "a Redis key holds the wrong type ({message}): is another program using the same key names?"
    )]
    WrongType {
        /// The server's error text.
        message: String,
    },
    /// `NOSCRIPT`: the script is not in the server's cache. [`Script`](crate::Script)
    /// handles this itself; a caller sees it only from a raw [`Call::EvalSha`](crate::Call::EvalSha).
    #[error("the script is not loaded on this Redis server ({message}): load it or send EVAL")]
    NoScript {
        /// The server's error text.
        message: String,
    },
    /// The function is not loaded. [`Library`](crate::Library) handles this
    /// itself; a caller sees it only from a raw [`Call::FCall`](crate::Call::FCall).
    #[error("the function is not loaded on this Redis server ({message}): load its library")]
    NoFunction {
        /// The server's error text.
        message: String,
    },
    /// A Lua script raised an error or failed at run time; its writes before
    /// the failure stay (Redis never rolls a script back).
    #[error("a Redis Lua script failed: {message}")]
    Script {
        /// The server's error text.
        message: String,
    },
    /// Any other error reply from the server.
    #[error("Redis refused the call: {message}")]
    Server {
        /// The server's error text.
        message: String,
    },
    /// The reply had a shape the caller cannot read.
    #[error("unexpected reply from Redis: {0}")]
    UnexpectedReply(String),
    /// A configuration value was refused before anything was sent.
    #[error("invalid Redis configuration: {0}")]
    Config(String),
}

impl Error {
    /// Classifies an error reply by its code (the reply's first word),
    /// for adapters: `message` is the server's text, e.g.
    /// `"NOSCRIPT No matching script."`.
    pub fn from_server(message: &str) -> Self {
        let message = message.trim().to_owned();
        let code = message.split_whitespace().next().unwrap_or("");
        match code {
            "NOSCRIPT" => Error::NoScript { message },
            "WRONGTYPE" => Error::WrongType { message },
            "CROSSSLOT" => Error::CrossSlot { message },
            "MOVED" | "ASK" => Error::Redirect { message },
            "READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "BUSY"
            | "NOREPLICAS" => Error::Unavailable { message },
            _ if message.contains("Function not found") => Error::NoFunction { message },
            _ if message.contains("user_script:")
                || message.contains("user_function:")
                || message.contains("Error running script")
                || message.contains("Error in script") =>
            {
                Error::Script { message }
            }
            _ => Error::Server { message },
        }
    }

    /// Wraps a client's transport error (connection refused, reset, closed).
    pub fn connection(source: impl Into<BoxError>) -> Self {
        Error::Connection {
            source: source.into(),
        }
    }

    /// Whether the same call may succeed if sent again later: a lost
    /// connection, a timeout, a server between roles, an unresolved redirect.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Connection { .. }
                | Error::Timeout { .. }
                | Error::Unavailable { .. }
                | Error::Redirect { .. }
        )
    }

    /// Whether the server may have executed the call although no answer
    /// came back (the outcome is unknown): a lost connection or a timeout.
    /// A script that failed part way counts too, since its earlier writes stay.
    pub fn may_have_run(&self) -> bool {
        matches!(
            self,
            Error::Connection { .. } | Error::Timeout { .. } | Error::Script { .. }
        )
    }

    /// Whether this is [`Error::Connection`] or [`Error::Timeout`] or
    /// `READONLY`/`MASTERDOWN`/`NOREPLICAS`: the connection should be
    /// re-established, possibly to a new primary.
    pub fn needs_new_connection(&self) -> bool {
        match self {
            Error::Connection { .. } | Error::Timeout { .. } => true,
            Error::Unavailable { message } => {
                message.starts_with("READONLY")
                    || message.starts_with("MASTERDOWN")
                    || message.starts_with("NOREPLICAS")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_code() {
        let cases = [
            ("NOSCRIPT No matching script.", "NoScript"),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value script: x",
                "WrongType",
            ),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                "CrossSlot",
            ),
            ("MOVED 3999 127.0.0.1:6381", "Redirect"),
            ("ASK 3999 127.0.0.1:6381", "Redirect"),
            (
                "READONLY You can't write against a read only replica.",
                "Unavailable",
            ),
            ("CLUSTERDOWN The cluster is down", "Unavailable"),
            (
                "TRYAGAIN Multiple keys request during rehashing",
                "Unavailable",
            ),
            ("ERR Function not found", "NoFunction"),
            (
                "ERR user_script:3: Script attempted to access nonexistent global variable",
                "Script",
            ),
            ("ERR unknown command 'FOO'", "Server"),
        ];
        for (message, want) in cases {
            let got = Error::from_server(message);
            assert!(
                format!("{got:?}").starts_with(want),
                "{message} -> {got:?}, want {want}"
            );
        }
    }

    #[test]
    fn retry_and_outcome_questions() {
        let timeout = Error::Timeout {
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retryable() && timeout.may_have_run() && timeout.needs_new_connection());
        let readonly = Error::from_server("READONLY You can't write against a read only replica.");
        assert!(readonly.is_retryable() && !readonly.may_have_run());
        assert!(readonly.needs_new_connection());
        let cross = Error::from_server("CROSSSLOT Keys in request don't hash to the same slot");
        assert!(!cross.is_retryable() && !cross.may_have_run());
        let script = Error::from_server("ERR user_script:1: boom");
        assert!(!script.is_retryable() && script.may_have_run());
    }
}
