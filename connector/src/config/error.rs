//! Why a configuration is refused: [`ConfigError`] for the file and its
//! settings, [`DatasetProblem`] for one dataset's definition, each message
//! naming the key or dataset and the reason.

use std::path::PathBuf;

use super::datasets::SOURCE_TYPES;
use super::limits::{CONFIG_BYTES_MAX, DATASETS_MAX};

/// A configuration that could not be loaded; every variant says why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file exceeds [`CONFIG_BYTES_MAX`].
    #[error("config file {path} is larger than {CONFIG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    /// YAML syntax error, unknown top-level key or wrong value type.
    #[error("invalid config: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// `gateway.uri` is not a ws:// or wss:// URL.
    #[error("gateway.uri `{uri}` is invalid: {reason}")]
    GatewayUri { uri: String, reason: &'static str },
    /// One entry of a `gateway.uri` list is not a ws:// or wss:// URL, or
    /// repeats another; `entry` counts from 1.
    #[error(
        "gateway.uri entry {entry} of {count} (`{uri}`) is invalid: {reason}; write every entry as \
         ws://host:port/ws/connect or wss://host:port/ws/connect"
    )]
    GatewayUriEntry { entry: usize, count: usize, uri: String, reason: String },
    /// A setting outside its documented range.
    #[error("{key} is invalid: {reason}")]
    Setting { key: &'static str, reason: String },
    /// The same dataset name appears twice under `datasets:`.
    #[error("dataset `{name}` is defined more than once")]
    DuplicateDataset { name: String },
    /// Too many datasets (see [`DATASETS_MAX`]).
    #[error("too many datasets: {count} (at most {DATASETS_MAX})")]
    TooManyDatasets { count: usize },
    /// One dataset's definition is wrong.
    #[error("dataset `{name}`: {problem}")]
    Dataset { name: String, problem: DatasetProblem },
}

/// What is wrong with one dataset's definition.
#[derive(Debug, thiserror::Error)]
pub enum DatasetProblem {
    #[error("invalid name: {0}")]
    Name(&'static str),
    #[error("missing `type` (one of {types})", types = SOURCE_TYPES.join(", "))]
    MissingType,
    #[error("unknown type `{0}` (one of {types})", types = SOURCE_TYPES.join(", "))]
    UnknownType(String),
    #[error("invalid definition: {0}")]
    Spec(String),
    #[error("file not found: {}", .0.display())]
    MissingFile(PathBuf),
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("bad live spec: {0}")]
    BadLive(String),
    #[error("bad schema: {0}")]
    BadSchema(String),
    #[error("{0}")]
    Limit(String),
    /// `type: odbc` in a build without the `odbc` cargo feature.
    #[error("{}", ODBC_NOT_BUILT)]
    OdbcNotBuilt,
}

/// Why an `odbc` dataset is refused by a build without the `odbc` feature,
/// and what to do about it.
pub const ODBC_NOT_BUILT: &str = "type `odbc` needs ODBC support, but this volley was built without ODBC: \
    install the unixODBC driver manager (Debian/Ubuntu: `sudo apt install unixodbc-dev`), then build with \
    `cargo build --release --features odbc`";
