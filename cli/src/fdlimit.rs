//! Open-file limits: a gateway holds one descriptor per connection, so the
//! soft limit (often 1024, and whatever the hard limit allows after
//! raising) decides how many connections it can really hold.
//!
//! The rule ([`gateway_plan`]): the gateway first raises its soft limit
//! towards `limits.connections_max` + [`DESCRIPTORS_RESERVED`]. If that is
//! not reached, the limit would bite before `connections_max` does — the
//! accept loop would fail with "Too many open files" while the gateway
//! thinks it has room. Then:
//!
//! - `limits.connections_max` set in the config file: the operator asked for
//!   that many, so warn, with the numbers and how to raise the limit;
//! - not set (the default 200 000 is a ceiling, not anyone's need): use what
//!   fits as the connection limit, so connections beyond it are refused
//!   cleanly with 503, and say so once at info level.

#[cfg(unix)]
use rlimit::Resource;

/// Descriptors a gateway needs besides its connections: stdio, per worker
/// an io_uring ring, an eventfd and a listener, Redis and control-plane
/// sockets, static files being served. A few dozen in practice; 256 leaves
/// room. (The gateway exists on Linux only, as does what follows for it.)
#[cfg(target_os = "linux")]
pub const DESCRIPTORS_RESERVED: u64 = 256;

/// The open-file limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` towards `wanted`: up to the hard limit,
/// and past it when the process may (root / CAP_SYS_RESOURCE). Returns the
/// limits in force afterwards.
#[cfg(unix)]
pub fn raise_nofile(wanted: u64) -> NoFile {
    let Ok((soft, hard)) = Resource::NOFILE.get() else { return NoFile { soft: 0, hard: 0 } };
    if soft >= wanted {
        return NoFile { soft, hard };
    }
    if hard < wanted {
        // Privileged processes may raise the hard limit; others keep theirs.
        let _ = Resource::NOFILE.set(wanted, wanted);
    }
    let hard = Resource::NOFILE.get().map(|(_, hard)| hard).unwrap_or(hard);
    let _ = Resource::NOFILE.set(wanted.min(hard), hard);
    let (soft, hard) = Resource::NOFILE.get().unwrap_or((soft, hard));
    NoFile { soft, hard }
}

/// No such limit to raise here.
#[cfg(not(unix))]
pub fn raise_nofile(wanted: u64) -> NoFile {
    NoFile { soft: wanted, hard: wanted }
}

/// What the gateway does about its open-file limit.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `connections_max` connections fit: nothing to say.
    Fits,
    /// `connections_max` was not configured: use this many instead, and
    /// log the message at info level.
    Cap { connections_max: usize, message: String },
    /// The limit bites before the configured `connections_max`: warn.
    Warn(String),
}

/// The rule of the module doc: `nofile` is the limit after
/// [`raise_nofile`], `configured` whether the config file sets
/// `limits.connections_max`.
#[cfg(target_os = "linux")]
pub fn gateway_plan(nofile: NoFile, connections_max: usize, configured: bool) -> Plan {
    let wanted = u64::try_from(connections_max).unwrap_or(u64::MAX).saturating_add(DESCRIPTORS_RESERVED);
    if nofile.soft >= wanted {
        return Plan::Fits;
    }
    let fit = nofile.soft.saturating_sub(DESCRIPTORS_RESERVED);
    let raise = format!("`ulimit -n {wanted}` before starting it, or `LimitNOFILE={wanted}` in its systemd unit");
    if configured || fit == 0 {
        return Plan::Warn(format!(
            "open-file limit is {} (hard limit {}): about {fit} connections fit, fewer than \
             limits.connections_max ({connections_max}); raise it with {raise}, or lower limits.connections_max",
            nofile.soft, nofile.hard
        ));
    }
    let connections = usize::try_from(fit).unwrap_or(usize::MAX);
    Plan::Cap {
        connections_max: connections,
        message: format!(
            "open-file limit is {}: accepting at most {connections} connections (limits.connections_max is not \
             set); for more, raise the limit (`ulimit -n N`, or `LimitNOFILE=N` in a systemd unit) and set \
             limits.connections_max",
            nofile.soft
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_limit_is_mentioned_only_where_it_bites() {
        let big = NoFile { soft: 1 << 20, hard: 1 << 20 };
        assert_eq!(gateway_plan(big, 200_000, false), Plan::Fits);
        assert_eq!(gateway_plan(big, 200_000, true), Plan::Fits);
        let small = NoFile { soft: 4096, hard: 4096 };
        assert_eq!(gateway_plan(small, 1000, true), Plan::Fits);
        let Plan::Cap { connections_max, message } = gateway_plan(small, 200_000, false) else {
            panic!("a default connections_max is capped, not warned about");
        };
        assert_eq!(connections_max, 4096 - 256);
        assert!(message.contains("3840") && message.contains("ulimit -n") && message.contains("LimitNOFILE="));
        let Plan::Warn(warning) = gateway_plan(small, 100_000, true) else { panic!("a configured one is warned") };
        assert!(warning.contains("100256") && warning.contains("LimitNOFILE=100256"), "{warning}");
        let tiny = NoFile { soft: 100, hard: 100 };
        assert!(matches!(gateway_plan(tiny, 200_000, false), Plan::Warn(_)), "no room at all is a warning");
    }
}
