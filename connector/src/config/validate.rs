//! Validation: each setting checked against its documented range, each
//! dataset's name, type, live mode, schema, dialect, URL and files checked,
//! its relative paths resolved against the config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use volley_protocol::Codec;

use super::datasets::{
    schema_from_columns, ColumnSpec, CsvSpec, DecimalMark, FollowSpec, PollSpec, SourceSpec, SOURCE_TYPES,
};
use super::error::{ConfigError, DatasetProblem};
use super::limits::{
    BATCH_ROWS_MAX, CHUNK_BYTES_CEILING, CHUNK_BYTES_FLOOR, CHUNK_BYTES_MAX_DEFAULT, CHUNK_BYTES_MIN_DEFAULT,
    COMPRESSION_CODECS_DEFAULT, DATASET_NAME_BYTES_MAX, GATEWAY_URIS_MAX, PARALLEL_CONNECTIONS_DEFAULT,
    PARALLEL_CONNECTIONS_MAX, POLL_MS_MAX, POLL_MS_MIN, RECONNECT_DELAY_SECONDS_DEFAULT, RECONNECT_DELAY_SECONDS_MAX,
};
use super::raw::RawPerformance;
use super::settings::PerformanceConfig;

/// `gateway.uri`: one URI (the seed's form), or a list of at most
/// [`GATEWAY_URIS_MAX`] different ones; each must be a ws:// or wss:// URI.
pub(super) fn parse_gateway_uris(value: &serde_yaml_ng::Value) -> Result<Vec<String>, ConfigError> {
    use serde_yaml_ng::Value;
    let setting = |reason: String| ConfigError::Setting { key: "gateway.uri", reason };
    let items = match value {
        Value::String(uri) => {
            validate_gateway_uri(uri)?;
            return Ok(vec![uri.clone()]);
        }
        Value::Sequence(items) => items,
        other => {
            return Err(setting(format!(
                "{} is neither a URI nor a list of URIs: write `uri: ws://gateway:8081/ws/connect`, or list the \
                 cluster's gateways, `uri: [ws://gw-1:8081/ws/connect, ws://gw-2:8081/ws/connect]`",
                yaml_kind(other)
            )))
        }
    };
    if items.is_empty() {
        return Err(setting(
            "is an empty list: list at least one gateway, e.g. `uri: [ws://gw-1:8081/ws/connect]`".to_owned(),
        ));
    }
    if items.len() > GATEWAY_URIS_MAX {
        return Err(setting(format!(
            "lists {} gateways, more than {GATEWAY_URIS_MAX}: list the cluster's nodes (or one name that \
             resolves to their addresses)",
            items.len()
        )));
    }
    let count = items.len();
    let mut uris: Vec<String> = Vec::with_capacity(count);
    for (index, item) in items.iter().enumerate() {
        let entry = index + 1;
        let Some(uri) = item.as_str() else {
            return Err(ConfigError::GatewayUriEntry {
                entry,
                count,
                uri: format!("{item:?}"),
                reason: format!("{} is not a URI", yaml_kind(item)),
            });
        };
        if let Err(ConfigError::GatewayUri { reason, .. }) = validate_gateway_uri(uri) {
            return Err(ConfigError::GatewayUriEntry { entry, count, uri: uri.to_owned(), reason: reason.to_owned() });
        }
        if let Some(first) = uris.iter().position(|seen| seen == uri) {
            return Err(ConfigError::GatewayUriEntry {
                entry,
                count,
                uri: uri.to_owned(),
                reason: format!("it repeats entry {}: list each gateway once", first + 1),
            });
        }
        uris.push(uri.to_owned());
    }
    Ok(uris)
}

fn yaml_kind(value: &serde_yaml_ng::Value) -> &'static str {
    use serde_yaml_ng::Value;
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

pub(super) fn validate_gateway_uri(uri: &str) -> Result<(), ConfigError> {
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

pub(super) fn validate_performance(raw: &RawPerformance) -> Result<PerformanceConfig, ConfigError> {
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

pub(super) fn parse_dataset(
    name: &str,
    value: serde_yaml_ng::Value,
    base_dir: &Path,
) -> Result<SourceSpec, DatasetProblem> {
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
