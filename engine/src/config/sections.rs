//! The sections of `gateway.yaml` below the top level (`timeouts:`,
//! `rings:`, `compression:`, `redis:`, `control_plane:`, `tls:`), the
//! slow-reader policy and the secrets, each with its defaults. `limits:` is
//! in [`super::limits`]; the top level and validation in [`super`].

use std::path::PathBuf;

use serde::Deserialize;
use volley_protocol::Codec;

use super::ConfigError;

/// What a live stream does with a subscriber whose ring is full (PROTOCOL.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowReaderPolicy {
    /// Drop frames for it, resume at the next whole record batch with a `gap` notice.
    Skip,
    /// Close the session with code 4002.
    Close,
}

/// Timeouts, seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Longest a query stream may run (seed default 60).
    pub query_seconds: u64,
    /// Longest from TCP accept to a finished upgrade (and, for connectors, `register`). Default 10.
    pub connect_seconds: u64,
    /// A browser that sends nothing and receives nothing for this long is closed (4008). Default 300.
    pub idle_seconds: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { query_seconds: 60, connect_seconds: 10, idle_seconds: 300 }
    }
}

/// Per-session and global ring budgets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rings {
    /// Queued outgoing bytes per browser session. Default 8 MiB.
    pub session_bytes_max: usize,
    /// Queued outgoing bytes in the whole gateway. Default 1 GiB.
    pub total_bytes_max: usize,
    /// Live-stream policy for a subscriber whose ring is full. Default `skip`.
    pub slow_reader_policy: SlowReaderPolicy,
    /// Control output (replies, events, pings, pongs) a browser session may
    /// leave unread before it is closed with 4002, part of its
    /// `session_bytes_max`. Default 1 MiB: thousands of replies, far more
    /// than a page that reads its socket ever has queued.
    pub session_control_bytes_max: usize,
}

impl Default for Rings {
    fn default() -> Self {
        Rings {
            session_bytes_max: 8 << 20,
            total_bytes_max: 1 << 30,
            slow_reader_policy: SlowReaderPolicy::Skip,
            session_control_bytes_max: 1 << 20,
        }
    }
}

/// `queries:` — identical queries sharing one upstream stream, and what
/// happens to a query that finds every tunnel serving its dataset at its
/// stream limit (PROTOCOL.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueriesConfig {
    /// Queries of one tenant that may wait for a stream slot; one more is
    /// refused with `too_many_requests`. Default 1024.
    pub queue_max: usize,
    /// Longest a query waits for a slot before it is refused with
    /// `too_many_requests`, seconds. Default 30.
    pub queue_timeout_seconds: u64,
    /// Bytes one shared query's log may hold (`share_log.rs`): identical
    /// queries join a running stream while its log holds it from its first
    /// frame; a stream larger than this stops taking readers once it has to
    /// drop a frame. 0 turns sharing off. Default 32 MiB.
    pub share_log_bytes: usize,
    /// Bytes all shared query logs may hold together; each shared stream
    /// reserves `share_log_bytes` of it while it runs (or is kept), and a
    /// query that finds it taken gets a stream of its own. Default 512 MiB.
    pub share_total_bytes: usize,
    /// Seconds a completed shared query is kept so that an identical query
    /// is answered from it without asking the connector again; 0 (the
    /// default) keeps nothing. Such an answer is as old as this at most.
    pub reuse_seconds: u64,
}

impl Default for QueriesConfig {
    fn default() -> Self {
        QueriesConfig {
            queue_max: 1024,
            queue_timeout_seconds: 30,
            share_log_bytes: 32 << 20,
            share_total_bytes: 512 << 20,
            reuse_seconds: 0,
        }
    }
}

/// `compression:` — IPC body compression of upstream streams (PROTOCOL.md §5.4).
///
/// The gateway forwards the connector's bytes to every subscriber of a stream
/// and never re-encodes them, so a stream's codec must be one that every one
/// of its readers can decode. Off by default: a browser that cannot decode a
/// codec gets nothing useful from it, and on a fast network the connector's
/// CPU spent compressing buys nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Codecs the gateway may ask connectors for, most preferred first
    /// (`zstd`, `lz4`). A stream gets the first of these that the requesting
    /// client accepts and a connector serving the dataset offers; otherwise
    /// none. Default empty: streams are never compressed.
    pub codecs: Vec<Codec>,
    /// Codecs assumed decodable by a client whose `query`/`subscribe` names
    /// none (seed pages, level-1 sockets) — only for deployments whose pages
    /// register their own IPC codecs. Must be a subset of `codecs`. Default
    /// empty: such clients get uncompressed streams.
    pub assume_client_codecs: Vec<Codec>,
}

