//! `volley demo`: the whole picture on one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use volley_engine::config::{CompressionConfig, Secrets};
use volley_engine::{GatewayConfig, StartOptions};
use volley_protocol::token::{self, ConnectorClaims, SessionClaims};
use volley_protocol::Codec;

/// Run a local demo: a gateway, a connector serving sample datasets and the
/// dashboard page, all on this machine; opens the page in your browser.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// HTTP/WebSocket port of the demo gateway.
    #[arg(long, value_name = "PORT", default_value_t = 8081)]
    pub port: u16,
    /// Do not open the dashboard in a browser; only print its URL.
    #[arg(long)]
    pub no_open: bool,
    /// Serve one more dataset from a local file (CSV, NDJSON, Parquet or
    /// Arrow, chosen by extension); repeatable.
    #[arg(long = "extra-dataset", value_name = "NAME=PATH", value_parser = parse_extra_dataset)]
    pub extra_datasets: Vec<ExtraDataset>,
    /// Let the gateway compress IPC bodies with these codecs, most preferred
    /// first (its `compression.codecs`), for clients that accept them:
    /// e.g. `zstd,lz4`. Default: no compression.
    #[arg(long, value_name = "CODECS", value_delimiter = ',', value_parser = parse_codec)]
    pub compression: Vec<Codec>,
    /// IO driver of the gateway's workers: auto (io_uring where it is
    /// allowed, else epoll with a warning), io_uring or epoll.
    #[arg(long, value_name = "auto|io_uring|epoll", default_value = "auto")]
    pub runtime: volley_engine::RuntimeChoice,
}

fn parse_codec(text: &str) -> Result<Codec, String> {
    Codec::from_name(text).ok_or_else(|| {
        let known: Vec<&str> = Codec::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown codec {text:?} (known: {})", known.join(", "))
    })
}

/// One `--extra-dataset NAME=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDataset {
    pub name: String,
    pub path: PathBuf,
}

fn parse_extra_dataset(text: &str) -> Result<ExtraDataset, String> {
    let Some((name, path)) = text.split_once('=') else {
        return Err(format!("expected NAME=PATH, got {text:?}"));
    };
    if name.is_empty() || path.is_empty() {
        return Err(format!("expected NAME=PATH with both parts non-empty, got {text:?}"));
    }
    Ok(ExtraDataset { name: name.to_owned(), path: PathBuf::from(path) })
}

