//! The fred adapter (feature `fred`): [`Connection`] for
//! `fred::clients::Client` and `fred::clients::Pool` (single node,
//! clustered and sentinel configs alike: fred routes and fails over by
//! itself), and [`connect`], which builds a client from a URL.

use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, FunctionInterface, LuaInterface};
use fred::prelude::{Builder, ReconnectPolicy};
use fred::types::config::{Config, ServerConfig};
use fred::types::{ClusterHash, CustomCommand, Key, MultipleKeys};

use crate::call::{Arg, Call};
use crate::connection::Connection;
use crate::error::Error;
use crate::topology::Topology;
use crate::value::Value;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Connection for Client {
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send {
        send(self, call)
    }
}

impl Connection for Pool {
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send {
        send(self, call)
    }
}

async fn send<C>(client: &C, call: Call<'_>) -> Result<Value, Error>
where
    C: ClientLike + LuaInterface + FunctionInterface + Sync,
{
    let result: Result<fred::types::Value, fred::error::Error> = match call {
        Call::EvalSha { sha, keys, args } => {
            client.evalsha(sha, fred_keys(keys), fred_args(args)).await
        }
        Call::Eval { code, keys, args } => {
            client.eval(code, fred_keys(keys), fred_args(args)).await
        }
        Call::FCall {
            function,
            keys,
            args,
        } => {
            client
                .fcall(function, fred_keys(keys), fred_args(args))
                .await
        }
        Call::ScriptLoad { code } => client
            .script_load_cluster::<fred::types::Value, _>(code)
            .await
            .map(|_| fred::types::Value::Null),
        Call::FunctionLoad { code } => client.function_load_cluster(true, code).await,
        Call::Command { name, keys, args } => {
            let mut all = Vec::with_capacity(keys.len() + args.len());
            all.extend(keys.iter().map(|k| fred::types::Value::from(*k)));
            all.extend(fred_args(args));
            let hash = if keys.is_empty() {
                ClusterHash::Random
            } else {
                ClusterHash::FirstKey
            };
            client
                .custom(CustomCommand::new_static(name, hash, false), all)
                .await
        }
    };
    match result {
        Ok(value) => Ok(reply(value)),
        Err(e) => Err(error(e)),
    }
}

/// Transport failures (I/O, timeouts, a cancelled or unroutable command)
/// are connection errors; the rest carry the server's reply text.
fn error(e: fred::error::Error) -> Error {
    use fred::error::ErrorKind as K;
    match e.kind() {
        K::IO | K::Timeout | K::Canceled | K::Routing | K::Backpressure | K::Sentinel => {
            Error::connection(e)
        }
        K::Config | K::Url => Error::Config(e.details().to_owned()),
        K::Parse | K::Protocol => Error::UnexpectedReply(e.details().to_owned()),
        // fred gave up re-sending while a cluster re-routed: nothing known ran.
        _ if e.details().contains("Too many failed write attempts")
            || e.details().contains("Max attempts exceeded") =>
        {
            Error::connection(e)
        }
        _ if e.details().contains("Max redirections") => Error::Redirect {
            message: e.details().to_owned(),
        },
        // fred refuses keys of several slots itself, before sending.
        _ if e.details().contains("same cluster node") => Error::CrossSlot {
            message: e.details().to_owned(),
        },
        _ => Error::from_server(e.details()),
    }
}

fn fred_keys(keys: &[&str]) -> MultipleKeys {
    keys.iter().map(|k| Key::from(*k)).collect()
}

fn fred_args(args: &[Arg<'_>]) -> Vec<fred::types::Value> {
    use fred::types::Value as V;
    args.iter()
        .map(|arg| match *arg {
            Arg::Str(s) => V::from(s),
            Arg::Bytes(b) => V::Bytes(b.to_vec().into()),
            Arg::Int(n) => V::Integer(n),
            Arg::UInt(n) => i64::try_from(n).map_or_else(|_| V::from(n.to_string()), V::Integer),
        })
        .collect()
}

fn reply(value: fred::types::Value) -> Value {
    use fred::types::Value as V;
    match value {
        V::Null => Value::Nil,
        V::Integer(n) => Value::Int(n),
        V::String(s) => Value::Data(s.to_string().into_bytes()),
        V::Bytes(b) => Value::Data(b.to_vec()),
        V::Array(items) => Value::Array(items.into_iter().map(reply).collect()),
        V::Map(map) => Value::Array(
            map.inner()
                .into_iter()
                .flat_map(|(k, v)| [reply(V::from(k)), reply(v)])
                .collect(),
        ),
        V::Queued => Value::Data(b"QUEUED".to_vec()),
        other => Value::Other(format!("{other:?}")),
    }
}

/// Builds and connects a fred client for the deployment `url` names (see
/// [`Topology`]), reconnecting with a capped exponential back-off (100 ms
/// to 2 s, forever) and failing a call that waits more than the default
/// per-call timeout, so no call hangs after a server dies.
///
/// # Errors
///
/// [`Error::Config`] for a bad URL; [`Error::Connection`] when the first
/// connection fails.
pub async fn connect(url: &str) -> Result<Client, Error> {
    let topology = Topology::parse(url)?;
    let mut config = match &topology {
        Topology::Single { url } => Config::from_url(url).map_err(error)?,
        Topology::Cluster { nodes, .. } => Config {
            server: ServerConfig::new_clustered(host_ports(nodes)?),
            ..Config::default()
        },
        Topology::Sentinel {
            sentinels, master, ..
        } => Config {
            server: ServerConfig::new_sentinel(host_ports(sentinels)?, master.clone()),
            ..Config::default()
        },
    };
    if let Topology::Cluster {
        credentials: Some(c),
        ..
    }
    | Topology::Sentinel {
        credentials: Some(c),
        ..
    } = &topology
    {
        // The data nodes' credentials; Sentinels are asked without any
        // (fred's `sentinel-auth` keeps the two apart).
        let (user, password) = c.split_once(':').unwrap_or(("", c));
        config.username = (!user.is_empty()).then(|| user.to_owned());
        config.password = Some(password.to_owned());
    }
    let client = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .with_connection_config(|c| {
            c.connection_timeout = CONNECT_TIMEOUT;
            c.internal_command_timeout = crate::DEFAULT_TIMEOUT;
        })
        .with_performance_config(|p| p.default_command_timeout = crate::DEFAULT_TIMEOUT)
        .build()
        .map_err(error)?;
    client.init().await.map_err(error)?;
    Ok(client)
}

fn host_ports(nodes: &[String]) -> Result<Vec<(String, u16)>, Error> {
    nodes
        .iter()
        .map(|node| {
            node.rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                .ok_or_else(|| Error::Config(format!("{node:?} is not host:port")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error as FredError, ErrorKind};

    #[test]
    fn fred_errors_are_classified() {
        let cases = [
            (ErrorKind::IO, "Connection closed.", "Connection"),
            (ErrorKind::Timeout, "Request timed out.", "Connection"),
            (
                ErrorKind::Unknown,
                "Too many failed write attempts.",
                "Connection",
            ),
            (
                ErrorKind::Unknown,
                "NOSCRIPT No matching script.",
                "NoScript",
            ),
            (
                ErrorKind::InvalidArgument,
                "All keys must belong to the same cluster node.",
                "CrossSlot",
            ),
            (
                ErrorKind::Unknown,
                "NOREPLICAS Not enough good replicas to write.",
                "Unavailable",
            ),
            (ErrorKind::Cluster, "MOVED 3999 127.0.0.1:6381", "Redirect"),
            (ErrorKind::Url, "bad url", "Config"),
        ];
        for (kind, details, want) in cases {
            let got = error(FredError::new(kind, details));
            assert!(format!("{got:?}").starts_with(want), "{details} -> {got:?}");
        }
    }
}
