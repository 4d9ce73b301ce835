//! Simulated level-2 browsers. A *group* is many browser sockets driven by
//! one thread with epoll (mio): connect and upgrade each (blocking, one after
//! the other), send the action, then read every socket as it becomes
//! readable, parse frames without copying payloads, and record counters,
//! completion times and HDR histograms. A *fleet* is several groups, as
//! threads of this process or as child processes (the current executable
//! re-invoked with the hidden `bench-worker` subcommand) so that thousands of
//! readers get more than one core and their own file-descriptor table.
//!
//! Also [`open_idle`]: many idle sessions on plain std sockets, without a
//! thread per socket.
//!
//! Files: the group's vocabulary ([`Action`], [`GroupSpec`],
//! [`GroupResult`]) is here; `group` runs one group on its epoll thread,
//! `fleet` runs several (threads or `bench-worker` processes), `idle` opens
//! the idle sessions.

mod fleet;
mod group;
mod idle;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use fleet::{worker_main, Fleet};
pub use group::run_group;
pub use idle::{open_idle, IDLE_CONNECTIONS_PER_SOURCE};

/// What each browser of a group does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Action {
    /// `subscribe` to a live dataset; done at the frame flagged LAST or `stream_end`.
    Subscribe {
        /// Dataset.
        dataset: String,
    },
    /// `queries` queries, one after the other, of `dataset`.
    Query {
        /// Dataset.
        dataset: String,
        /// Queries per browser.
        queries: u32,
    },
}

/// One group of browsers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Gateway address.
    pub addr: SocketAddr,
    /// Session token.
    pub token: String,
    /// Browsers in the group.
    pub count: usize,
    /// What they do.
    pub action: Action,
    /// Frames carry send-time stamps (latency scenario).
    pub stamped: bool,
    /// Give up after this many seconds.
    pub timeout_seconds: u64,
    /// Once connected, wait for the fleet's [`Fleet::go`] before sending the
    /// action, so that every group's browsers send it at once.
    #[serde(default)]
    pub gated: bool,
}

/// What one group measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GroupResult {
    /// Browsers that connected.
    pub browsers: usize,
    /// Browsers that reached their end.
    pub completed: usize,
    /// Binary payload bytes received (WebSocket payloads, level-2 headers included).
    pub bytes: u64,
    /// Binary frames received.
    pub frames: u64,
    /// `gap` messages received.
    pub gaps: u64,
    /// Frames the gateway reported skipped in `gap` messages.
    pub skipped_frames: u64,
    /// Unix nanos each browser reached its end (live: LAST frame or `stream_end`).
    pub end_nanos: Vec<u64>,
    /// Earliest and latest binary frame arrival, Unix nanos.
    pub first_frame_nanos: u64,
    /// Latest binary frame arrival.
    pub last_frame_nanos: u64,
    /// Up to 10 errors seen.
    pub errors: Vec<String>,
    /// Errors in all.
    pub error_count: u64,
    /// Queries that ended with a `stream_end` carrying no error.
    #[serde(default)]
    pub queries_ok: u64,
    /// HDR V2 base64: latency from scheduled send time, ns.
    pub latency_scheduled_ns: Option<String>,
    /// HDR V2 base64: latency from actual send time, ns.
    pub latency_sent_ns: Option<String>,
    /// HDR V2 base64: query time to first binary frame, µs.
    pub ttfb_us: Option<String>,
    /// HDR V2 base64: query completion (send → `stream_end`), µs.
    pub query_us: Option<String>,
}

impl GroupResult {
    fn error(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < 10 {
            self.errors.push(message);
        }
    }
}
