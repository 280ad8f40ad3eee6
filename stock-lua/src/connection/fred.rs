//! The fred adapter: maps a [`Call`] to fred's typed commands and the reply back.

use fred::clients::Client;
use fred::interfaces::{ClientLike, FunctionInterface, LuaInterface};
use fred::types::{ClusterHash, CustomCommand, Key, MultipleKeys, Value};

use super::{Call, ClientError, Connection, ScriptBy, sealed::Sealed};
use crate::reply::Reply;

impl Sealed for Client {}

impl Connection for Client {
    async fn call(&self, call: Call<'_>) -> Result<Reply, ClientError> {
        let result: Result<Value, fred::error::Error> = match call {
            Call::Script { by, keys, args } => {
                let (keys, args) = (fred_keys(keys), fred_args(args));
                match by {
                    ScriptBy::Sha(sha) => self.evalsha(sha, keys, args).await,
                    ScriptBy::Code(code) => self.eval(code, keys, args).await,
                    ScriptBy::Function(function) => self.fcall(function, keys, args).await,
                }
            }
            Call::FunctionLoad { code } => self.function_load_cluster(true, code).await,
            Call::Keyed { cmd, key, args } => {
                let mut all = Vec::with_capacity(args.len() + 1);
                all.push(Value::from(key));
                all.extend(args.iter().map(|a| Value::from(a.as_str())));
                self.custom(
                    CustomCommand::new_static(cmd, ClusterHash::FirstKey, false),
                    all,
                )
                .await
            }
        };
        match result {
            Ok(value) => Ok(reply(value)),
            Err(e) => {
                let message = e.details().to_owned();
                Err(ClientError::new(e, &message))
            }
        }
    }
}

/// Copies each key once, straight into fred's type.
fn fred_keys(keys: &[String]) -> MultipleKeys {
    keys.iter().map(|k| Key::from(k.as_str())).collect()
}

fn fred_args(args: &[String]) -> Vec<Value> {
    args.iter().map(|a| Value::from(a.as_str())).collect()
}

fn reply(value: Value) -> Reply {
    match value {
        Value::Null => Reply::Nil,
        Value::Integer(n) => Reply::Int(n),
        Value::String(s) => Reply::Data(s.to_string().into_bytes()),
        Value::Bytes(b) => Reply::Data(b.to_vec()),
        Value::Array(items) => Reply::Array(items.into_iter().map(reply).collect()),
        Value::Map(map) => Reply::Array(
            map.inner()
                .into_iter()
                .flat_map(|(k, v)| [reply(Value::from(k)), reply(v)])
                .collect(),
        ),
        other => Reply::Other(format!("{other:?}")),
    }
}