impl CompressionConfig {
    /// The codecs a request may get, most preferred first, always ending with
    /// `None` (uncompressed, which every client decodes): `codecs` filtered by
    /// what the client named (`client`), or by `assume_client_codecs` when it
    /// named nothing. Names this version does not know are ignored.
    pub fn preference(&self, client: Option<&[String]>) -> Vec<Option<Codec>> {
        let accepted: Vec<Codec> = match client {
            Some(names) => Codec::known(names),
            None => self.assume_client_codecs.clone(),
        };
        self.codecs.iter().filter(|codec| accepted.contains(codec)).map(|codec| Some(*codec)).chain([None]).collect()
    }
}

/// Default pub/sub channel of the revocation feed.
pub const DEFAULT_REVOCATION_CHANNEL: &str = "volley:revocations";

/// `redis:` — the revocation feed (pub/sub) and its durable record (sorted
/// sets `<channel>:sessions|users|tenant_users|tenants`), optional; with
/// `cluster:` also the cluster's directory (same `url`, keys `volley:…`,
/// `engine/src/cluster/keys.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/`. Absent: no revocation feed (and no `cluster:`,
    /// which needs it). One URL for both: a cluster's nodes share the
    /// revocations and the directory.
    pub url: Option<String>,
    /// Pub/sub channel, default `volley:revocations`.
    pub channel: Option<String>,
    /// While the feed is disconnected, refuse new browser sessions with 503
    /// `unavailable` (true) or keep admitting them, logging (false, default).
    pub fail_closed: bool,
    /// How long a revocation whose message carries no `exp` is remembered,
    /// seconds (a session revocation then follows its token's own `exp` once
    /// a gateway sees the token, PROTOCOL.md §6.2). Default 86 400.
    pub revocation_ttl_seconds: u64,
    /// How often expired entries are removed from the Redis record and from
    /// memory, seconds. Default 60.
    pub prune_interval_seconds: u64,
    /// After this many seconds without traffic on the subscription, the feed
    /// sends `PING`; no answer within the same time counts as a lost
    /// connection (a Redis host that vanished without closing TCP). Default 5.
    pub keepalive_seconds: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            channel: None,
            fail_closed: false,
            revocation_ttl_seconds: 86_400,
            prune_interval_seconds: 60,
            keepalive_seconds: 5,
        }
    }
}

impl RedisConfig {
    /// The channel to subscribe to.
    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or(DEFAULT_REVOCATION_CHANNEL)
    }
}

/// `control_plane:` — optional session validation over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneConfig {
    /// `GET <url>?session_id=<id>`. Absent: sessions are JWTs verified locally only.
    pub url: Option<String>,
    /// Ask the control plane about every session, JWTs included (after local
    /// verification). Default false: only ids that are not JWTs.
    pub validate_all: bool,
    /// TCP connect timeout, milliseconds. Default 1000.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout, milliseconds. Default 2000.
    pub timeout_ms: u64,
    /// When the control plane is unreachable: admit JWTs that verified
    /// locally (true), or refuse with 503 `unavailable` (false, default).
    /// Opaque ids cannot be admitted without an answer either way.
    pub fail_open: bool,
    /// Control-plane requests one client may cause per minute (answers
    /// served from the cache do not count). Past it, a lookup is refused
    /// with HTTP 429 `too_many_requests` without asking. Clients are told
    /// apart by IPv4 address or IPv6 /64 prefix. Default 600 (a burst of
    /// 600, then one every 100 ms).
    pub lookups_per_ip_per_minute: u32,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            url: None,
            validate_all: false,
            connect_timeout_ms: 1000,
            timeout_ms: 2000,
            fail_open: false,
            lookups_per_ip_per_minute: 600,
        }
    }
}

/// `tls:` — serve `https://` and `wss://` on the listener. Both files are
/// read at start (a bad pair refuses to start, naming the key) and again on
/// SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `tableros_secret_key` or `connector_secret_key`: one secret, or a list
/// during rotation (first signs, all verify).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Secrets {
    /// One secret.
    One(String),
    /// Several; the first is current.
    Many(Vec<String>),
}

impl Secrets {
    /// The secrets as bytes, current first.
    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        match self {
            Secrets::One(s) => vec![s.clone().into_bytes()],
            Secrets::Many(list) => list.iter().map(|s| s.clone().into_bytes()).collect(),
        }
    }

    /// Refuses an empty secret or an empty list, naming `key`.
    pub(super) fn validate(&self, key: &'static str) -> Result<(), ConfigError> {
        let message = match self {
            Secrets::One(s) if s.is_empty() => "is empty",
            Secrets::Many(list) if list.is_empty() || list.iter().any(String::is_empty) => {
                "must list non-empty secrets"
            }
            _ => return Ok(()),
        };
        Err(ConfigError::Invalid { key, message: message.into() })
    }
}
