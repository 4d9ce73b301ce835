//! The connector's YAML configuration: gateway, tenant, performance limits,
//! logging and the dataset catalogue.
//!
//! The file is seed-compatible (`gateway.uri` — one URI, or a list of the
//! gateways of a cluster —, `tenant.id`,
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
//! Every limit is a named constant, with its unit and reason (in `limits`).
//!
//! One file per concern: `limits` (those constants), `settings` ([`Config`]
//! and its gateway, tenant, performance and logging sections), `datasets`
//! ([`SourceSpec`], one spec per source type, the column types of a
//! `schema:` override), `error` ([`ConfigError`], [`DatasetProblem`] and
//! their messages), `raw` (the file's layout as serde reads it), `validate`
//! (each setting and dataset checked, paths resolved) and `load` (reading the
//! file, [`Config::load`] and [`Config::from_yaml`]). Every public item is
//! re-exported here: callers name `config::X` whichever file defines it.

mod datasets;
mod error;
mod limits;
mod load;
mod raw;
mod settings;
mod validate;

pub use datasets::{
    parse_column_type, schema_from_columns, ArrowSpec, ColumnSpec, CsvChar, CsvSpec, DecimalMark, FollowSpec, JsonSpec,
    OdbcSpec, ParquetSpec, PollSpec, PostgresSpec, SourceSpec, TextEncoding, SOURCE_TYPES,
};
pub use error::{ConfigError, DatasetProblem, ODBC_NOT_BUILT};
pub use limits::{
    BATCH_ROWS_DEFAULT, BATCH_ROWS_MAX, CHUNK_BYTES_CEILING, CHUNK_BYTES_FLOOR, CHUNK_BYTES_MAX_DEFAULT,
    CHUNK_BYTES_MIN_DEFAULT, COMPRESSION_CODECS_DEFAULT, CONFIG_BYTES_MAX, DATASETS_MAX, DATASET_NAME_BYTES_MAX,
    FOLLOW_POLL_MS_DEFAULT, GATEWAY_URIS_MAX, INFER_SCHEMA_ROWS, PARALLEL_CONNECTIONS_DEFAULT,
    PARALLEL_CONNECTIONS_MAX, POLL_MS_MAX, POLL_MS_MIN, RECONNECT_DELAY_SECONDS_DEFAULT, RECONNECT_DELAY_SECONDS_MAX,
};
pub use settings::{Compression, Config, GatewayConfig, LogLevel, LoggingConfig, PerformanceConfig, TenantConfig};
pub use validate::validate_dataset_name;
