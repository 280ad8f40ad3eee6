//! The redis-rs adapter (feature `redis`): [`Connection`]
//! for `MultiplexedConnection`, `ConnectionManager` and
//! `cluster_async::ClusterConnection`, plus [`SentinelConnection`] (a
//! primary followed across failovers) and [`AnyConnection`] with
//! [`connect`], which opens whichever a URL names.

mod any;
mod convert;
mod sentinel;

pub use any::{AnyConnection, connect};
pub use sentinel::SentinelConnection;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;

use crate::call::Call;
use crate::connection::Connection;
use crate::error::Error;
use crate::value::Value;

impl Connection for MultiplexedConnection {
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send {
        convert::send(self.clone(), convert::command(call))
    }
}

impl Connection for ConnectionManager {
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send {
        convert::send(self.clone(), convert::command(call))
    }
}

impl Connection for ClusterConnection {
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send {
        convert::send(self.clone(), convert::command(call))
    }
}
