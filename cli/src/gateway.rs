//! `volley gateway`: runs the engine until Ctrl-C or SIGTERM; SIGHUP reloads
//! the TLS certificate and key.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use volley_engine::{GatewayConfig, StartError, StartOptions};

use crate::fdlimit::Plan;

/// Run the gateway: connectors dial in on /ws/connect, browsers on
/// /stream/{session}; Arrow IPC frames are forwarded from connectors to the
/// browsers subscribed to them, unchanged.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway configuration file (YAML): listen address, secrets, limits.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Address to listen on; overrides the config file.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Number of worker threads (one io_uring runtime per core); default:
    /// the number of available cores. Overrides the config file.
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
    /// Start without `tableros_secret_key`: a fresh 32-byte secret from the
    /// operating system's random source is used, so no outside token
    /// verifies. Development only; logs a loud warning.
    #[arg(long)]
    pub insecure_dev: bool,
    /// Do not record metrics on the hot path (`volley bench` compares on/off).
    #[arg(long, hide = true)]
    pub metrics_disabled: bool,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    // Messages name the file by the path that was looked at, wherever the
    // command ran.
    let config_path = std::path::absolute(&args.config).unwrap_or_else(|_| args.config.clone());
    let mut config = GatewayConfig::from_file(&config_path)?;
    if let Some(listen) = args.listen {
        config.listen = Some(listen.to_string());
    }
    if let Some(workers) = args.workers {
        config.workers = Some(workers.get());
    }
    // One descriptor per connection, plus the reserve (fdlimit.rs says the rule).
    let wanted = u64::try_from(config.limits.connections_max)
        .unwrap_or(u64::MAX)
        .saturating_add(crate::fdlimit::DESCRIPTORS_RESERVED);
    let nofile = crate::fdlimit::raise_nofile(wanted);
    let configured = connections_max_is_set(&config_path);
    match crate::fdlimit::gateway_plan(nofile, config.limits.connections_max, configured) {
        Plan::Fits => {}
        Plan::Cap { connections_max, message } => {
            log::info!("{message}");
            config.limits.connections_max = connections_max;
        }
        Plan::Warn(message) => log::warn!("{message}"),
    }
    let shutdown = crate::signals::shutdown_flag()?;
    let options = StartOptions { insecure_dev: args.insecure_dev, metrics_disabled: args.metrics_disabled };
    let gateway = match volley_engine::start(config, options) {
        Ok(gateway) => gateway,
        Err(StartError::Bind { addr, source }) => bail!("{}", bind_failure(addr, &source, &config_path)),
        Err(other) => return Err(anyhow::Error::new(other).context("starting the gateway")),
    };
    let scheme = if gateway.shared().tls.is_some() { "https" } else { "http" };
    println!("volley gateway listening on {scheme}://{}", gateway.local_addr());
    let reload = crate::signals::reload_flag()?;
    while !crate::signals::wait_for(&shutdown, &reload) {
        match gateway.reload_tls() {
            Ok(true) => log::info!("SIGHUP: TLS certificate and key reloaded; new connections use them"),
            Ok(false) => log::info!("SIGHUP: nothing to reload (no tls: section)"),
            Err(e) => log::error!("SIGHUP: TLS reload failed, still serving the previous certificate: {e}"),
        }
    }
    log::info!("shutting down");
    gateway.shutdown();
    Ok(())
}

/// One line for a port the gateway cannot listen on: the address, the OS's
/// reason, and how to choose another.
fn bind_failure(addr: SocketAddr, source: &std::io::Error, config_path: &std::path::Path) -> String {
    let why = match source.kind() {
        std::io::ErrorKind::AddrInUse => "; another process holds that port: stop it, or",
        std::io::ErrorKind::PermissionDenied => "; ports below 1024 need root or CAP_NET_BIND_SERVICE:",
        _ => ";",
    };
    format!(
        "cannot listen on {addr}: {source}{why} choose another address with --listen ADDR:PORT or `listen:` in {}",
        config_path.display()
    )
}

/// Whether the config file sets `limits.connections_max` itself (the
/// open-file rule treats the default as a ceiling, a set value as a need).
/// The file has loaded already; anything unreadable here counts as set.
fn connections_max_is_set(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return true };
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) {
        Ok(value) => value.get("limits").is_some_and(|limits| limits.get("connections_max").is_some()),
        Err(_) => true,
    }
}
