//! The idle scenario: K idle browser sessions, the gateway's RSS growth per
//! session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::browsers;
use crate::scenario::ScenarioResult;

use super::Context;

/// Descriptors the idle scenario keeps free beyond one per session.
pub const IDLE_FD_MARGIN: u64 = 512;
/// Sessions `idle` opens (and keeps open) before its baseline RSS reading.
pub const IDLE_WARM_UP_SESSIONS: usize = 200;
/// Wait before each RSS reading of `idle`: longer than the gateway's metrics
/// interval (1 s), so its periodic work has run.
pub const IDLE_SETTLE: Duration = Duration::from_millis(2000);

/// K idle browser sessions; gateway RSS growth per session.
pub fn idle(ctx: &Context) -> Result<ScenarioResult, String> {
    let count = ctx.options.browsers.unwrap_or(10_000);
    let pid =
        ctx.options.gateway_pid.ok_or("idle needs the gateway's pid (run without --gateway, or give --gateway-pid)")?;
    // Each session is a socket here and one in the gateway: without the
    // descriptors the run would only measure accept errors and timeouts.
    for (who, id) in [("this process", std::process::id()), ("the gateway", pid)] {
        if let Some(limit) = crate::procfs::open_files_limit(id) {
            if limit < (count + IDLE_WARM_UP_SESSIONS) as u64 + IDLE_FD_MARGIN {
                return Err(format!(
                    "{who} may open {limit} files, fewer than {count} sessions and {IDLE_WARM_UP_SESSIONS} warm-up \
                     ones need (+{IDLE_FD_MARGIN}); \
                     raise the hard limit (ulimit -Hn, or LimitNOFILE= under systemd)"
                ));
            }
        }
    }
    let token = ctx.session_token()?;
    // The baseline is a gateway that already holds a few sessions and has
    // done its lazy start-up work (first accepts, first metrics publication):
    // the figure is what one more idle session costs, not start-up.
    let (warm_up, warm_up_errors) = browsers::open_idle(ctx.addr, &token, IDLE_WARM_UP_SESSIONS, &|_| {});
    if let Some(e) = warm_up_errors.first() {
        return Err(format!("warm-up sessions: {e}"));
    }
    std::thread::sleep(IDLE_SETTLE);
    let before = crate::procfs::rss_bytes(pid).ok_or("cannot read the gateway's VmRSS")?;
    let opened = Arc::new(AtomicU64::new(0));
    let shown = opened.clone();
    let progress = ctx.progress("idle", move || format!("{} of {count} sessions open", shown.load(Ordering::Relaxed)));
    let started = Instant::now();
    let (sockets, errors) =
        browsers::open_idle(ctx.addr, &token, count, &|n| opened.store(n as u64, Ordering::Relaxed));
    let open_seconds = started.elapsed().as_secs_f64();
    drop(progress);
    std::thread::sleep(IDLE_SETTLE);
    let after = crate::procfs::rss_bytes(pid).ok_or("cannot read the gateway's VmRSS")?;
    let per_session = after.saturating_sub(before) as f64 / sockets.len().max(1) as f64;
    let open = sockets.len();
    drop(sockets);
    drop(warm_up);
    Ok(ScenarioResult {
        headline: json!({"name": format!("gateway RSS per idle session ({open} open)"), "value": per_session,
            "unit": "bytes", "goal": "≤ 2 KiB per session with 10k open"}),
        baseline_ratio: None,
        baseline_ratio_meaning: "none: a plain relay holds no per-session state to compare; compare with the 2048-byte goal (ratio to goal in figures)".into(),
        figures: json!({
            "sessions_requested": count, "warm_up_sessions": IDLE_WARM_UP_SESSIONS, "sessions_open": open, "rss_before_bytes": before, "rss_after_bytes": after,
            "rss_per_session_bytes": per_session, "ratio_to_goal": per_session / 2048.0, "open_seconds": open_seconds,
            "sessions_per_second": open as f64 / open_seconds.max(1e-9),
        }),
        errors: errors.into_iter().take(20).collect(),
        notes: vec!["VmRSS from /proc/<pid>/status: the baseline with IDLE_WARM_UP_SESSIONS (200) idle sessions open and 2 s of settling, then again 2 s after the measured sessions opened (256 handshakes in flight); per session = growth / sessions opened. Sessions are upgraded level-2 sockets that received hello and then stay silent".into()],
        ..Default::default()
    })
}
