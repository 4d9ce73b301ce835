//! The cluster's directory (issue 15, first part) with real processes: a
//! `redis-server` started on a free port and `volley gateway` processes with
//! a `cluster:` section (`lease_seconds: 2`), a scripted connector, and
//! `volley cluster status`. A registration shows as a lease with its epoch,
//! a restart takes the next epoch; a node paused past its lease (`kill
//! -STOP`) while the connector registered elsewhere finds out when it wakes,
//! closes its stale tunnel and leaves the newer registration alone; SIGTERM
//! takes the node's keys out of Redis; configuration mistakes and an
//! unreachable Redis are refused with what to do. Directory details (hash
//! tags, lookups, Redis restarts) are in engine/tests/cluster_directory.rs.
//!
//! `redis-server` must be installed (scripts/test.sh installs it); without
//! it these tests fail under CI=true and are skipped (loudly) elsewhere.
// The gateway (the engine) is Linux-only.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_testkit::fake_connector::{spawn_connector, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::files::{write_file, TempDir};
use volley_testkit::http::{http_body, http_get};
use volley_testkit::ipc::synthetic_frames;
use volley_testkit::process::VolleyProcess;
use volley_testkit::redis::{free_redis_port, RedisServer};
use volley_testkit::tokens::{connector_token_jti, SECRET, TENANT};
use volley_testkit::wait_until;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");
const PEER_SECRET: &str = "a-peer-secret-of-at-least-32-bytes-for-tests";
const LEASE_SECONDS: u64 = 2;

/// A gateway config for node `node` on `redis`, one worker.
fn node_yaml(node: &str, redis: &RedisServer, lease_seconds: u64) -> Value {
    json!({
        "listen": "127.0.0.1:0",
        "workers": 1,
        "pin_workers": false,
        "tableros_secret_key": SECRET,
        "redis": {"url": redis.url()},
        "cluster": {
            "node_id": node,
            "peer_listen": "127.0.0.1:0",
            "advertise": format!("{node}.test:7071"),
            "peer_secret": PEER_SECRET,
            "lease_seconds": lease_seconds,
        },
    })
}

/// `volley gateway` as node `node`; its process and address.
fn gateway(dir: &TempDir, node: &str, redis: &RedisServer, lease_seconds: u64) -> (VolleyProcess, SocketAddr) {
    let yaml = node_yaml(node, redis, lease_seconds).to_string();
    let config = write_file(dir, &format!("{node}.yaml"), yaml.as_bytes());
    let args = ["gateway", "--config", config.to_str().expect("utf-8")];
    let (process, url) = VolleyProcess::spawn(VOLLEY, &args).listening();
    let addr = url.strip_prefix("http://").and_then(|a| a.parse().ok()).expect("http://ADDRESS:PORT");
    (process, addr)
}

/// A scripted level-2 connector of [`TENANT`] whose credential's `jti` is `jti`.
fn connector(addr: SocketAddr, jti: &str) -> ConnectorHandle {
    let mut spec = ConnectorSpec::level2(vec![DatasetSpec::query("table", synthetic_frames(2, 256))]);
    spec.token = Some(connector_token_jti(TENANT, SECRET, jti));
    spawn_connector(addr, spec)
}

/// The lease of `jti` in Redis: (node, epoch).
fn lease(redis: &RedisServer, jti: &str) -> Option<(String, u64)> {
    let key = volley_engine::ConnectorKeys::new(TENANT, jti).lease;
    let (node, epoch): (Option<String>, Option<u64>) = redis.command(&["HMGET", &key, "node", "epoch"]);
    node.zip(epoch)
}

fn wait_lease(redis: &RedisServer, jti: &str, expected: Option<(&str, u64)>) -> bool {
    let expected = expected.map(|(node, epoch)| (node.to_owned(), epoch));
    wait_until(Duration::from_secs(5), || lease(redis, jti) == expected)
}

