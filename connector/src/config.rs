//! The connector's YAML configuration: gateway, tenant, performance limits,
//! logging and the dataset catalogue.
//!
//! The file is seed-compatible (`gateway.uri`, `tenant.id`,
//! `performance.parallel_connections`, `performance.max_chunk_size`,
//! `performance.reconnect_delay`, `logging.level`) and adds `datasets:`, a map
//! from dataset name to source. A CSV dataset also takes its dialect:
//! `delimiter`, `quote`, `header` (or `has_header`), `encoding` and
//! `decimal` (see [`CsvSpec`]). Loading validates everything up front: unknown
//! keys, unknown source types, missing files, bad URLs, bad live specs and
//! duplicate dataset names are refused with a [`ConfigError`] that names the
//! dataset and the reason. Relative paths are resolved against the directory
//! of the config file.
//!
//! Every limit is a named constant below, with its unit and reason.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use volley_protocol::Codec;

/// Default number of parallel tunnel connections (seed default).
pub const PARALLEL_CONNECTIONS_DEFAULT: usize = 3;
/// Upper bound on tunnel connections: each one is a socket and a thread at the gateway.
pub const PARALLEL_CONNECTIONS_MAX: usize = 64;
/// Default target maximum size of one encoded IPC message (one WebSocket frame): 1 MiB.
pub const CHUNK_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Default target minimum size of one encoded IPC message: 64 KiB. Smaller
/// batches are concatenated up to this size so per-frame overhead stays small.
pub const CHUNK_BYTES_MIN_DEFAULT: usize = 64 * 1024;
/// Smallest accepted `max_chunk_size`: the seed used 16 KiB; below 4 KiB the
/// IPC metadata dominates every frame.
pub const CHUNK_BYTES_FLOOR: usize = 4 * 1024;
/// Largest accepted `max_chunk_size`: 16 MiB, the frame limit a gateway is
/// expected to accept; bigger frames stall every stream sharing the socket.
pub const CHUNK_BYTES_CEILING: usize = 16 * 1024 * 1024;
/// Default delay before a reconnect attempt, in seconds.
pub const RECONNECT_DELAY_SECONDS_DEFAULT: f64 = 1.0;
/// Longest accepted reconnect delay, in seconds (one hour).
pub const RECONNECT_DELAY_SECONDS_MAX: f64 = 3600.0;
/// Default rows per record batch read from a source.
pub const BATCH_ROWS_DEFAULT: usize = 8192;
/// Largest accepted `batch_rows`: bounds the memory one source batch may take.
pub const BATCH_ROWS_MAX: usize = 1_000_000;
/// Codecs offered to the gateway when `performance.compression` is absent:
/// all the connector can produce. The gateway asks for one only when its own
/// `compression.codecs` and the requesting browser allow it.
pub const COMPRESSION_CODECS_DEFAULT: [Codec; 2] = Codec::ALL;
/// Rows read to infer a CSV/NDJSON schema when none is given.
pub const INFER_SCHEMA_ROWS: usize = 1000;
/// Default poll interval of a followed CSV/NDJSON file, in milliseconds.
pub const FOLLOW_POLL_MS_DEFAULT: u64 = 250;
/// Shortest accepted poll interval (file follow and SQL polling), in milliseconds.
pub const POLL_MS_MIN: u64 = 10;
/// Longest accepted poll interval, in milliseconds (one day).
pub const POLL_MS_MAX: u64 = 86_400_000;
/// Longest accepted dataset name, in bytes.
pub const DATASET_NAME_BYTES_MAX: usize = 128;
/// Most datasets one connector may serve (bounds the `register` message).
pub const DATASETS_MAX: usize = 10_000;
/// Largest accepted config file, in bytes.
pub const CONFIG_BYTES_MAX: u64 = 4 * 1024 * 1024;

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

/// Source types accepted in `type:`.
pub const SOURCE_TYPES: [&str; 7] = ["csv", "json", "ndjson", "parquet", "arrow", "postgres", "odbc"];

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `ws://host:port/ws/connect` or `wss://…`.
    pub uri: String,
    /// PEM file of the CA(s) that sign the gateway's certificate, for
    /// `wss://` to a gateway with a private CA. Absent: the system's roots
    /// (Mozilla's bundled roots when the system has none). Relative paths
    /// are relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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

