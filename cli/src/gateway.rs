//! `volley gateway`: runs the engine until Ctrl-C or SIGTERM, then drains
//! (`Gateway::drain`: connectors asked to move, browsers closed with 1012
//! once their queries ended, within `shutdown_grace_seconds`) and exits 0;
//! SIGHUP reloads the TLS certificate and key.
//!
//! Without `--config` it starts as the seed's gateway did: the defaults of
//! [`GatewayConfig`] (port 8081, `timeouts` 60 s per query and 10 s to
//! connect) and the secret from `VOLLEY_SECRET` or `TABLEROS_SECRET_KEY`.
//! Without `static_dir` the dashboard is looked for beside the binary's
//! checkout ([`crate::dashboard`]), so a gateway started elsewhere serves it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use volley_engine::config::Secrets;
use volley_engine::RuntimeChoice;
use volley_engine::{GatewayConfig, StartError, StartOptions};

use crate::fdlimit::Plan;

/// Environment variables holding the session-token secret when the config
/// file has no `tableros_secret_key`, in order of precedence: Volley's name
/// (the one `volley token` reads), then the seed's.
pub const SECRET_VARIABLES: [&str; 2] = ["VOLLEY_SECRET", "TABLEROS_SECRET_KEY"];

/// Why the gateway does not start without a secret, and what to do.
pub const NO_SECRET: &str = "no secret for session tokens: set VOLLEY_SECRET (or TABLEROS_SECRET_KEY, the seed's \
    name) in the environment, or tableros_secret_key in the --config file; --insecure-dev starts without one, for \
    development only";

/// Run the gateway: connectors dial in on /ws/connect, browsers on
/// /stream/{session}; Arrow IPC frames are forwarded from connectors to the
/// browsers subscribed to them, unchanged.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway configuration file (YAML): listen address, secrets, limits.
    /// Without it: port 8081, every default, and the secret from
    /// VOLLEY_SECRET or TABLEROS_SECRET_KEY.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; overrides the config file.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Number of worker threads (one runtime per core); default:
    /// the number of available cores. Overrides the config file.
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
    /// IO driver of the workers: auto (io_uring where it is allowed, else
    /// epoll with a warning), io_uring (refuse to start without it) or
    /// epoll. Overrides `runtime:` in the config file; default auto.
    #[arg(long, value_name = "auto|io_uring|epoll")]
    pub runtime: Option<RuntimeChoice>,
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
    let config_path = args.config.as_ref().map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    let mut config = load(&args, |name| std::env::var_os(name))?;
    if config.static_dir.is_none() {
        config.static_dir = crate::dashboard::find();
        if config.static_dir.is_none() {
            let looked: Vec<String> = crate::dashboard::candidates().iter().map(|d| d.display().to_string()).collect();
            log::warn!(
                "the dashboard is not built (no index.html in {}): `/` shows a notice; run `npm ci && npm run build` \
                 in web/, or set static_dir in the config",
                looked.join(", ")
            );
        }
    }
    if let Some(listen) = args.listen {
        config.listen = Some(listen.to_string());
    }
    if let Some(workers) = args.workers {
        config.workers = Some(workers.get());
    }
    if let Some(runtime) = args.runtime {
        config.runtime = runtime;
    }
    // One descriptor per connection, plus the reserve (fdlimit.rs says the rule).
    let wanted = u64::try_from(config.limits.connections_max)
        .unwrap_or(u64::MAX)
        .saturating_add(crate::fdlimit::DESCRIPTORS_RESERVED);
    let nofile = crate::fdlimit::raise_nofile(wanted);
    let configured = config_path.as_deref().is_some_and(connections_max_is_set);
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
        Err(StartError::Bind { addr, source }) => bail!("{}", bind_failure(addr, &source, config_path.as_deref())),
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
    log::info!("shutting down: draining first (shutdown_grace_seconds at most)");
    gateway.drain();
    log::info!("stopped");
    Ok(())
}