/// `volley cluster status --redis URL`: exit code and everything it printed.
fn status(url: &str) -> (Option<i32>, String) {
    let output = Command::new(VOLLEY).args(["cluster", "status", "--redis", url]).output().expect("volley runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// The row of `status`'s output whose cells start with `first` (cells are two or more spaces apart).
fn row(text: &str, first: &[&str]) -> bool {
    text.lines().any(|line| {
        let cells: Vec<&str> = line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        cells.len() >= first.len() && cells.iter().zip(first).all(|(cell, want)| cell == want)
    })
}

fn health(addr: SocketAddr) -> Value {
    let (status, text) = http_get(addr, "/health");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(http_body(&text)).expect("JSON")
}

#[test]
fn cluster_status_shows_both_nodes_and_the_lease_and_a_restart_takes_the_next_epoch() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let dir = TempDir::new("cluster-status");
    let (_g1, addr1) = gateway(&dir, "g1", &redis, LEASE_SECONDS);
    let (_g2, _) = gateway(&dir, "g2", &redis, LEASE_SECONDS);

    let first = connector(addr1, "conn-a");
    assert!(wait_lease(&redis, "conn-a", Some(("g1", 1))), "{:?}", lease(&redis, "conn-a"));
    let (code, text) = status(&redis.url());
    assert_eq!(code, Some(0), "{text}");
    eprintln!("{text}");
    assert!(text.contains("Nodes (2):"), "{text}");
    assert!(row(&text, &["g1", "g1.test:7071"]) && row(&text, &["g2", "g2.test:7071"]), "{text}");
    assert!(row(&text, &["TENANT", "CONNECTOR", "NODE", "EPOCH"]), "{text}");
    assert!(row(&text, &[TENANT, "conn-a", "g1", "1"]), "{text}");
    assert_eq!(health(addr1)["node_id"], "g1");

    // The connector restarts (its tunnel closes, it registers again).
    drop(first);
    assert!(wait_lease(&redis, "conn-a", None), "released when its tunnel closed");
    let _second = connector(addr1, "conn-a");
    assert!(wait_lease(&redis, "conn-a", Some(("g1", 2))), "{:?}", lease(&redis, "conn-a"));
    let (_, text) = status(&redis.url());
    assert!(row(&text, &[TENANT, "conn-a", "g1", "2"]), "{text}");
}

#[test]
fn a_node_paused_past_its_lease_closes_its_stale_tunnel_and_never_overwrites_the_newer_registration() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let dir = TempDir::new("cluster-pause");
    let (g1, addr1) = gateway(&dir, "g1", &redis, LEASE_SECONDS);
    let (_g2, addr2) = gateway(&dir, "g2", &redis, LEASE_SECONDS);
    let stale = connector(addr1, "conn-b");
    assert!(wait_lease(&redis, "conn-b", Some(("g1", 1))));

    // g1 stops for longer than its lease: the lease expires.
    g1.signal("-STOP");
    let paused = Instant::now();
    let expired = wait_until(Duration::from_secs(LEASE_SECONDS * 3), || lease(&redis, "conn-b").is_none());
    // Meanwhile the connector registers on g2.
    let newer = connector(addr2, "conn-b");
    let registered = wait_lease(&redis, "conn-b", Some(("g2", 2)));
    g1.signal("-CONT");
    assert!(expired, "g1's lease did not expire while it was stopped");
    assert!(registered, "{:?}", lease(&redis, "conn-b"));
    eprintln!("g1 was stopped for {:?}", paused.elapsed());

    // g1 wakes, renews, learns it lost, and closes its tunnel.
    let woke = Instant::now();
    assert!(
        wait_until(Duration::from_secs(LEASE_SECONDS * 2), || !stale.alive.load(Ordering::Acquire)),
        "g1 did not close its stale tunnel:\n{}",
        g1.output()
    );
    eprintln!("stale tunnel closed {:?} after g1 resumed", woke.elapsed());
    let line = g1.wait_for_line("lost the lease of connector", Duration::from_secs(2));
    assert!(line.as_deref().is_some_and(|l| l.contains("epoch 2") && l.contains("4004")), "{}", g1.output());
    assert_eq!(health(addr1)["cluster"]["lost_leases"], 1);
    // The directory keeps the newer registration, lease after lease.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(LEASE_SECONDS * 2) {
        // (A renewal late on a loaded machine may let it lapse a moment; it never changes hands.)
        let now = lease(&redis, "conn-b");
        assert!(now.is_none() || now == Some(("g2".to_owned(), 2)), "{now:?}\n{}", g1.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wait_lease(&redis, "conn-b", Some(("g2", 2))), "{}", g1.output());
    assert!(newer.alive.load(Ordering::Acquire), "the newer tunnel is untouched");
    let (_, text) = status(&redis.url());
    assert!(row(&text, &[TENANT, "conn-b", "g2", "2"]), "{text}");
}

