//! The Lua scripts, and the Redis Functions library built from them.

use std::sync::LazyLock;

use seckill_redis::{Library, Script};

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

/// The scripts, each run as one atomic call, and the library holding them all.
pub(crate) struct Scripts {
    pub(crate) deduct: Script,
    pub(crate) refund: Script,
    pub(crate) set_stock: Script,
    pub(crate) add_stock: Script,
    pub(crate) restore: Script,
    pub(crate) trim_log: Script,
    pub(crate) quota_reserve: Script,
    pub(crate) quota_release: Script,
    /// All eight as Redis Functions (`FCALL`), named by the scripts' field names.
    pub(crate) library: Option<Library>,
}

/// Built once per process: the load state of each script (one `SCRIPT
/// LOAD` per `NOSCRIPT` burst) and of the library is shared by every store.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(build);

fn build() -> Scripts {
    let script = |code: &'static str| Script::new(code);
    let deduct = script(include_str!("lua/deduct.lua"));
    let refund = script(include_str!("lua/refund.lua"));
    let set_stock = script(include_str!("lua/set_stock.lua"));
    let add_stock = script(include_str!("lua/add_stock.lua"));
    let restore = script(include_str!("lua/restore.lua"));
    let trim_log = script(include_str!("lua/trim_log.lua"));
    let quota_reserve = script(include_str!("lua/quota_reserve.lua"));
    let quota_release = script(include_str!("lua/quota_release.lua"));
    // The names are fixed and valid, so this cannot fail; were it to, the
    // store would run every script by EVALSHA instead.
    let library = Library::new(
        "seckill_stock",
        &[
            ("deduct", &deduct),
            ("refund", &refund),
            ("set_stock", &set_stock),
            ("add_stock", &add_stock),
            ("restore", &restore),
            ("trim_log", &trim_log),
            ("quota_reserve", &quota_reserve),
            ("quota_release", &quota_release),
        ],
    )
    .ok();
    Scripts {
        deduct,
        refund,
        set_stock,
        add_stock,
        restore,
        trim_log,
        quota_reserve,
        quota_release,
        library,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_holds_every_script() {
        let s = &*SCRIPTS;
        assert_ne!(s.deduct.sha(), s.refund.sha());
        let library = s.library.as_ref().unwrap();
        assert!(library.name().starts_with("seckill_stock_"));
        for name in [
            "deduct",
            "refund",
            "set_stock",
            "add_stock",
            "restore",
            "trim_log",
        ] {
            assert!(library.function(name).is_some(), "{name}");
        }
    }
}