/// One line for a port the gateway cannot listen on: the address, the OS's
/// reason, and how to choose another.
fn bind_failure(addr: SocketAddr, source: &std::io::Error, config_path: Option<&std::path::Path>) -> String {
    let why = match source.kind() {
        std::io::ErrorKind::AddrInUse => "; another process holds that port: stop it, or",
        std::io::ErrorKind::PermissionDenied => "; ports below 1024 need root or CAP_NET_BIND_SERVICE:",
        _ => ";",
    };
    let file = config_path.map_or_else(|| "a --config file".to_owned(), |path| path.display().to_string());
    format!(
        "cannot listen on {addr}: {source}{why} choose another address with --listen ADDR:PORT or `listen:` in {file}"
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

/// The configuration to start with: the `--config` file, or the defaults
/// without one; when it names no secret, the first of [`SECRET_VARIABLES`]
/// that `env` has. Refuses ([`NO_SECRET`]) when there is none, unless
/// `--insecure-dev`.
fn load(args: &GatewayArgs, env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<GatewayConfig> {
    let mut config = match &args.config {
        Some(path) => GatewayConfig::from_file(&std::path::absolute(path).unwrap_or_else(|_| path.clone()))?,
        None => GatewayConfig::default(),
    };
    let from_env = SECRET_VARIABLES.iter().find_map(|name| Some((*name, env(name)?)));
    match (&config.tableros_secret_key, from_env) {
        (Some(_), Some((name, _))) => {
            log::info!("{name} is set, but the config's tableros_secret_key is the one used");
        }
        (Some(_), None) => {}
        (None, Some((name, value))) => {
            let Ok(secret) = value.into_string() else { bail!("{name} is not valid UTF-8") };
            if secret.is_empty() {
                bail!("{name} is set but empty; {NO_SECRET}");
            }
            log::info!("session tokens are verified with the secret in {name}");
            config.tableros_secret_key = Some(Secrets::One(secret));
        }
        (None, None) if args.insecure_dev => {}
        (None, None) => bail!(NO_SECRET),
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> GatewayArgs {
        GatewayArgs { config, listen: None, workers: None, runtime: None, insecure_dev: false, metrics_disabled: false }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
    }

    /// The seed's gateway: port 8081, queries up to 60 s, 10 s to connect.
    #[test]
    fn without_a_config_file_the_seed_defaults_apply() {
        let config = load(&args(None), env(&[("VOLLEY_SECRET", "s3")])).expect("starts");
        assert_eq!(config.listen_addr().expect("addr"), "0.0.0.0:8081".parse().expect("addr"));
        assert_eq!((config.timeouts.query_seconds, config.timeouts.connect_seconds), (60, 10));
        assert_eq!(config.secrets(), [b"s3".to_vec()]);
    }

    #[test]
    fn the_secret_comes_from_the_file_then_volley_secret_then_tableros_secret_key() {
        let both = [("VOLLEY_SECRET", "volley"), ("TABLEROS_SECRET_KEY", "tableros")];
        assert_eq!(load(&args(None), env(&both)).expect("starts").secrets(), [b"volley".to_vec()]);
        let seed = [("TABLEROS_SECRET_KEY", "tableros")];
        assert_eq!(load(&args(None), env(&seed)).expect("starts").secrets(), [b"tableros".to_vec()]);

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("gateway.yaml");
        std::fs::write(&file, "tableros_secret_key: from-file\n").expect("write");
        assert_eq!(load(&args(Some(file)), env(&both)).expect("starts").secrets(), [b"from-file".to_vec()]);
    }

    #[test]
    fn without_any_secret_it_refuses_naming_both_variables_unless_insecure_dev() {
        let message = load(&args(None), env(&[])).expect_err("refused").to_string();
        assert_eq!(message, NO_SECRET);
        for needle in SECRET_VARIABLES.iter().chain(&["tableros_secret_key", "--insecure-dev"]) {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        let empty = load(&args(None), env(&[("VOLLEY_SECRET", "")])).expect_err("refused").to_string();
        assert!(empty.starts_with("VOLLEY_SECRET is set but empty"), "{empty}");
        let insecure = GatewayArgs { insecure_dev: true, ..args(None) };
        assert!(load(&insecure, env(&[])).expect("starts").secrets().is_empty());
    }
}