/// One dataset's source, with paths already resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSpec {
    Csv(CsvSpec),
    #[serde(alias = "ndjson")]
    Json(JsonSpec),
    Parquet(ParquetSpec),
    Arrow(ArrowSpec),
    Postgres(PostgresSpec),
    Odbc(OdbcSpec),
}

impl SourceSpec {
    /// True when the dataset never ends by itself (follow or polling mode).
    pub fn is_live(&self) -> bool {
        match self {
            SourceSpec::Csv(s) => s.live.as_ref().is_some_and(|l| l.follow),
            SourceSpec::Json(s) => s.live.as_ref().is_some_and(|l| l.follow),
            SourceSpec::Postgres(s) => s.live.is_some(),
            SourceSpec::Parquet(_) | SourceSpec::Arrow(_) | SourceSpec::Odbc(_) => false,
        }
    }

    /// The source type as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceSpec::Csv(_) => "csv",
            SourceSpec::Json(_) => "json",
            SourceSpec::Parquet(_) => "parquet",
            SourceSpec::Arrow(_) => "arrow",
            SourceSpec::Postgres(_) => "postgres",
            SourceSpec::Odbc(_) => "odbc",
        }
    }
}

/// A CSV dataset. Besides the file, its dialect: files as people have them
/// (Spanish Excel exports: `;`, decimal comma, Windows-1252) are read with
/// `delimiter`, `quote`, `header`, `encoding` and `decimal`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    pub path: PathBuf,
    /// `header:` (the seed's name `has_header:` too): the first line names
    /// the columns. Default true; without a header the columns are
    /// `column_1`, `column_2`, …
    #[serde(default = "default_true", alias = "header")]
    pub has_header: bool,
    /// `delimiter:` one ASCII character between fields. Absent: `,` — and
    /// then a file whose lines split consistently on another common
    /// delimiter (`;`, tab, `|`) into one column is refused with a hint.
    #[serde(default)]
    pub delimiter: Option<CsvChar>,
    /// `quote:` one ASCII character around fields that hold the delimiter;
    /// doubled inside a field it stands for itself. Default `"`.
    #[serde(default)]
    pub quote: Option<CsvChar>,
    /// `encoding:` the file's character encoding, by its usual label
    /// (`utf-8`, `windows-1252`, `latin1`, `iso-8859-15`, `utf-16le`, …, as
    /// WHATWG names them: `latin1` and `iso-8859-1` read as Windows-1252,
    /// their superset). A byte-order mark at the start wins over it and is
    /// dropped. Default UTF-8.
    #[serde(default)]
    pub encoding: TextEncoding,
    /// `decimal:` the decimal mark of numbers, `.` (default) or `,`. With
    /// `,` a column whose sampled values are all numbers written with a
    /// decimal comma (`12,5`, `-7`, `,25`, `1,5e3`; no thousands separators)
    /// is read as float64, as are float columns of `schema:`. Needs a
    /// delimiter other than `,`.
    #[serde(default)]
    pub decimal: DecimalMark,
    #[serde(default)]
    pub schema: Option<Vec<ColumnSpec>>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub live: Option<FollowSpec>,
}

impl CsvSpec {
    /// The delimiter byte in force (`,` when not given).
    pub fn delimiter_byte(&self) -> u8 {
        self.delimiter.map_or(b',', |c| c.0)
    }
    /// The quote byte in force (`"` when not given).
    pub fn quote_byte(&self) -> u8 {
        self.quote.map_or(b'"', |c| c.0)
    }
}

/// One ASCII character of a CSV dialect (`delimiter:`, `quote:`), not a
/// line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CsvChar(pub u8);

impl TryFrom<String> for CsvChar {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_bytes() {
            [byte] if byte.is_ascii() && !matches!(byte, b'\n' | b'\r') => Ok(CsvChar(*byte)),
            _ => Err(format!(
                "delimiter and quote take one ASCII character, not {text:?} (e.g. \";\", \"|\" or \"\\t\" for a tab)"
            )),
        }
    }
}

