//! The scenarios. Each starts its own simulated connectors (fresh tunnels,
//! its own dataset names) and browsers against the gateway, measures, stops
//! them, and returns a [`ScenarioResult`]. Defaults follow the issue; the
//! `--duration` option scales the amount of data rather than a wall-clock
//! timer, so a run always finishes whole streams.
//!
//! A file per scenario (`query_stream`: throughput and small frames, both
//! one query stream; `fanout`, `latency`, `idle`, `query_storm`,
//! `query_fanout`; the
//! baseline alone is here), plus what they share: the [`Context`] here,
//! `fleet` (how browsers are split into groups, and their results merged)
//! and `progress` (the [`Progress`] line on stderr). Every public item is
//! re-exported here: callers name `scenarios::X` whichever file defines it.

mod fanout;
mod fleet;
mod idle;
mod latency;
mod progress;
mod query_fanout;
mod query_storm;
mod query_stream;

use std::net::{SocketAddr, ToSocketAddrs};

use serde_json::{json, Value};
use volley_protocol::token::{sign, ConnectorClaims, SessionClaims, ROLE_CONNECTOR};

use crate::connector::{Connector, ConnectorSpec, DatasetSpec};
use crate::scenario::ScenarioResult;

pub use fanout::fanout;
pub use idle::{idle, IDLE_FD_MARGIN, IDLE_SETTLE, IDLE_WARM_UP_SESSIONS};
pub use latency::latency;
pub use progress::Progress;
pub use query_fanout::{query_fanout, QUERY_FANOUT_BROWSERS_DEFAULT, QUERY_FANOUT_SIZE_DEFAULT};
pub use query_storm::query_storm;
pub use query_stream::{small_frames, throughput, THROUGHPUT_REPETITIONS};

/// Default latency rate (frames/s).
pub const LATENCY_RATE_DEFAULT: u64 = 10_000;
/// Default latency frame payload (after the 16-byte header).
pub const LATENCY_FRAME_BYTES_DEFAULT: usize = 256;
/// Bytes a latency frame takes on a browser's socket beyond its payload: the
/// level-2 header and a WebSocket server frame header with a 16-bit length.
pub const LATENCY_WIRE_OVERHEAD_BYTES: usize = crate::wire::HEADER_BYTES + 4;

/// Record size of the relay latency baselines for latency frames of
/// `frame_bytes` payload: what a browser reads per frame.
pub const fn latency_record_bytes(frame_bytes: usize) -> usize {
    frame_bytes + LATENCY_WIRE_OVERHEAD_BYTES
}
const TENANT: &str = "bench";
const MIB: u64 = 1 << 20;

/// Everything a scenario needs.
pub struct Context {
    /// Gateway address.
    pub addr: SocketAddr,
    /// Token secret.
    pub secret: String,
    /// Options.
    pub options: crate::scenario::Options,
    /// Baseline figures of this invocation.
    pub baseline: Value,
}

impl Context {
    fn session_token(&self) -> Result<String, String> {
        let now = unix_seconds();
        let claims = SessionClaims {
            sub: "bench".into(),
            cuenta_id: TENANT.into(),
            edge_id: String::new(),
            permisos: vec!["*".into()],
            jti: format!("bench-{}", crate::wire::now_nanos()),
            iat: now - 10,
            exp: now + 24 * 3600,
            nbf: None,
            role: None,
        };
        sign(&claims, self.secret.as_bytes()).map_err(|e| e.to_string())
    }

    fn connector(&self, datasets: Vec<DatasetSpec>) -> Result<Connector, String> {
        let now = unix_seconds();
        let claims = ConnectorClaims {
            cuenta_id: TENANT.into(),
            role: ROLE_CONNECTOR.into(),
            jti: format!("bench-c-{}", crate::wire::now_nanos()),
            iat: now - 10,
            exp: now + 24 * 3600,
            nbf: None,
        };
        let token = sign(&claims, self.secret.as_bytes()).map_err(|e| e.to_string())?;
        Connector::start(ConnectorSpec { addr: self.addr, tenant: TENANT.into(), token, datasets })
    }

    fn progress(&self, label: &str, status: impl Fn() -> String + Send + 'static) -> Option<Progress> {
        self.options.progress.then(|| Progress::start(label, status))
    }

    fn gateway_cpu(&self) -> Option<f64> {
        self.options.gateway_pid.and_then(crate::procfs::cpu_seconds)
    }

    fn baseline_f64(&self, key: &str) -> Option<f64> {
        self.baseline[key].as_f64()
    }
}

fn unix_seconds() -> i64 {
    i64::try_from(crate::wire::now_nanos() / 1_000_000_000).unwrap_or(0)
}

/// `ws://host:port[/…]` or `host:port` → a socket address.
pub fn resolve(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    if url.starts_with("wss://") {
        return Err("the bench speaks plain ws:// only (run it next to the gateway)".into());
    }
    let host = rest.split('/').next().unwrap_or(rest);
    host.to_socket_addrs()
        .map_err(|e| format!("gateway address {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("gateway address {url:?} resolves to nothing"))
}

fn gib(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

/// The baseline alone.
pub fn baseline(ctx: &Context) -> Result<ScenarioResult, String> {
    let v = ctx.baseline_f64("relay_64k_gbps").unwrap_or(0.0);
    let mut histograms = std::collections::BTreeMap::new();
    histograms.insert("relay_latency".into(), ctx.baseline["relay_latency_ns"].clone());
    Ok(ScenarioResult {
        headline: json!({"name": "plain TCP relay, 64 KiB writes", "value": v, "unit": "GB/s", "goal": "(the machine's limit)"}),
        baseline_ratio: Some(1.0),
        baseline_ratio_meaning: "the baseline itself".into(),
        figures: ctx.baseline.clone(),
        histograms,
        ..Default::default()
    })
}
