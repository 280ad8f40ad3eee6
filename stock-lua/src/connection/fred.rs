//! The fred adapter: maps a [`Call`] to fred's typed commands and the reply back.

use fred::clients::Client;
use fred::interfaces::{ClientLike, FunctionInterface, LuaInterface};
use fred::types::{ClusterHash, CustomCommand, Value};

use super::{Call, ClientError, Connection, sealed::Sealed};
use crate::reply::Reply;

impl Sealed for Client {}

impl Connection for Client {
    async fn call(&self, call: Call<'_>) -> Result<Reply, ClientError> {
        let result: Result<Value, fred::error::Error> = match call {
            Call::EvalSha { sha, keys, args } => {
                self.evalsha(sha, keys.to_vec(), args.to_vec()).await
            }
            Call::FCall {
                function,
                keys,
                args,
            } => self.fcall(function, keys.to_vec(), args.to_vec()).await,
            Call::Eval { code, keys, args } => self.eval(code, keys.to_vec(), args.to_vec()).await,
            Call::FunctionLoad { code } => self.function_load_cluster(true, code).await,
            Call::Keyed { cmd, key, args } => {
                let mut all = Vec::with_capacity(args.len() + 1);
                all.push(key.to_owned());
                all.extend_from_slice(args);
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
