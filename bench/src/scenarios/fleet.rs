//! The browsers of a scenario: how many groups (threads or child
//! processes) they are split into, and the groups' results merged into one.

use crate::browsers::{Action, GroupResult, GroupSpec};
use crate::hist;

use super::Context;

/// Merged view of several groups.
pub(super) struct Merged {
    pub(super) browsers: usize,
    pub(super) completed: usize,
    pub(super) bytes: u64,
    pub(super) frames: u64,
    pub(super) gaps: u64,
    pub(super) skipped: u64,
    pub(super) end_nanos: Vec<u64>,
    pub(super) first_frame: u64,
    pub(super) last_frame: u64,
    pub(super) errors: Vec<String>,
    pub(super) error_count: u64,
    pub(super) queries_ok: u64,
    pub(super) latency_scheduled: hdrhistogram::Histogram<u64>,
    pub(super) latency_sent: hdrhistogram::Histogram<u64>,
    pub(super) ttfb: hdrhistogram::Histogram<u64>,
    pub(super) query: hdrhistogram::Histogram<u64>,
}

pub(super) fn merge(groups: Vec<GroupResult>) -> Result<Merged, String> {
    let mut m = Merged {
        browsers: 0,
        completed: 0,
        bytes: 0,
        frames: 0,
        gaps: 0,
        skipped: 0,
        end_nanos: Vec::new(),
        first_frame: u64::MAX,
        last_frame: 0,
        errors: Vec::new(),
        error_count: 0,
        queries_ok: 0,
        latency_scheduled: hist::new_ns(),
        latency_sent: hist::new_ns(),
        ttfb: hist::new_us(),
        query: hist::new_us(),
    };
    for g in groups {
        m.browsers += g.browsers;
        m.completed += g.completed;
        m.bytes += g.bytes;
        m.frames += g.frames;
        m.gaps += g.gaps;
        m.skipped += g.skipped_frames;
        m.end_nanos.extend(g.end_nanos);
        if g.first_frame_nanos > 0 {
            m.first_frame = m.first_frame.min(g.first_frame_nanos);
        }
        m.last_frame = m.last_frame.max(g.last_frame_nanos);
        m.error_count += g.error_count;
        m.queries_ok += g.queries_ok;
        m.errors.extend(g.errors);
        hist::merge_encoded(&mut m.latency_scheduled, g.latency_scheduled_ns.as_ref())?;
        hist::merge_encoded(&mut m.latency_sent, g.latency_sent_ns.as_ref())?;
        hist::merge_encoded(&mut m.ttfb, g.ttfb_us.as_ref())?;
        hist::merge_encoded(&mut m.query, g.query_us.as_ref())?;
    }
    m.errors.truncate(20);
    Ok(m)
}

/// How many groups (epoll reader threads, or child processes) `count`
/// browsers are split into: one up to 20 browsers, else one per core (at
/// least two, at most one per browser).
pub(super) fn group_count(count: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if count <= 20 {
        1
    } else {
        cores.max(2).min(count)
    }
}

/// Splits `count` browsers into [`group_count`] groups, threads of this
/// process, child processes from 1000 browsers on.
pub(super) fn plan_groups(
    ctx: &Context,
    count: usize,
    action: Action,
    stamped: bool,
    timeout: u64,
) -> Result<(Vec<GroupSpec>, bool), String> {
    let processes = count >= 1000;
    let groups = group_count(count);
    let token = ctx.session_token()?;
    let specs = (0..groups)
        .map(|g| GroupSpec {
            addr: ctx.addr,
            token: token.clone(),
            count: count / groups + usize::from(g < count % groups),
            action: action.clone(),
            stamped,
            timeout_seconds: timeout,
            gated: false,
        })
        .filter(|s| s.count > 0)
        .collect();
    Ok((specs, processes))
}