/// A text file's character encoding (`encoding:`); see [`CsvSpec::encoding`].
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TextEncoding(pub &'static encoding_rs::Encoding);

impl Default for TextEncoding {
    fn default() -> Self {
        TextEncoding(encoding_rs::UTF_8)
    }
}

impl fmt::Debug for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl TryFrom<String> for TextEncoding {
    type Error = String;
    fn try_from(label: String) -> Result<Self, String> {
        match encoding_rs::Encoding::for_label_no_replacement(label.as_bytes()) {
            Some(encoding) => Ok(TextEncoding(encoding)),
            None => Err(format!(
                "unknown encoding {label:?} (e.g. utf-8, windows-1252 for Excel on Windows, latin1, iso-8859-15)"
            )),
        }
    }
}

/// The decimal mark of numbers in a CSV file (`decimal:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum DecimalMark {
    /// `1.5`
    #[default]
    Point,
    /// `1,5`
    Comma,
}

impl TryFrom<String> for DecimalMark {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "." => Ok(DecimalMark::Point),
            "," => Ok(DecimalMark::Comma),
            other => Err(format!("{other:?} is not a decimal mark: \".\" or \",\"")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSpec {
    pub path: PathBuf,
    #[serde(default)]
    pub schema: Option<Vec<ColumnSpec>>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub live: Option<FollowSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSpec {
    pub path: PathBuf,
    /// Top-level column names to read (projection); all when absent.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrowSpec {
    /// An Arrow IPC file (`ARROW1` magic) or stream.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    pub url: String,
    pub query: String,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub live: Option<PollSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdbcSpec {
    pub connection_string: String,
    pub query: String,
    #[serde(default)]
    pub batch_rows: Option<usize>,
}

/// `live:` for csv/json: follow the file like `tail -f`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowSpec {
    pub follow: bool,
    #[serde(default = "default_follow_poll_ms")]
    pub poll_ms: u64,
}

/// `live:` for postgres: re-run the query every `interval_ms` with `$1` = the
/// largest `watermark` value seen so far.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    pub interval_ms: u64,
    /// Column of the result whose largest value becomes the next `$1`.
    pub watermark: String,
    /// `$1` for the first run, as text (e.g. `2024-01-01 00:00:00`); when
    /// absent the lowest value of the parameter's type (`-infinity` for
    /// timestamps and dates).
    #[serde(default)]
    pub initial: Option<String>,
}

/// One column of a CSV/NDJSON schema override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

fn default_follow_poll_ms() -> u64 {
    FOLLOW_POLL_MS_DEFAULT
}

impl SourceSpec {
    /// Rows per batch for this source.
    pub fn batch_rows(&self) -> usize {
        let configured = match self {
            SourceSpec::Csv(s) => s.batch_rows,
            SourceSpec::Json(s) => s.batch_rows,
            SourceSpec::Parquet(s) => s.batch_rows,
            SourceSpec::Postgres(s) => s.batch_rows,
            SourceSpec::Odbc(s) => s.batch_rows,
            SourceSpec::Arrow(_) => None,
        };
        configured.unwrap_or(BATCH_ROWS_DEFAULT)
    }
}

/// Maps a schema-override type name onto an Arrow type.
pub fn parse_column_type(name: &str) -> Option<DataType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" | "string" => DataType::Utf8,
        "date32" | "date" => DataType::Date32,
        "timestamp_s" => DataType::Timestamp(TimeUnit::Second, None),
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_ns" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        _ => return None,
    })
}

/// Builds the Arrow schema of a `schema:` override.
pub fn schema_from_columns(columns: &[ColumnSpec]) -> Result<SchemaRef, String> {
    if columns.is_empty() {
        return Err("schema has no columns".into());
    }
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        if fields.iter().any(|f: &Field| f.name() == &column.name) {
            return Err(format!("column `{}` appears twice", column.name));
        }
        let data_type = parse_column_type(&column.data_type).ok_or_else(|| {
            format!(
                "column `{}` has unknown type `{}` (bool, int8..int64, uint8..uint64, float32, float64, utf8, date32, timestamp_s/ms/us/ns)",
                column.name, column.data_type
            )
        })?;
        fields.push(Field::new(&column.name, data_type, column.nullable));
    }
    Ok(std::sync::Arc::new(Schema::new(fields)))
}

// ---- raw file layout -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: GatewayConfig,
    tenant: TenantConfig,
    #[serde(default)]
    performance: RawPerformance,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    datasets: RawDatasets,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPerformance {
    parallel_connections: Option<usize>,
    max_chunk_size: Option<usize>,
    min_chunk_size: Option<usize>,
    reconnect_delay: Option<f64>,
    /// `none`, one codec, or a list of codecs (see [`parse_compression`]).
    compression: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Option<String>,
}

