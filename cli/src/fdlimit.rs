//! Open-file limits: a gateway holds one descriptor per connection, so the
//! default soft limit (often 1024) caps it far below its configuration.

#[cfg(unix)]
use rlimit::Resource;

/// Raises the soft `RLIMIT_NOFILE` towards `wanted`: up to the hard limit,
/// and past it when the process may (root / CAP_SYS_RESOURCE). Returns the
/// soft limit in force afterwards.
#[cfg(unix)]
pub fn raise_nofile(wanted: u64) -> u64 {
    let Ok((soft, hard)) = Resource::NOFILE.get() else { return 0 };
    if soft >= wanted {
        return soft;
    }
    if hard < wanted {
        // Privileged processes may raise the hard limit; others keep theirs.
        let _ = Resource::NOFILE.set(wanted, wanted);
    }
    let hard = Resource::NOFILE.get().map(|(_, hard)| hard).unwrap_or(hard);
    let _ = Resource::NOFILE.set(wanted.min(hard), hard);
    Resource::NOFILE.get().map(|(soft, _)| soft).unwrap_or(soft)
}

/// No such limit to raise here.
#[cfg(not(unix))]
pub fn raise_nofile(wanted: u64) -> u64 {
    wanted
}