#[test]
fn sigterm_takes_the_nodes_keys_out_of_redis() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let dir = TempDir::new("cluster-sigterm");
    // A long lease: what removes the keys is the node leaving, not their TTL.
    let (mut g1, addr1) = gateway(&dir, "g1", &redis, 60);
    let _connector = connector(addr1, "conn-d");
    assert!(wait_lease(&redis, "conn-d", Some(("g1", 1))));
    let node_key = volley_engine::node_key("g1");
    assert_eq!(redis.command::<i64>(&["EXISTS", &node_key]), 1);

    g1.signal("-TERM");
    assert_eq!(g1.wait_exit(Duration::from_secs(15)), Some(0), "{}", g1.output());
    assert_eq!(redis.command::<i64>(&["EXISTS", &node_key]), 0, "{}", g1.output());
    assert_eq!(lease(&redis, "conn-d"), None, "{}", g1.output());
    assert!(g1.output().contains("left the directory"), "{}", g1.output());
    let (code, text) = status(&redis.url());
    assert_eq!(code, Some(0));
    assert!(text.contains("Nodes: none") && text.contains("Leases: none"), "{text}");
}

#[test]
fn cluster_mistakes_and_an_unreachable_redis_are_refused_with_what_to_do() {
    let dir = TempDir::new("cluster-errors");
    let url = format!("redis://127.0.0.1:{}/", free_redis_port());
    let base = json!({
        "listen": "127.0.0.1:0",
        "tableros_secret_key": SECRET,
        "redis": {"url": url},
        "cluster": {"node_id": "g1", "peer_listen": "127.0.0.1:7071"},
    });
    let mut short = base.clone();
    short["cluster"]["peer_secret"] = json!("too-short");
    let mut no_redis = base.clone();
    no_redis["cluster"]["peer_secret"] = json!(PEER_SECRET);
    no_redis.as_object_mut().expect("object").remove("redis");
    for (name, yaml, needles) in [
        ("missing", base, vec!["cluster.peer_secret", "openssl rand"]),
        ("short", short, vec!["cluster.peer_secret", "at least 32"]),
        ("no-redis", no_redis, vec!["needs redis.url"]),
    ] {
        let config = write_file(&dir, &format!("{name}.yaml"), yaml.to_string().as_bytes());
        let mut process = VolleyProcess::spawn(VOLLEY, &["gateway", "--config", config.to_str().expect("utf-8")]);
        let code = process.wait_exit(Duration::from_secs(10));
        let output = process.output();
        assert_ne!(code, Some(0), "{name}: {output}");
        for needle in needles {
            assert!(output.contains(needle), "{name}: {needle:?} not in {output}");
        }
        assert!(!output.contains("too-short"), "the secret is never printed: {output}");
    }

    // Nothing listens on that port.
    let (code, text) = status(&url);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot read the cluster directory") && text.contains("redis-server runs"), "{text}");
}