/// Tenant of the demo.
pub const DEMO_TENANT: &str = "demo";
/// Rows of the bundled `ventas` table.
pub const VENTAS_ROWS: usize = 5000;
/// Rows the ticker appends each second.
pub const TICKER_ROWS_PER_BATCH: usize = 20;
/// Lifetime of the printed session token.
pub const DEMO_SESSION_TTL_SECONDS: i64 = 24 * 3600;
/// How long the demo waits for its connector to register.
pub const CONNECTOR_READY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    if let Err(e) = std::net::TcpListener::bind(addr) {
        anyhow::bail!("port {} is taken ({e}); choose another with --port, e.g. `volley demo --port 8090`", args.port);
    }
    let shutdown = crate::signals::shutdown_flag()?;
    let static_dir = ensure_web_build();
    let data_dir = std::env::temp_dir().join(format!("volley-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let ventas = data_dir.join("ventas.csv");
    write_ventas(&ventas)?;
    let ticker = data_dir.join("ticker.csv");
    write_ticker_header(&ticker)?;

    let secret = crate::token::random_jti()?;
    let config = GatewayConfig {
        listen: Some(addr.to_string()),
        tableros_secret_key: Some(Secrets::One(secret.clone())),
        static_dir: static_dir.clone(),
        compression: CompressionConfig { codecs: args.compression.clone(), ..CompressionConfig::default() },
        runtime: args.runtime,
        ..GatewayConfig::default()
    };
    let gateway = volley_engine::start(config, StartOptions::default()).context("starting the demo gateway")?;

    let now = volley_engine::unix_now();
    let connector_token = token::sign(
        &ConnectorClaims {
            cuenta_id: DEMO_TENANT.into(),
            role: token::ROLE_CONNECTOR.into(),
            jti: crate::token::random_jti()?,
            iat: now,
            exp: now + 365 * 24 * 3600,
            nbf: None,
        },
        secret.as_bytes(),
    )?;
    let mut datasets = serde_json::Map::new();
    datasets.insert("ventas".into(), json!({"type": "csv", "path": ventas}));
    datasets.insert("ticker".into(), json!({"type": "csv", "path": ticker, "live": {"follow": true, "poll_ms": 100}}));
    for extra in &args.extra_datasets {
        let path = std::fs::canonicalize(&extra.path)
            .with_context(|| format!("dataset {}: {}", extra.name, extra.path.display()))?;
        let kind = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "csv" => "csv",
            "json" | "ndjson" | "jsonl" => "json",
            "parquet" => "parquet",
            _ => "arrow",
        };
        datasets.insert(extra.name.clone(), json!({"type": kind, "path": path}));
    }
    let connector_yaml = json!({
        "gateway": {"uri": format!("ws://{addr}/ws/connect")},
        "tenant": {"id": DEMO_TENANT, "token": connector_token},
        "performance": {"parallel_connections": 2, "reconnect_delay": 0.2},
        "datasets": datasets,
    })
    .to_string();
    let connector_config = volley_connector::Config::from_yaml(&connector_yaml, &data_dir)?;
    let connector = {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("volley-demo-connector".into())
            .spawn(move || volley_connector::service::run_config(connector_config, shutdown))?
    };
    let ticker_thread = {
        let shutdown = shutdown.clone();
        let ticker = ticker.clone();
        std::thread::Builder::new().name("volley-demo-ticker".into()).spawn(move || append_ticks(&ticker, &shutdown))?
    };
    let deadline = Instant::now() + CONNECTOR_READY_TIMEOUT;
    while gateway.shared().registry.connectors_online.load(Ordering::Acquire) == 0 {
        if Instant::now() > deadline || shutdown.load(Ordering::Acquire) {
            anyhow::bail!("the demo connector did not register within {CONNECTOR_READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let session = token::sign(
        &SessionClaims {
            sub: "demo-user".into(),
            cuenta_id: DEMO_TENANT.into(),
            edge_id: String::new(),
            permisos: vec!["*".into()],
            jti: crate::token::random_jti()?,
            iat: now,
            exp: now + DEMO_SESSION_TTL_SECONDS,
            nbf: None,
            role: None,
        },
        secret.as_bytes(),
    )?;
    let url = format!("http://{addr}/?session={session}");
    println!("Volley demo is running.");
    println!("  dashboard: {url}");
    println!("  latency:   http://{addr}/latency");
    println!("  health:    http://{addr}/health");
    println!("dataset ventas: {VENTAS_ROWS} rows");
    println!("dataset ticker: live, {TICKER_ROWS_PER_BATCH} rows a second");
    for extra in &args.extra_datasets {
        println!("dataset {}: {}", extra.name, extra.path.display());
    }
    if !args.compression.is_empty() {
        let codecs: Vec<&str> = args.compression.iter().map(|c| c.as_str()).collect();
        println!("compression: {}", codecs.join(","));
    }
    println!("secret: {secret}");
    println!("tenant: {DEMO_TENANT}");
    if static_dir.is_none() {
        println!("note: the dashboard is not built (npm was not found); the URL shows a short notice instead.");
    }
    println!("Press Ctrl-C to stop.");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if !args.no_open {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    crate::signals::wait(&shutdown);
    println!("stopping…");
    let _ = connector.join();
    let _ = ticker_thread.join();
    gateway.shutdown();
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Finds `web/dist`, building it with npm when it is missing. `None` when it
/// cannot be had (no npm): the gateway then serves a notice at `/`.
fn ensure_web_build() -> Option<PathBuf> {
    let candidates =
        std::env::var_os("VOLLEY_WEB_DIST").map(PathBuf::from).into_iter().chain(crate::dashboard::candidates());
    for dir in candidates {
        if dir.join(crate::dashboard::INDEX_FILE).is_file() {
            return Some(dir);
        }
    }
    let web = [PathBuf::from("web"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")]
        .into_iter()
        .find(|dir| dir.join("package.json").is_file())?;
    println!("building the dashboard (npm ci && npm run build in {}) …", web.display());
    let npm = |args: &[&str]| {
        std::process::Command::new("npm").args(args).current_dir(&web).status().map(|s| s.success()).unwrap_or(false)
    };
    if !web.join("node_modules").is_dir() && !npm(&["ci", "--no-audit", "--no-fund"]) {
        return None;
    }
    if !npm(&["run", "build"]) {
        return None;
    }
    let dist = web.join("dist");
    dist.join("index.html").is_file().then_some(dist)
}

const REGIONS: [&str; 5] = ["Norte", "Sur", "Este", "Oeste", "Centro"];
const PRODUCTS: [(&str, f64); 6] =
    [("cafe", 4.5), ("te", 3.2), ("pan", 1.8), ("queso", 7.9), ("vino", 12.5), ("aceite", 9.4)];

/// The sales table: deterministic, several types (timestamp, text, int, float, bool).
fn write_ventas(path: &Path) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut out = String::from("fecha,region,producto,cantidad,precio,total,pagado\n");
    let start: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    for i in 0..VENTAS_ROWS {
        let ts = start + i64::try_from(i).unwrap_or(0) * 1800;
        let region = REGIONS[rng.usize(..REGIONS.len())];
        let (product, base) = PRODUCTS[rng.usize(..PRODUCTS.len())];
        let quantity = rng.u32(1..40);
        let price = base * (0.9 + rng.f64() * 0.2);
        let total = price * f64::from(quantity);
        let paid = rng.u8(..10) < 8;
        out.push_str(&format!("{},{region},{product},{quantity},{price:.2},{total:.2},{paid}\n", iso8601(ts)));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

fn write_ticker_header(path: &Path) -> anyhow::Result<()> {
    let mut out = String::from("ts,symbol,price,volume\n");
    let now = volley_engine::unix_now();
    for i in 0..TICKER_ROWS_PER_BATCH {
        out.push_str(&format!("{},VOL,{:.2},{}\n", iso8601(now - 1), 100.0 + i as f64 * 0.01, 100 + i));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Appends a batch of ticks every second until shutdown.
fn append_ticks(path: &Path, shutdown: &AtomicBool) {
    use std::io::Write as _;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut price = 100.0_f64;
    while !shutdown.load(Ordering::Acquire) {
        let now = volley_engine::unix_now();
        let mut batch = String::new();
        for _ in 0..TICKER_ROWS_PER_BATCH {
            price = (price + (rng.f64() - 0.5) * 0.8).max(1.0);
            batch.push_str(&format!("{},VOL,{price:.2},{}\n", iso8601(now), rng.u32(1..1000)));
        }
        match std::fs::OpenOptions::new().append(true).open(path) {
            Ok(mut file) => {
                let _ = file.write_all(batch.as_bytes());
            }
            Err(e) => log::warn!("ticker: {e}"),
        }
        for _ in 0..20 {
            if shutdown.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC), which CSV inference reads as a timestamp.
fn iso8601(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm, public domain description).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601(1_767_225_600), "2026-01-01T00:00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00");
    }

    #[test]
    fn extra_dataset_splits_at_the_first_equals_sign() {
        let parsed = parse_extra_dataset("sales=data/a=b.csv").unwrap();
        assert_eq!(parsed, ExtraDataset { name: "sales".into(), path: PathBuf::from("data/a=b.csv") });
        for bad in ["sales", "=x.csv", "sales=", ""] {
            assert!(parse_extra_dataset(bad).is_err(), "{bad:?}");
        }
    }
}
