//! Gateway configuration: the YAML file (`volley gateway --config`), its
//! defaults, and validation. Keeps the seed's keys (`http_port`,
//! `timeouts.*`, `tableros_secret_key`) and adds the engine's. Unknown keys
//! and bad values are refused at start with the key's name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::RuntimeChoice;

mod cluster;
mod limits;
mod sections;

pub use cluster::{ClusterConfig, ClusterIdentity, PeerSecret, LEASE_SECONDS_RANGE, PEER_SECRET_BYTES_MIN};

pub use limits::LimitsConfig;
pub use sections::{
    CompressionConfig, ControlPlaneConfig, QueriesConfig, RedisConfig, Rings, Secrets, SlowReaderPolicy, Timeouts,
    TlsConfig, DEFAULT_REVOCATION_CHANNEL,
};

/// Default `shutdown_grace_seconds`.
pub const SHUTDOWN_GRACE_SECONDS_DEFAULT: u64 = 20;
/// Largest `shutdown_grace_seconds`: a drain that needs longer is a stuck one.
pub const SHUTDOWN_GRACE_SECONDS_MAX: u64 = 3600;

/// The gateway's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Seed key: port when `listen` is absent. Default 8081.
    pub http_port: u16,
    /// Listen address; overrides `http_port`. Default `0.0.0.0:<http_port>`.
    pub listen: Option<String>,
    /// Worker threads (one runtime each). Default: available cores.
    pub workers: Option<usize>,
    /// The IO driver of every worker: `auto` (default) runs io_uring where
    /// the kernel and the sandbox allow it and epoll where they refuse it
    /// (one warning at start names the reason); `io_uring` refuses to start
    /// without it; `epoll` never tries it. `--runtime` overrides this.
    pub runtime: RuntimeChoice,
    /// Pin worker i to core i (when there are no more workers than cores).
    /// Best on a machine the gateway has to itself; where it shares cores
    /// with other busy processes, unpinned workers can move to an idle core.
    /// Default true.
    pub pin_workers: bool,
    /// Let the kernel back the gateway's heap with transparent huge pages.
    /// Default false: the gateway's heap is many small per-session objects,
    /// and with THP a few live bytes in a 2 MiB region keep all of it
    /// resident (idle sessions measured at 3.2 KB of RSS each with THP,
    /// 2.3 KB without; throughput the same within noise: perf-results/ANALYSIS.md).
    /// False disables THP for the whole process (`PR_SET_THP_DISABLE`).
    pub transparent_huge_pages: bool,
    /// Seed key: HS256 secret(s) for browser session tokens, and for
    /// connector credentials unless `connector_secret_key` is set.
    pub tableros_secret_key: Option<Secrets>,
    /// HS256 secret(s) for connector credentials only (`volley token
    /// --connector`). When set, connector credentials signed with
    /// `tableros_secret_key` are refused, and session tokens signed with it
    /// are refused: whoever issues browser sessions cannot mint connector
    /// credentials. Absent: connector credentials use `tableros_secret_key`
    /// (the gateway warns at start).
    pub connector_secret_key: Option<Secrets>,
    /// This gateway's edge id. When set, a browser session whose `edge_id`
    /// names another edge is refused with 403 `forbidden`; a session with an
    /// empty `edge_id` is valid on every edge. Absent: the claim is not
    /// checked.
    pub edge_id: Option<String>,
    /// Accept seed-style connectors that send no token (logged as a warning). Default false.
    pub allow_unauthenticated_connectors: bool,
    /// Browser `Origin` values allowed; empty allows any (tokens still required).
    pub allowed_origins: Vec<String>,
    /// Directory of static files served at `/` (the dashboard). Default `web/dist`.
    /// Read once at start into memory (`static_files.rs`): a change to its
    /// files needs a restart.
    pub static_dir: Option<PathBuf>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits, the protocol's and the engine's (`config/limits.rs`).
    pub limits: LimitsConfig,
    /// Ring budgets and slow-reader policy.
    pub rings: Rings,
    /// Redis revocation feed.
    pub redis: RedisConfig,
    /// Control plane.
    pub control_plane: ControlPlaneConfig,
    /// IPC body compression of upstream streams.
    pub compression: CompressionConfig,
    /// `queries:` — shared queries, their reuse, the admission queue (PROTOCOL.md §5.1).
    pub queries: QueriesConfig,
    /// TLS.
    pub tls: TlsConfig,
    /// `cluster:` — one node of several sharing `redis.url` as their
    /// directory (`config/cluster.rs`). Absent: a single gateway.
    pub cluster: Option<ClusterConfig>,
    /// On SIGTERM the gateway drains (`Gateway::drain`): it accepts nothing
    /// new, asks its connectors to move (`reconnect`), closes browser
    /// sessions with 1012 once their running queries ended, and exits once
    /// nothing runs — after this many seconds at the latest, cutting what
    /// still runs. Default 20: within Kubernetes' default
    /// `terminationGracePeriodSeconds` (30), so the gateway exits before it
    /// would be killed.
    pub shutdown_grace_seconds: u64,
    /// Test-only: enable the `/echo` WebSocket route used by the conformance suite.
    pub test_echo_route: bool,
    /// Test-only: enable `/test/panic/connection` (a connection task panics)
    /// and `/test/panic/worker` (a worker panics outside any connection),
    /// which the tests of panic containment and of the worker-exit rule use.
    /// Also lets in-process tests stall a worker (`WorkerMsg::Stall`).
    /// Never on in production: anyone could end the gateway.
    pub test_fault_routes: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            http_port: 8081,
            listen: None,
            workers: None,
            runtime: RuntimeChoice::Auto,
            pin_workers: true,
            transparent_huge_pages: false,
            tableros_secret_key: None,
            connector_secret_key: None,
            edge_id: None,
            allow_unauthenticated_connectors: false,
            allowed_origins: Vec::new(),
            static_dir: None,
            timeouts: Timeouts::default(),
            limits: LimitsConfig::default(),
            rings: Rings::default(),
            redis: RedisConfig::default(),
            control_plane: ControlPlaneConfig::default(),
            compression: CompressionConfig::default(),
            queries: QueriesConfig::default(),
            tls: TlsConfig::default(),
            cluster: None,
            shutdown_grace_seconds: SHUTDOWN_GRACE_SECONDS_DEFAULT,
            test_echo_route: false,
            test_fault_routes: false,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// serde's message, which names the key.
        message: String,
    },
    /// A value out of range.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl GatewayConfig {
    /// Reads and validates a YAML file.
    pub fn from_file(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config = GatewayConfig::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<GatewayConfig, ConfigError> {
        let config: GatewayConfig = if text.trim().is_empty() {
            GatewayConfig::default()
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| ConfigError::Parse { path: PathBuf::from("<config>"), message: e.to_string() })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relationships between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: &str| Err(ConfigError::Invalid { key, message: message.into() });
        if let Some(listen) = &self.listen {
            if listen.parse::<SocketAddr>().is_err() {
                return invalid("listen", "must be ADDRESS:PORT, e.g. 0.0.0.0:8081");
            }
        }
        if self.workers == Some(0) {
            return invalid("workers", "must be at least 1");
        }
        if self.timeouts.query_seconds == 0 || self.timeouts.connect_seconds == 0 {
            return invalid("timeouts", "query_seconds and connect_seconds must be at least 1");
        }
        if self.shutdown_grace_seconds > SHUTDOWN_GRACE_SECONDS_MAX {
            return invalid(
                "shutdown_grace_seconds",
                "must be at most 3600: set it a little below the time your supervisor waits after SIGTERM",
            );
        }
        let l = &self.limits;
        let p = &l.protocol;
        if p.control_message_bytes_max > p.browser_frame_bytes_max {
            return invalid("limits.control_message_bytes_max", "must not exceed limits.browser_frame_bytes_max");
        }
        if p.connector_frame_bytes_max > p.message_bytes_max {
            return invalid("limits.connector_frame_bytes_max", "must not exceed limits.message_bytes_max");
        }
        if p.browser_frame_bytes_max < 125 || p.connector_frame_bytes_max < 1024 {
            return invalid("limits", "frame limits are too small to carry control messages");
        }
        if l.credit_bytes == 0 || l.heartbeat_seconds == 0 || l.pending_requests_max == 0 {
            return invalid("limits", "credit_bytes, heartbeat_seconds and pending_requests_max must be at least 1");
        }
        if l.inbox_max < 16 || l.connector_queue_max < 16 {
            return invalid("limits", "inbox_max and connector_queue_max must be at least 16");
        }
        if l.inbox_bytes_max < p.message_bytes_max {
            return invalid(
                "limits.inbox_bytes_max",
                "must be at least limits.message_bytes_max (and so limits.connector_frame_bytes_max), so that one \
                 connector frame or message always fits",
            );
        }
        if self.rings.session_bytes_max < p.connector_frame_bytes_max.min(1 << 20) {
            return invalid("rings.session_bytes_max", "must hold at least one frame (1 MiB or the frame limit)");
        }
        let q = &self.queries;
        let credit = usize::try_from(l.credit_bytes).unwrap_or(usize::MAX);
        if q.share_log_bytes != 0 && q.share_log_bytes < credit.saturating_mul(2) {
            return invalid(
                "queries.share_log_bytes",
                "must be 0 (no sharing) or at least twice limits.credit_bytes, so that a shared stream's log holds \
                 what its connector may send ahead and more",
            );
        }
        if q.share_log_bytes != 0 && q.share_total_bytes < q.share_log_bytes {
            return invalid("queries.share_total_bytes", "must be at least queries.share_log_bytes");
        }
        if self.rings.total_bytes_max < self.rings.session_bytes_max {
            return invalid("rings.total_bytes_max", "must be at least rings.session_bytes_max");
        }
        if self.rings.session_control_bytes_max < p.control_message_bytes_max
            || self.rings.session_control_bytes_max > self.rings.session_bytes_max
        {
            return invalid(
                "rings.session_control_bytes_max",
                "must be at least limits.control_message_bytes_max and at most rings.session_bytes_max",
            );
        }
        if l.live_retained_bytes_max == 0 {
            return invalid("limits.live_retained_bytes_max", "must be at least 1");
        }
        if let Some(secrets) = &self.tableros_secret_key {
            secrets.validate("tableros_secret_key")?;
        }
        if let Some(secrets) = &self.connector_secret_key {
            secrets.validate("connector_secret_key")?;
        }
        if self.edge_id.as_deref() == Some("") {
            return invalid("edge_id", "is empty; remove the key to accept sessions of every edge");
        }
        if l.connections_max == 0 || l.connections_per_ip_max == 0 || l.sessions_per_tenant_max == 0 {
            return invalid(
                "limits",
                "connections_max, connections_per_ip_max and sessions_per_tenant_max must be at least 1",
            );
        }
        if let Some(url) = &self.redis.url {
            if !url.starts_with("redis://") && !url.starts_with("unix://") {
                return invalid(
                    "redis.url",
                    "must be redis://HOST:PORT[/DB] or unix:///path (rediss:// is not supported)",
                );
            }
        }
        if self.redis.channel.as_deref() == Some("") {
            return invalid("redis.channel", "is empty");
        }
        if self.redis.keepalive_seconds == 0 {
            return invalid("redis.keepalive_seconds", "must be at least 1");
        }
        if self.redis.revocation_ttl_seconds == 0 {
            return invalid("redis.revocation_ttl_seconds", "must be at least 1");
        }
        if self.redis.prune_interval_seconds == 0 {
            return invalid("redis.prune_interval_seconds", "must be at least 1");
        }
        if let Some(url) = &self.control_plane.url {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return invalid("control_plane.url", "must be an http:// or https:// URL");
            }
        }
        if self.control_plane.connect_timeout_ms == 0 || self.control_plane.timeout_ms == 0 {
            return invalid("control_plane", "connect_timeout_ms and timeout_ms must be at least 1");
        }
        if self.control_plane.lookups_per_ip_per_minute == 0 {
            return invalid("control_plane.lookups_per_ip_per_minute", "must be at least 1");
        }
        let codecs = &self.compression.codecs;
        if codecs.iter().enumerate().any(|(i, codec)| codecs[..i].contains(codec)) {
            return invalid("compression.codecs", "lists a codec twice");
        }
        if let Some(codec) = self.compression.assume_client_codecs.iter().find(|codec| !codecs.contains(codec)) {
            return Err(ConfigError::Invalid {
                key: "compression.assume_client_codecs",
                message: format!("{codec} is not in compression.codecs, so no stream would ever use it"),
            });
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls", "cert and key go together");
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate(self.redis.url.as_deref())?;
        }
        Ok(())
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        match &self.listen {
            Some(text) => text
                .parse()
                .map_err(|_| ConfigError::Invalid { key: "listen", message: format!("{text:?} is not ADDRESS:PORT") }),
            None => Ok(SocketAddr::from(([0, 0, 0, 0], self.http_port))),
        }
    }

    /// The session secrets (`tableros_secret_key`), current first.
    pub fn secrets(&self) -> Vec<Vec<u8>> {
        self.tableros_secret_key.as_ref().map(Secrets::to_bytes).unwrap_or_default()
    }

    /// The connector-credential secrets (`connector_secret_key`), current
    /// first; `None` when connector credentials share the session secrets.
    pub fn connector_secrets(&self) -> Option<Vec<Vec<u8>>> {
        self.connector_secret_key.as_ref().map(Secrets::to_bytes)
    }

    /// What a live stream may keep for late joiners:
    /// `limits.live_retained_bytes_max`, but never more than one session's
    /// ring holds (`rings.session_bytes_max`), so that a late joiner with an
    /// empty ring can always take the snapshot.
    pub fn live_retained_bytes_max(&self) -> usize {
        self.limits.live_retained_bytes_max.min(self.rings.session_bytes_max)
    }

    /// The record batches a live stream keeps for joiners:
    /// `limits.live_window_bytes`, but never more than one session's ring
    /// has room for beside the schema and dictionaries
    /// ([`GatewayConfig::live_retained_bytes_max`]), so that a joiner with an
    /// empty ring can always take the whole snapshot.
    pub fn live_window_bytes(&self) -> usize {
        self.limits.live_window_bytes.min(self.rings.session_bytes_max.saturating_sub(self.live_retained_bytes_max()))
    }

    /// Worker count: configured, else available cores.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_protocol::Codec;

    #[test]
    fn seed_keys_parse_with_defaults() {
        let config = GatewayConfig::from_yaml(
            "http_port: 9000\ntimeouts:\n  query_seconds: 30\n  connect_seconds: 5\ntableros_secret_key: abc\n",
        )
        .unwrap();
        assert_eq!(config.http_port, 9000);
        assert_eq!(config.timeouts.query_seconds, 30);
        assert_eq!(config.secrets(), vec![b"abc".to_vec()]);
        assert_eq!(config.listen_addr().unwrap().port(), 9000);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = GatewayConfig::from_yaml("http_prot: 9000\n").unwrap_err().to_string();
        assert!(err.contains("http_prot"), "{err}");
        let err = GatewayConfig::from_yaml("limits:\n  frame_max: 1\n").unwrap_err().to_string();
        assert!(err.contains("frame_max"), "{err}");
    }

    #[test]
    fn security_keys_parse_with_defaults() {
        let config = GatewayConfig::from_yaml("redis:\n  url: redis://127.0.0.1:6379/\n").unwrap();
        assert_eq!(config.redis.channel(), DEFAULT_REVOCATION_CHANNEL);
        assert!(!config.redis.fail_closed);
        assert_eq!(config.redis.revocation_ttl_seconds, 86_400);
        assert_eq!(config.redis.prune_interval_seconds, 60);
        assert_eq!(config.control_plane, ControlPlaneConfig::default());
        assert_eq!(config.control_plane.connect_timeout_ms, 1000);
        assert_eq!(config.control_plane.timeout_ms, 2000);
        assert!(!config.control_plane.fail_open && !config.control_plane.validate_all);
        assert_eq!(config.limits.sessions_per_tenant_max, 50_000);
        assert_eq!(config.control_plane.lookups_per_ip_per_minute, 600);
        assert_eq!((config.edge_id.as_deref(), config.connector_secrets()), (None, None));
        let config = GatewayConfig::from_yaml(
            "redis:\n  url: redis://r:1/\n  channel: c\n  fail_closed: true\ncontrol_plane:\n  url: http://cp/v\n  \
             validate_all: true\n  fail_open: true\n  timeout_ms: 50\nlimits:\n  sessions_per_tenant_max: 3\n",
        )
        .unwrap();
        assert_eq!(config.redis.channel(), "c");
        assert!(config.redis.fail_closed && config.control_plane.validate_all && config.control_plane.fail_open);
        assert_eq!(config.control_plane.timeout_ms, 50);
        assert_eq!(config.limits.sessions_per_tenant_max, 3);
        for (yaml, key) in [
            ("redis:\n  url: http://x\n", "redis.url"),
            ("redis:\n  channel: ''\n", "redis.channel"),
            ("redis:\n  prune_interval_seconds: 0\n", "redis.prune_interval_seconds"),
            ("control_plane:\n  url: ftp://x\n", "control_plane.url"),
            ("control_plane:\n  timeout_ms: 0\n", "control_plane"),
            ("control_plane:\n  lookups_per_ip_per_minute: 0\n", "control_plane.lookups_per_ip_per_minute"),
            ("edge_id: ''\n", "edge_id"),
            ("connector_secret_key: ''\n", "connector_secret_key"),
            ("connector_secret_key: []\n", "connector_secret_key"),
            ("limits:\n  connections_per_ip_max: 0\n", "limits"),
            ("redis:\n  fail_closd: true\n", "fail_closd"),
        ] {
            let err = GatewayConfig::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn edge_and_connector_secret_parse() {
        let config = GatewayConfig::from_yaml(
            "tableros_secret_key: s\nconnector_secret_key: [c2, c1]\nedge_id: edge-1\ncontrol_plane:\n  \
             lookups_per_ip_per_minute: 30\n",
        )
        .unwrap();
        assert_eq!(config.secrets(), vec![b"s".to_vec()]);
        assert_eq!(config.connector_secrets(), Some(vec![b"c2".to_vec(), b"c1".to_vec()]));
        assert_eq!(config.edge_id.as_deref(), Some("edge-1"));
        assert_eq!(config.control_plane.lookups_per_ip_per_minute, 30);
    }

    #[test]
    fn compression_is_off_by_default_and_follows_the_gateway_preference() {
        let off = GatewayConfig::from_yaml("http_port: 9000\n").unwrap().compression;
        assert_eq!(off, CompressionConfig::default());
        let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(off.preference(Some(&names(&["zstd", "lz4"]))), vec![None], "off: never compressed");

        let config = GatewayConfig::from_yaml("compression:\n  codecs: [zstd, lz4]\n").unwrap().compression;
        // The gateway's order decides, not the client's.
        assert_eq!(config.preference(Some(&names(&["lz4", "zstd"]))), vec![Some(Codec::Zstd), Some(Codec::Lz4), None]);
        assert_eq!(config.preference(Some(&names(&["lz4", "brotli"]))), vec![Some(Codec::Lz4), None]);
        assert_eq!(config.preference(Some(&[])), vec![None], "[] accepts nothing");
        assert_eq!(config.preference(None), vec![None], "a client that says nothing gets nothing");

        let config = GatewayConfig::from_yaml("compression:\n  codecs: [lz4, zstd]\n  assume_client_codecs: [zstd]\n")
            .unwrap()
            .compression;
        assert_eq!(config.preference(None), vec![Some(Codec::Zstd), None]);
        assert_eq!(config.preference(Some(&[])), vec![None], "an explicit [] overrides the assumption");

        for (yaml, needle) in [
            ("compression:\n  codecs: [zstd, zstd]\n", "compression.codecs"),
            ("compression:\n  codecs: [lz4]\n  assume_client_codecs: [zstd]\n", "compression.assume_client_codecs"),
            ("compression:\n  codecs: [brotli]\n", "brotli"),
            ("compression:\n  codec: [zstd]\n", "codec"),
        ] {
            let err = GatewayConfig::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let err = GatewayConfig::from_yaml("listen: nowhere\n").unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
        let err = GatewayConfig::from_yaml("workers: 0\n").unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
        let err = GatewayConfig::from_yaml("rings:\n  total_bytes_max: 10\n").unwrap_err().to_string();
        assert!(err.contains("rings.total_bytes_max"), "{err}");
        let err = GatewayConfig::from_yaml("limits:\n  inbox_bytes_max: 1048576\n").unwrap_err().to_string();
        assert!(err.contains("limits.inbox_bytes_max"), "{err}");
        assert_eq!(GatewayConfig::default().limits.inbox_bytes_max, 64 << 20);
        let small =
            "limits:\n  connector_frame_bytes_max: 1048576\n  message_bytes_max: 1048576\n  inbox_bytes_max: 1048576\n";
        assert_eq!(GatewayConfig::from_yaml(small).unwrap().limits.inbox_bytes_max, 1 << 20);
        let err = GatewayConfig::from_yaml("limits:\n  live_retained_bytes_max: 0\n").unwrap_err().to_string();
        assert!(err.contains("limits.live_retained_bytes_max"), "{err}");
        let config = GatewayConfig::from_yaml("limits:\n  live_retained_bytes_max: 1048576\n").unwrap();
        assert_eq!(config.live_retained_bytes_max(), 1 << 20);
        assert_eq!(GatewayConfig::default().live_retained_bytes_max(), 4 << 20);
        // Never more than a late joiner's ring holds.
        let config = GatewayConfig::from_yaml("rings:\n  session_bytes_max: 2097152\n").unwrap();
        assert_eq!(config.live_retained_bytes_max(), 2 << 20);
        let err = GatewayConfig::from_yaml("tls:\n  cert: a.pem\n").unwrap_err().to_string();
        assert!(err.contains("tls") && err.contains("together"), "{err}");
        let err = GatewayConfig::from_yaml("redis:\n  keepalive_seconds: 0\n").unwrap_err().to_string();
        assert!(err.contains("redis.keepalive_seconds"), "{err}");
        let err = GatewayConfig::from_yaml("rings:\n  slow_reader_policy: pray\n").unwrap_err().to_string();
        assert!(err.contains("pray") || err.contains("slow_reader_policy"), "{err}");
    }
}
