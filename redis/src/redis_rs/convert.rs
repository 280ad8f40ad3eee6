//! A [`Call`] as a `redis::Cmd`, and redis-rs replies and errors as ours.

use redis::aio::ConnectionLike;

use crate::call::{Arg, Call};
use crate::error::Error;
use crate::value::Value;

pub(crate) fn command(call: Call<'_>) -> redis::Cmd {
    fn script(name: &str, target: &str, keys: &[&str], args: &[Arg<'_>]) -> redis::Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(target).arg(keys.len()).arg(keys);
        push_args(&mut cmd, args);
        cmd
    }
    match call {
        Call::EvalSha { sha, keys, args } => script("EVALSHA", sha, keys, args),
        Call::Eval { code, keys, args } => script("EVAL", code, keys, args),
        Call::FCall {
            function,
            keys,
            args,
        } => script("FCALL", function, keys, args),
        Call::ScriptLoad { code } => {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(code);
            cmd
        }
        Call::FunctionLoad { code } => {
            let mut cmd = redis::cmd("FUNCTION");
            cmd.arg("LOAD").arg("REPLACE").arg(code);
            cmd
        }
        Call::Command { name, keys, args } => {
            let mut cmd = redis::cmd(name);
            cmd.arg(keys);
            push_args(&mut cmd, args);
            cmd
        }
    }
}

fn push_args(cmd: &mut redis::Cmd, args: &[Arg<'_>]) {
    for arg in args {
        match *arg {
            Arg::Str(s) => cmd.arg(s),
            Arg::Bytes(b) => cmd.arg(b),
            Arg::Int(n) => cmd.arg(n),
            Arg::UInt(n) => cmd.arg(n),
        };
    }
}

pub(crate) async fn send(
    mut conn: impl ConnectionLike + Send,
    cmd: redis::Cmd,
) -> Result<Value, Error> {
    match cmd.query_async::<redis::Value>(&mut conn).await {
        Ok(value) => reply(value),
        Err(e) => Err(error(e)),
    }
}

/// A server error by its code; everything else (I/O, timeouts, a dropped
/// or refused connection, a cluster with no connection to the slot's node)
/// means the connection failed.
pub(crate) fn error(e: redis::RedisError) -> Error {
    match e.code() {
        Some(code) => Error::from_server(&format!("{code} {}", e.detail().unwrap_or(""))),
        None if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            Error::from_server(&e.to_string())
        }
        None => Error::connection(e),
    }
}

/// An error reply nested in an array (RESP3, or a script returning one)
/// becomes the call's error.
fn reply(value: redis::Value) -> Result<Value, Error> {
    use redis::Value as V;
    Ok(match value {
        V::Nil => Value::Nil,
        V::Int(n) => Value::Int(n),
        V::BulkString(data) => Value::Data(data),
        V::SimpleString(s) => Value::Data(s.into_bytes()),
        V::VerbatimString { text, .. } => Value::Data(text.into_bytes()),
        V::Okay => Value::Data(b"OK".to_vec()),
        V::Array(items) | V::Set(items) => {
            Value::Array(items.into_iter().map(reply).collect::<Result<_, _>>()?)
        }
        V::Map(pairs) => {
            let mut flat = Vec::with_capacity(pairs.len() * 2);
            for (k, v) in pairs {
                flat.push(reply(k)?);
                flat.push(reply(v)?);
            }
            Value::Array(flat)
        }
        V::Attribute { data, .. } => reply(*data)?,
        V::ServerError(e) => {
            return Err(Error::from_server(&format!(
                "{} {}",
                e.code(),
                e.details().unwrap_or("")
            )));
        }
        other => Value::Other(format!("{other:?}")),
    })
}
