//! The Lua scripts, their SHA1 digests, and the Redis Functions library built from them.

use std::sync::LazyLock;

/// How scripts are run, chosen at construction with
/// [`StockStore::with_script_mode`](crate::StockStore::with_script_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ScriptMode {
    /// `EVALSHA`; on `NOSCRIPT` (the script cache is emptied by a restart, a
    /// failover or `SCRIPT FLUSH`) the call is sent again as `EVAL` with the
    /// script text, which caches it for the next `EVALSHA`. Any Redis version.
    #[default]
    EvalSha,
    /// Redis 7 Functions: `FCALL` of a library loaded with
    /// `FUNCTION LOAD REPLACE`, which persists and replicates, so it survives
    /// restarts and failovers. When the library is missing (`FUNCTION FLUSH`,
    /// a new server) the call falls back to `EVAL` and one caller loads the
    /// library again.
    Functions,
}

/// One script: its source, digest and function name.
pub(crate) struct Script {
    pub(crate) code: &'static str,
    pub(crate) sha: String,
    pub(crate) function: String,
}

/// The scripts, each run as one atomic call.
pub(crate) struct Scripts {
    pub(crate) deduct: Script,
    pub(crate) refund: Script,
    pub(crate) set_stock: Script,
    pub(crate) add_stock: Script,
    pub(crate) restore: Script,
    pub(crate) trim_log: Script,
    /// The `FUNCTION LOAD` source registering all six as functions.
    pub(crate) library: String,
}

const SOURCES: [(&str, &str); 6] = [
    ("deduct", include_str!("lua/deduct.lua")),
    ("refund", include_str!("lua/refund.lua")),
    ("set_stock", include_str!("lua/set_stock.lua")),
    ("add_stock", include_str!("lua/add_stock.lua")),
    ("restore", include_str!("lua/restore.lua")),
    ("trim_log", include_str!("lua/trim_log.lua")),
];

/// Built once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(build);

fn build() -> Scripts {
    // Function names are global in Redis: the library name carries a digest
    // of its code, so two versions of this crate sharing a server never
    // replace each other's functions.
    let digest = sha1_smol::Sha1::from(SOURCES.map(|(_, code)| code).concat())
        .digest()
        .to_string();
    let library_name = format!("seckill_stock_{}", digest.get(..12).unwrap_or(&digest));
    let mut library = format!("#!lua name={library_name}\n");
    let [deduct, refund, set_stock, add_stock, restore, trim_log] = SOURCES.map(|(name, code)| {
        let function = format!("{library_name}_{name}");
        library.push_str(&format!(
            "redis.register_function('{function}', function(KEYS, ARGV)\n{code}\nend)\n"
        ));
        Script {
            code,
            sha: sha1_smol::Sha1::from(code).digest().to_string(),
            function,
        }
    });
    Scripts {
        deduct,
        refund,
        set_stock,
        add_stock,
        restore,
        trim_log,
        library,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_library_are_consistent() {
        let s = &*SCRIPTS;
        assert_eq!(s.deduct.sha.len(), 40);
        assert_ne!(s.deduct.sha, s.refund.sha);
        assert!(s.library.starts_with("#!lua name=seckill_stock_"));
        for script in [
            &s.deduct,
            &s.refund,
            &s.set_stock,
            &s.add_stock,
            &s.restore,
            &s.trim_log,
        ] {
            assert!(s.library.contains(&format!("'{}'", script.function)));
        }
    }
}
