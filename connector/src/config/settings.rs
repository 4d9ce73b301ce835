//! The loaded configuration, [`Config`], and its sections other than
//! `datasets:`: gateway, tenant, performance and logging.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use volley_protocol::Codec;

use super::datasets::SourceSpec;
use super::limits::{
    CHUNK_BYTES_MAX_DEFAULT, CHUNK_BYTES_MIN_DEFAULT, COMPRESSION_CODECS_DEFAULT, PARALLEL_CONNECTIONS_DEFAULT,
    RECONNECT_DELAY_SECONDS_DEFAULT,
};

/// The loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub tenant: TenantConfig,
    pub performance: PerformanceConfig,
    pub logging: LoggingConfig,
    /// Dataset name → source; names are the only thing a request can name.
    pub datasets: BTreeMap<String, SourceSpec>,
}

/// `gateway:` — where the tunnels go.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `gateway.uri`: `ws://host:port/ws/connect` or `wss://…`, one or a
    /// list (the gateways of a cluster), in the file's order, never empty.
    /// Tunnels are spread over them round robin (and over the addresses a
    /// name resolves to); a tunnel that loses its gateway, or is asked to
    /// move, goes to the next one.
    pub uris: Vec<String>,
    /// PEM file of the CA(s) that sign the gateway's certificate, for
    /// `wss://` to a gateway with a private CA. Absent: the system's roots
    /// (Mozilla's bundled roots when the system has none). Relative paths
    /// are relative to the config file.
    pub ca_file: Option<PathBuf>,
}

impl GatewayConfig {
    /// One gateway at `uri` with the system's roots.
    pub fn single(uri: impl Into<String>) -> GatewayConfig {
        GatewayConfig { uris: vec![uri.into()], ca_file: None }
    }

    /// The listed gateways, comma-separated, for log lines.
    pub fn describe(&self) -> String {
        self.uris.join(", ")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    /// Per-tenant secret presented to the gateway.
    #[serde(default)]
    pub token: Option<String>,
}

/// IPC body compression of one stream's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceConfig {
    pub parallel_connections: usize,
    /// Target maximum encoded IPC message size, bytes.
    pub max_chunk_bytes: usize,
    /// Target minimum encoded IPC message size, bytes (never above `max_chunk_bytes`).
    pub min_chunk_bytes: usize,
    pub reconnect_delay: Duration,
    /// Codecs offered to the gateway in `register` (`performance.compression`).
    /// The gateway chooses per stream among them (`do_get`'s `compression`);
    /// offering costs nothing until a gateway asks. Default: every codec
    /// ([`COMPRESSION_CODECS_DEFAULT`]).
    pub compression_codecs: Vec<Codec>,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            parallel_connections: PARALLEL_CONNECTIONS_DEFAULT,
            max_chunk_bytes: CHUNK_BYTES_MAX_DEFAULT,
            min_chunk_bytes: CHUNK_BYTES_MIN_DEFAULT,
            reconnect_delay: Duration::from_secs_f64(RECONNECT_DELAY_SECONDS_DEFAULT),
            compression_codecs: COMPRESSION_CODECS_DEFAULT.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LoggingConfig {
    pub level: LogLevel,
}
