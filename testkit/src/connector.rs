//! The real connector, run in the test's process, and its config.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::wait_until;

/// Connector config text (JSON is YAML): gateway at `addr`, `tenant` with
/// `token`, `performance` and `datasets` as given.
pub fn connector_yaml(addr: SocketAddr, tenant: &str, token: &str, performance: Value, datasets: Value) -> String {
    connector_config(addr, tenant, token, performance, datasets).to_string()
}

/// [`connector_yaml`] as a JSON value, for tests that add keys.
pub fn connector_config(addr: SocketAddr, tenant: &str, token: &str, performance: Value, datasets: Value) -> Value {
    json!({
        "gateway": {"uri": format!("ws://{addr}/ws/connect")},
        "tenant": {"id": tenant, "token": token},
        "performance": performance,
        "datasets": datasets,
    })
}

/// [`connector_config`] with `gateway.uri` a list: every gateway of
/// `addrs`, in order (`ws://ADDRESS/ws/connect`).
pub fn connector_config_listing(
    addrs: &[SocketAddr],
    tenant: &str,
    token: &str,
    performance: Value,
    datasets: Value,
) -> Value {
    let uris: Vec<String> = addrs.iter().map(|addr| format!("ws://{addr}/ws/connect")).collect();
    let first = addrs.first().copied().unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)));
    let mut config = connector_config(first, tenant, token, performance, datasets);
    config["gateway"]["uri"] = json!(uris);
    config
}

/// The real connector running in this process (`service::run_config` on a thread).
pub struct InProcessConnector {
    /// `run_config`'s shutdown flag.
    pub shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InProcessConnector {
    /// Starts the connector of config text `yaml` (relative paths from `base_dir`).
    pub fn start(yaml: &str, base_dir: &Path) -> InProcessConnector {
        let config = volley_connector::Config::from_yaml(yaml, base_dir).expect("connector config");
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("test-connector".into())
            .spawn(move || volley_connector::service::run_config(config, flag))
            .expect("spawn connector");
        InProcessConnector { shutdown, thread: Some(thread) }
    }

    /// Sets the shutdown flag and waits (at most `limit`) for `run_config` to
    /// return; returns how long it took.
    pub fn stop_within(mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        self.shutdown.store(true, Ordering::Release);
        let thread = self.thread.take().expect("thread");
        assert!(
            wait_until(limit, || thread.is_finished()),
            "run_config did not return within {limit:?} of the shutdown flag"
        );
        let _ = thread.join();
        started.elapsed()
    }
}

impl Drop for InProcessConnector {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // Do not hang a failing test forever on a stuck connector.
            if wait_until(Duration::from_secs(10), || thread.is_finished()) {
                let _ = thread.join();
            }
        }
    }
}
