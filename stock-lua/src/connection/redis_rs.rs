//! The redis-rs adapter: maps a [`Call`] to a `redis::Cmd` and the reply back.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};

use super::{Call, ClientError, Connection, ScriptBy, sealed::Sealed};
use crate::reply::Reply;

impl Sealed for MultiplexedConnection {}
impl Sealed for ConnectionManager {}

impl Connection for MultiplexedConnection {
    fn call(&self, call: Call<'_>) -> impl Future<Output = Result<Reply, ClientError>> + Send {
        send(self.clone(), command(call))
    }
}

impl Connection for ConnectionManager {
    fn call(&self, call: Call<'_>) -> impl Future<Output = Result<Reply, ClientError>> + Send {
        send(self.clone(), command(call))
    }
}

fn command(call: Call<'_>) -> redis::Cmd {
    match call {
        Call::Script { by, keys, args } => {
            let (name, target) = match by {
                ScriptBy::Sha(sha) => ("EVALSHA", sha),
                ScriptBy::Code(code) => ("EVAL", code),
                ScriptBy::Function(function) => ("FCALL", function),
            };
            let mut cmd = redis::cmd(name);
            cmd.arg(target).arg(keys.len()).arg(keys).arg(args);
            cmd
        }
        Call::FunctionLoad { code } => {
            let mut cmd = redis::cmd("FUNCTION");
            cmd.arg("LOAD").arg("REPLACE").arg(code);
            cmd
        }
        Call::Keyed {
            cmd: name,
            key,
            args,
        } => {
            let mut cmd = redis::cmd(name);
            cmd.arg(key).arg(args);
            cmd
        }
    }
}

async fn send(mut conn: impl ConnectionLike + Send, cmd: redis::Cmd) -> Result<Reply, ClientError> {
    match cmd.query_async::<redis::Value>(&mut conn).await {
        Ok(value) => Ok(reply(value)),
        Err(e) => {
            let message = format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""));
            Err(ClientError::new(e, message.trim_start()))
        }
    }
}

fn reply(value: redis::Value) -> Reply {
    use redis::Value as V;
    match value {
        V::Nil => Reply::Nil,
        V::Int(n) => Reply::Int(n),
        V::BulkString(data) => Reply::Data(data),
        V::SimpleString(s) => Reply::Data(s.into_bytes()),
        V::VerbatimString { text, .. } => Reply::Data(text.into_bytes()),
        V::Okay => Reply::Data(b"OK".to_vec()),
        V::Array(items) | V::Set(items) => Reply::Array(items.into_iter().map(reply).collect()),
        V::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [reply(k), reply(v)])
                .collect(),
        ),
        V::Attribute { data, .. } => reply(*data),
        other => Reply::Other(format!("{other:?}")),
    }
}