/// `datasets:` kept as an ordered list so duplicate keys are seen, not overwritten.
#[derive(Default)]
struct RawDatasets(Vec<(String, serde_yaml_ng::Value)>);

impl<'de> Deserialize<'de> for RawDatasets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = RawDatasets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from dataset name to source definition")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawDatasets, E> {
                Ok(RawDatasets::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDatasets, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, serde_yaml_ng::Value>()? {
                    if entries.len() > DATASETS_MAX {
                        return Err(serde::de::Error::custom(format!("too many datasets (at most {DATASETS_MAX})")));
                    }
                    entries.push((name, value));
                }
                Ok(RawDatasets(entries))
            }
        }
        deserializer.deserialize_any(EntriesVisitor)
    }
}

impl Config {
    /// Reads and validates a config file; relative dataset paths resolve
    /// against the file's directory. The path is made absolute first, so
    /// every message names the file that was looked at, wherever the
    /// command ran.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let read_error = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let length = std::fs::metadata(path).map_err(read_error)?.len();
        if length > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge { path: path.to_path_buf() });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Config::from_yaml(&text, &base_dir)
    }

    /// Parses and validates config text; `base_dir` anchors relative paths.
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(text)?;
        validate_gateway_uri(&raw.gateway.uri)?;
        if raw.tenant.id.trim().is_empty() {
            return Err(ConfigError::Setting { key: "tenant.id", reason: "must not be empty".into() });
        }
        let performance = validate_performance(&raw.performance)?;
        let logging = LoggingConfig {
            level: match raw.logging.level.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("info") => LogLevel::Info,
                Some("error") => LogLevel::Error,
                Some("warn") | Some("warning") => LogLevel::Warn,
                Some("debug") => LogLevel::Debug,
                Some("trace") => LogLevel::Trace,
                Some(other) => {
                    return Err(ConfigError::Setting {
                        key: "logging.level",
                        reason: format!("`{other}` is not one of error, warn, info, debug, trace"),
                    })
                }
            },
        };
        if raw.datasets.0.len() > DATASETS_MAX {
            return Err(ConfigError::TooManyDatasets { count: raw.datasets.0.len() });
        }
        let mut datasets = BTreeMap::new();
        for (name, value) in raw.datasets.0 {
            if datasets.contains_key(&name) {
                return Err(ConfigError::DuplicateDataset { name });
            }
            let spec = parse_dataset(&name, value, base_dir)
                .map_err(|problem| ConfigError::Dataset { name: name.clone(), problem })?;
            datasets.insert(name, spec);
        }
        let mut gateway = raw.gateway;
        if let Some(ca_file) = &mut gateway.ca_file {
            *ca_file = base_dir.join(&*ca_file);
            crate::ca::load_ca_file(ca_file)
                .map_err(|reason| ConfigError::Setting { key: "gateway.ca_file", reason })?;
        }
        Ok(Config { gateway, tenant: raw.tenant, performance, logging, datasets })
    }
}

