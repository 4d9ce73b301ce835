//! A gateway started in the test's process on real sockets, and what the
//! tests read from it: the connectors it counts, its per-worker metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use volley_engine::config::Secrets;
use volley_engine::{Gateway, GatewayConfig, Shared, StartOptions};

use crate::tokens::SECRET;
use crate::wait_until;

/// How long [`start`] retries a gateway that does not start.
pub const START_RETRY: Duration = Duration::from_secs(5);

/// A test gateway config: `listen`, two workers, [`SECRET`]; connectors must
/// present a credential.
pub fn gateway_config(listen: SocketAddr) -> GatewayConfig {
    GatewayConfig {
        listen: Some(listen.to_string()),
        workers: Some(2),
        tableros_secret_key: Some(Secrets::One(SECRET.into())),
        ..GatewayConfig::default()
    }
}

/// The engine tests' config: a free port of 127.0.0.1, two workers,
/// [`SECRET`], and seed (level-1, credential-less) connectors allowed.
pub fn config() -> GatewayConfig {
    GatewayConfig { allow_unauthenticated_connectors: true, ..gateway_config(SocketAddr::from(([127, 0, 0, 1], 0))) }
}

/// Starts a gateway with `config`; for up to [`START_RETRY`] it retries one
/// that does not start (on a fixed port, a previous gateway may still be
/// releasing it).
pub fn start(config: GatewayConfig) -> Gateway {
    let deadline = Instant::now() + START_RETRY;
    loop {
        match volley_engine::start(config.clone(), StartOptions::default()) {
            Ok(gateway) => return gateway,
            Err(e) if Instant::now() < deadline => {
                eprintln!("gateway start retry: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("gateway does not start: {e}"),
        }
    }
}

/// A gateway on a free port of 127.0.0.1 with [`gateway_config`].
pub fn start_default_gateway() -> Gateway {
    start(gateway_config(SocketAddr::from(([127, 0, 0, 1], 0))))
}

/// Connectors the gateway counts online.
pub fn connectors_online(gateway: &Gateway) -> usize {
    gateway.shared().registry.connectors_online.load(Ordering::Acquire)
}

/// Waits (at most 5 s) until the gateway counts `n` connectors online; panics otherwise.
pub fn wait_connectors(gateway: &Gateway, n: usize) {
    assert!(
        wait_until(Duration::from_secs(5), || connectors_online(gateway) == n),
        "expected {n} connectors online, have {}",
        connectors_online(gateway)
    );
}

/// Samples `measure` of the gateway every millisecond until the returned flag
/// is set; the thread returns the largest value seen.
pub fn max_sampler(
    gateway: &Gateway,
    measure: impl Fn(&Shared) -> usize + Send + 'static,
) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let shared = gateway.shared().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut max = 0;
        while !flag.load(Ordering::Acquire) {
            max = max.max(measure(&shared));
            std::thread::sleep(Duration::from_millis(1));
        }
        max
    });
    (stop, thread)
}

/// Waits (at most 4 s) for the workers to publish metrics adding up to
/// `at_least_total` frames out; returns each worker's `frames_out`.
pub fn frames_out_per_worker(gateway: &Gateway, at_least_total: u64) -> Vec<u64> {
    let shared = gateway.shared().clone();
    let mut per = Vec::new();
    wait_until(Duration::from_secs(4), || {
        per = (0..shared.workers).map(|w| shared.metrics.worker(w).map(|m| m.frames_out).unwrap_or(0)).collect();
        per.iter().sum::<u64>() >= at_least_total
    });
    per
}
