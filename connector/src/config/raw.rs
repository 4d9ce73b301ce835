//! The file's layout as serde reads it, before validation: the top level,
//! `performance:`, `logging:`, and `datasets:` as an ordered list of entries.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::limits::DATASETS_MAX;
use super::settings::TenantConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) gateway: RawGateway,
    pub(super) tenant: TenantConfig,
    #[serde(default)]
    pub(super) performance: RawPerformance,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) datasets: RawDatasets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    /// One URI or a list of them (see `parse_gateway_uris` in `validate.rs`).
    pub(super) uri: serde_yaml_ng::Value,
    #[serde(default)]
    pub(super) ca_file: Option<std::path::PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerformance {
    pub(super) parallel_connections: Option<usize>,
    pub(super) max_chunk_size: Option<usize>,
    pub(super) min_chunk_size: Option<usize>,
    pub(super) reconnect_delay: Option<f64>,
    /// `none`, one codec, or a list of codecs (see `parse_compression` in
    /// `validate.rs`).
    pub(super) compression: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) level: Option<String>,
}

/// `datasets:` kept as an ordered list so duplicate keys are seen, not overwritten.
#[derive(Default)]
pub(super) struct RawDatasets(pub(super) Vec<(String, serde_yaml_ng::Value)>);

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
