//! Loading: reading the file (absolute path, size cap, its directory as the
//! base of relative paths) and turning its text into a validated [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::limits::{CONFIG_BYTES_MAX, DATASETS_MAX};
use super::raw::RawConfig;
use super::settings::{Config, GatewayConfig, LogLevel, LoggingConfig};
use super::validate::{parse_dataset, parse_gateway_uris, validate_performance};

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
        let uris = parse_gateway_uris(&raw.gateway.uri)?;
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
        let mut gateway = GatewayConfig { uris, ca_file: raw.gateway.ca_file };
        if let Some(ca_file) = &mut gateway.ca_file {
            *ca_file = base_dir.join(&*ca_file);
            crate::ca::load_ca_file(ca_file)
                .map_err(|reason| ConfigError::Setting { key: "gateway.ca_file", reason })?;
        }
        Ok(Config { gateway, tenant: raw.tenant, performance, logging, datasets })
    }
}
