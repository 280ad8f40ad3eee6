//! [`Library`]: scripts registered as Redis 7 Functions, loaded once.

use std::fmt;
use std::sync::Arc;

use crate::call::{Arg, Call};
use crate::connection::{Connection, send};
use crate::error::Error;
use crate::load_gate::LoadGate;
use crate::script::Script;
use crate::value::Value;

/// The most functions one [`Library`] holds.
pub const MAX_FUNCTIONS: usize = 64;

/// A set of [`Script`]s registered as one Redis Functions library and run
/// with `FCALL`. A library persists and replicates with the data, so it
/// survives restarts and failovers that empty the script cache.
///
/// When the library is missing (a new server, `FUNCTION FLUSH`), one caller
/// sends `FUNCTION LOAD REPLACE` (to every primary of a cluster) while the
/// others that found it missing at the same moment wait, then all call
/// again; a call that still finds it missing runs its script by
/// [`Script::run`]. However many callers start together, the library is
/// loaded once.
///
/// Function names are global in Redis, so the library's name carries a
/// digest of its code: two versions of one program sharing a server never
/// replace each other's functions.
///
/// # Examples
///
/// ```no_run
/// use seckill_redis::{Arg, Library, Script};
///
/// # async fn demo() -> Result<(), seckill_redis::Error> {
/// let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
/// let incr = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
/// let library = Library::new("shop", &[("incr", &incr)])?;
/// let n = library.call(&conn, "incr", &["{shop}:visits"], &[Arg::Int(1)]).await?;
/// assert!(n.as_int().is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Library {
    name: String,
    code: String,
    functions: Vec<(String, String, Script)>,
    gate: Arc<LoadGate>,
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Library")
            .field("name", &self.name)
            .field("functions", &self.functions.len())
            .field("loads", &self.loads())
            .finish_non_exhaustive()
    }
}

impl Library {
    /// A library named `prefix` plus a digest of the code, registering each
    /// `(name, script)` as the function `<library>_<name>`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `prefix` or a name is empty, longer than 64
    /// bytes or has characters other than ASCII letters, digits and `_`;
    /// when a name repeats; or for no scripts or more than
    /// [`MAX_FUNCTIONS`].
    pub fn new(prefix: &str, scripts: &[(&str, &Script)]) -> Result<Self, Error> {
        check_name("library prefix", prefix)?;
        if scripts.is_empty() || scripts.len() > MAX_FUNCTIONS {
            return Err(Error::Config(format!(
                "a library holds 1 to {MAX_FUNCTIONS} scripts, got {}",
                scripts.len()
            )));
        }
        let mut digest = sha1_smol::Sha1::new();
        for (name, script) in scripts {
            check_name("function name", name)?;
            if scripts.iter().filter(|(other, _)| other == name).count() > 1 {
                return Err(Error::Config(format!(
                    "function name {name:?} is given twice"
                )));
            }
            digest.update(name.as_bytes());
            digest.update(script.sha().as_bytes());
        }
        let digest = digest.digest().to_string();
        let name = format!("{prefix}_{}", digest.get(..12).unwrap_or(&digest));
        let mut code = format!("#!lua name={name}\n");
        let functions = scripts
            .iter()
            .map(|(short, script)| {
                let function = format!("{name}_{short}");
                code.push_str(&format!(
                    "redis.register_function('{function}', function(KEYS, ARGV)\n{}\nend)\n",
                    script.code()
                ));
                ((*short).to_owned(), function, (*script).clone())
            })
            .collect();
        Ok(Self {
            name,
            code,
            functions,
            gate: Arc::default(),
        })
    }

    /// The library's name in Redis.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `FUNCTION LOAD` source.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The Redis name of function `name`, if the library has it.
    pub fn function(&self, name: &str) -> Option<&str> {
        self.functions
            .iter()
            .find(|(short, _, _)| short == name)
            .map(|(_, function, _)| function.as_str())
    }

    /// How many times this library was loaded by this process.
    pub fn loads(&self) -> u64 {
        self.gate.loads()
    }

    /// Calls function `name` with `KEYS` and `ARGV` by `FCALL`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the library has no function `name`; any other
    /// [`Error`] but [`Error::NoFunction`] and [`Error::NoScript`], which
    /// are handled here.
    ///
    /// # Cancel safety
    ///
    /// As [`Script::run`].
    pub async fn call<C: Connection>(
        &self,
        conn: &C,
        name: &str,
        keys: &[&str],
        args: &[Arg<'_>],
    ) -> Result<Value, Error> {
        let Some((_, function, script)) = self.functions.iter().find(|(short, _, _)| short == name)
        else {
            return Err(Error::Config(format!(
                "library {} has no function {name:?}",
                self.name
            )));
        };
        let seen = self.gate.generation();
        let fcall = Call::FCall {
            function,
            keys,
            args,
        };
        match send(conn, fcall).await {
            Err(Error::NoFunction { .. }) => {}
            other => return other,
        }
        // A failed load is not this call's answer: the script still runs.
        let _ = self.load_after(conn, seen).await;
        match send(conn, fcall).await {
            Err(Error::NoFunction { .. }) => script.run(conn, keys, args).await,
            other => other,
        }
    }

    /// Sends `FUNCTION LOAD REPLACE` now (to every primary of a cluster).
    ///
    /// # Errors
    ///
    /// As [`send`](crate::send).
    pub async fn load<C: Connection>(&self, conn: &C) -> Result<(), Error> {
        self.load_after(conn, self.gate.generation()).await
    }

    async fn load_after<C: Connection>(&self, conn: &C, seen: u64) -> Result<(), Error> {
        self.gate
            .load_once(seen, async {
                send(conn, Call::FunctionLoad { code: &self.code })
                    .await
                    .map(drop)
            })
            .await
    }
}

fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{what} must be 1 to 64 ASCII letters, digits or '_', got {name:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_digest_of_the_code() {
        let a = Script::new("return 1");
        let b = Script::new("return 2");
        let one = Library::new("shop", &[("a", &a), ("b", &b)]).unwrap_or_else(|e| panic!("{e}"));
        let other = Library::new("shop", &[("a", &b), ("b", &a)]).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(one.name(), other.name());
        assert!(one.name().starts_with("shop_"));
        let function = one.function("a").unwrap_or_default();
        assert_eq!(function, format!("{}_a", one.name()));
        assert!(one.code().contains(&format!("'{function}'")));
        assert_eq!(one.function("c"), None);
    }

    #[test]
    fn bad_names_are_refused() {
        let a = Script::new("return 1");
        for (prefix, name) in [("", "a"), ("shop", ""), ("sh op", "a"), ("shop", "a-b")] {
            assert!(
                Library::new(prefix, &[(name, &a)]).is_err(),
                "{prefix:?} {name:?}"
            );
        }
        assert!(Library::new("shop", &[("a", &a), ("a", &a)]).is_err());
        assert!(Library::new("shop", &[]).is_err());
    }
}