fn validate_gateway_uri(uri: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::GatewayUri { uri: uri.to_string(), reason };
    let rest = uri
        .strip_prefix("ws://")
        .or_else(|| uri.strip_prefix("wss://"))
        .ok_or_else(|| bad("must start with ws:// or wss://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if uri.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    Ok(())
}

fn validate_performance(raw: &RawPerformance) -> Result<PerformanceConfig, ConfigError> {
    let parallel_connections = raw.parallel_connections.unwrap_or(PARALLEL_CONNECTIONS_DEFAULT);
    if !(1..=PARALLEL_CONNECTIONS_MAX).contains(&parallel_connections) {
        return Err(ConfigError::Setting {
            key: "performance.parallel_connections",
            reason: format!("{parallel_connections} is outside 1..={PARALLEL_CONNECTIONS_MAX}"),
        });
    }
    let max_chunk_bytes = raw.max_chunk_size.unwrap_or(CHUNK_BYTES_MAX_DEFAULT);
    if !(CHUNK_BYTES_FLOOR..=CHUNK_BYTES_CEILING).contains(&max_chunk_bytes) {
        return Err(ConfigError::Setting {
            key: "performance.max_chunk_size",
            reason: format!("{max_chunk_bytes} bytes is outside {CHUNK_BYTES_FLOOR}..={CHUNK_BYTES_CEILING}"),
        });
    }
    // A seed config sets only max_chunk_size (16 KiB): the default minimum
    // then follows it down instead of contradicting it.
    let min_chunk_bytes = match raw.min_chunk_size {
        Some(min) if min > max_chunk_bytes => {
            return Err(ConfigError::Setting {
                key: "performance.min_chunk_size",
                reason: format!("{min} bytes is above max_chunk_size ({max_chunk_bytes})"),
            })
        }
        Some(min) => min,
        None => CHUNK_BYTES_MIN_DEFAULT.min(max_chunk_bytes),
    };
    let delay_seconds = raw.reconnect_delay.unwrap_or(RECONNECT_DELAY_SECONDS_DEFAULT);
    if !(0.0..=RECONNECT_DELAY_SECONDS_MAX).contains(&delay_seconds) {
        return Err(ConfigError::Setting {
            key: "performance.reconnect_delay",
            reason: format!("{delay_seconds} s is outside 0..={RECONNECT_DELAY_SECONDS_MAX}"),
        });
    }
    Ok(PerformanceConfig {
        parallel_connections,
        max_chunk_bytes,
        min_chunk_bytes,
        reconnect_delay: Duration::from_secs_f64(delay_seconds),
        compression_codecs: match &raw.compression {
            None => COMPRESSION_CODECS_DEFAULT.to_vec(),
            Some(value) => parse_compression(value)?,
        },
    })
}

/// `performance.compression`: `none` (offer nothing), one codec (`zstd`,
/// `lz4`), or a list of codecs, each at most once.
fn parse_compression(value: &serde_yaml_ng::Value) -> Result<Vec<Codec>, ConfigError> {
    let bad = |reason: String| ConfigError::Setting { key: "performance.compression", reason };
    let codec = |value: &serde_yaml_ng::Value| -> Result<Codec, ConfigError> {
        let name = value.as_str().ok_or_else(|| bad(format!("{value:?} is not a codec name")))?;
        Codec::from_name(name).ok_or_else(|| bad(format!("`{name}` is not one of none, lz4, zstd")))
    };
    match value {
        serde_yaml_ng::Value::String(name) if name == "none" => Ok(Vec::new()),
        serde_yaml_ng::Value::Sequence(items) => {
            let mut codecs = Vec::with_capacity(items.len());
            for item in items {
                if item.as_str() == Some("none") {
                    return Err(bad("`none` stands alone (`compression: none`), not in a list".into()));
                }
                let codec = codec(item)?;
                if codecs.contains(&codec) {
                    return Err(bad(format!("`{codec}` is listed twice")));
                }
                codecs.push(codec);
            }
            Ok(codecs)
        }
        other => Ok(vec![codec(other)?]),
    }
}

/// The dialect's characters must not collide.
fn check_dialect(spec: &CsvSpec) -> Result<(), DatasetProblem> {
    if spec.quote_byte() == spec.delimiter_byte() {
        return Err(DatasetProblem::Spec("`quote` and `delimiter` are the same character".into()));
    }
    if spec.decimal == DecimalMark::Comma && spec.delimiter_byte() == b',' {
        return Err(DatasetProblem::Spec(
            "`decimal: \",\"` needs a delimiter other than `,` (e.g. `delimiter: \";\"`)".into(),
        ));
    }
    Ok(())
}

/// Checks that a dataset name is safe to appear in a request: letters,
/// digits, `_`, `-`, `.`, not starting with `.`.
pub fn validate_dataset_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > DATASET_NAME_BYTES_MAX {
        return Err("longer than 128 bytes");
    }
    if name.starts_with('.') {
        return Err("starts with `.`");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err("only letters, digits, `_`, `-` and `.` are allowed");
    }
    Ok(())
}

fn parse_dataset(name: &str, value: serde_yaml_ng::Value, base_dir: &Path) -> Result<SourceSpec, DatasetProblem> {
    validate_dataset_name(name).map_err(DatasetProblem::Name)?;
    let type_name = match value.get("type") {
        None => return Err(DatasetProblem::MissingType),
        Some(t) => t.as_str().ok_or_else(|| DatasetProblem::Spec("`type` must be a string".into()))?.to_string(),
    };
    if !SOURCE_TYPES.contains(&type_name.as_str()) {
        return Err(DatasetProblem::UnknownType(type_name));
    }
    if let Some(live) = value.get("live") {
        let bad_live = |e: serde_yaml_ng::Error| DatasetProblem::BadLive(e.to_string());
        match type_name.as_str() {
            "csv" | "json" | "ndjson" => {
                serde_yaml_ng::from_value::<FollowSpec>(live.clone()).map_err(bad_live)?;
            }
            "postgres" => {
                serde_yaml_ng::from_value::<PollSpec>(live.clone()).map_err(bad_live)?;
            }
            other => {
                return Err(DatasetProblem::BadLive(format!(
                    "type `{other}` has no live mode (csv, json and postgres do)"
                )))
            }
        }
    }
    let mut spec: SourceSpec = serde_yaml_ng::from_value(value).map_err(|e| DatasetProblem::Spec(e.to_string()))?;
    let batch_rows = spec.batch_rows();
    if !(1..=BATCH_ROWS_MAX).contains(&batch_rows) {
        return Err(DatasetProblem::Limit(format!("batch_rows {batch_rows} is outside 1..={BATCH_ROWS_MAX}")));
    }
    let resolve = |path: &mut PathBuf| -> Result<(), DatasetProblem> {
        if path.is_relative() {
            *path = base_dir.join(&*path);
        }
        if !path.is_file() {
            return Err(DatasetProblem::MissingFile(path.clone()));
        }
        Ok(())
    };
    let check_follow = |live: &Option<FollowSpec>| -> Result<(), DatasetProblem> {
        if let Some(live) = live {
            if !(POLL_MS_MIN..=POLL_MS_MAX).contains(&live.poll_ms) {
                return Err(DatasetProblem::BadLive(format!(
                    "poll_ms {} is outside {POLL_MS_MIN}..={POLL_MS_MAX}",
                    live.poll_ms
                )));
            }
        }
        Ok(())
    };
    let check_schema = |schema: &Option<Vec<ColumnSpec>>| -> Result<(), DatasetProblem> {
        if let Some(columns) = schema {
            schema_from_columns(columns).map_err(DatasetProblem::BadSchema)?;
        }
        Ok(())
    };
    match &mut spec {
        SourceSpec::Csv(s) => {
            resolve(&mut s.path)?;
            check_follow(&s.live)?;
            check_schema(&s.schema)?;
            check_dialect(s)?;
        }
        SourceSpec::Json(s) => {
            resolve(&mut s.path)?;
            check_follow(&s.live)?;
            check_schema(&s.schema)?;
        }
        SourceSpec::Parquet(s) => {
            resolve(&mut s.path)?;
            if s.columns.as_ref().is_some_and(Vec::is_empty) {
                return Err(DatasetProblem::Spec("`columns` is empty".into()));
            }
        }
        SourceSpec::Arrow(s) => resolve(&mut s.path)?,
        SourceSpec::Postgres(s) => {
            s.url.parse::<postgres::Config>().map_err(|e| DatasetProblem::BadUrl(e.to_string()))?;
            if !(s.url.starts_with("postgres://") || s.url.starts_with("postgresql://")) {
                return Err(DatasetProblem::BadUrl("must start with postgres:// or postgresql://".into()));
            }
            if s.query.trim().is_empty() {
                return Err(DatasetProblem::Spec("`query` is empty".into()));
            }
            if let Some(live) = &s.live {
                if !(POLL_MS_MIN..=POLL_MS_MAX).contains(&live.interval_ms) {
                    return Err(DatasetProblem::BadLive(format!(
                        "interval_ms {} is outside {POLL_MS_MIN}..={POLL_MS_MAX}",
                        live.interval_ms
                    )));
                }
                if live.watermark.trim().is_empty() {
                    return Err(DatasetProblem::BadLive("`watermark` is empty".into()));
                }
                if !s.query.contains("$1") {
                    return Err(DatasetProblem::BadLive("the query must use $1 for the watermark value".into()));
                }
            }
        }
        SourceSpec::Odbc(s) => {
            if !cfg!(feature = "odbc") {
                return Err(DatasetProblem::OdbcNotBuilt);
            }
            if s.connection_string.trim().is_empty() {
                return Err(DatasetProblem::BadUrl("`connection_string` is empty".into()));
            }
            if s.query.trim().is_empty() {
                return Err(DatasetProblem::Spec("`query` is empty".into()));
            }
        }
    }
    Ok(spec)
}
