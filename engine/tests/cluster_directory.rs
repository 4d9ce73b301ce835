//! The cluster's directory (issue 15, first part) against a REAL
//! `redis-server` each test starts on a free port, with two gateways (in
//! this process, on real sockets) as nodes `g1` and `g2` and
//! `lease_seconds: 2`: a connector's registration is a lease with an epoch
//! under its tenant's hash tag, the next registration takes the next epoch,
//! a node whose lease was taken by a newer registration closes its stale
//! tunnel and never writes over the newer one, the lookup names the node,
//! Redis going away leaves local service alone and the lease comes back
//! within a lease of Redis returning. The pauses (`kill -STOP`), SIGTERM and
//! `volley cluster status` are in cli/tests/cluster.rs, with gateway processes.
//!
//! `redis-server` must be installed (scripts/test.sh installs it); without
//! it these tests fail under CI=true and are skipped (loudly) elsewhere.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_engine::config::{ClusterConfig, Secrets};
use volley_engine::{ConnectorKeys, Gateway, GatewayConfig};
use volley_testkit::browser::Browser;
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::http::{http_body, http_get};
use volley_testkit::ipc::synthetic_frames;
use volley_testkit::redis::{free_redis_port, RedisServer};
use volley_testkit::tokens::{connector_token_jti, session_token, SECRET, TENANT};
use volley_testkit::wait_until;

const LEASE_SECONDS: u64 = 2;
const PEER_SECRET: &str = "a-peer-secret-of-at-least-32-bytes-for-tests";

/// A gateway config for node `node` of a cluster on `redis`.
fn node_config(node: &str, redis: &RedisServer) -> GatewayConfig {
    let mut config = config();
    config.redis.url = Some(redis.url());
    let yaml = format!(
        "node_id: {node}\npeer_listen: 127.0.0.1:0\nadvertise: {node}.test:7071\npeer_secret: {PEER_SECRET}\n\
         lease_seconds: {LEASE_SECONDS}\n"
    );
    config.cluster = Some(serde_yaml_ng::from_str::<ClusterConfig>(&yaml).expect("cluster section"));
    config.tableros_secret_key = Some(Secrets::One(SECRET.into()));
    config
}

/// A level-2 connector of [`TENANT`] whose credential's `jti` is `jti`,
/// serving the query dataset `table`.
fn connector(gateway: &Gateway, jti: &str) -> ConnectorHandle {
    let mut spec = ConnectorSpec::level2(vec![DatasetSpec::query("table", synthetic_frames(4, 1024))]);
    spec.token = Some(connector_token_jti(TENANT, SECRET, jti));
    spawn_connector(gateway.local_addr(), spec)
}

/// The lease of `jti` as Redis holds it: (node, epoch), if any.
fn lease(redis: &RedisServer, jti: &str) -> Option<(String, u64)> {
    let key = ConnectorKeys::new(TENANT, jti).lease;
    let (node, epoch): (Option<String>, Option<u64>) = redis
        .connection()
        .and_then(|mut c| redis::cmd("HMGET").arg(&key).arg("node").arg("epoch").query(&mut c).ok())?;
    node.zip(epoch)
}

/// Waits (at most `timeout`) until the lease of `jti` is `expected`.
fn wait_lease(redis: &RedisServer, jti: &str, expected: Option<(&str, u64)>, timeout: Duration) -> bool {
    let expected = expected.map(|(node, epoch)| (node.to_owned(), epoch));
    wait_until(timeout, || lease(redis, jti) == expected)
}

fn health(gateway: &Gateway) -> Value {
    let (status, text) = http_get(gateway.local_addr(), "/health");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(http_body(&text)).expect("health is JSON")
}

fn metric(gateway: &Gateway, name: &str) -> u64 {
    let (_, text) = http_get(gateway.local_addr(), "/metrics");
    http_body(&text)
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[test]
fn a_registration_is_a_lease_with_an_epoch_and_the_next_one_takes_the_next_epoch() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let g1 = start(node_config("g1", &redis));
    let g2 = start(node_config("g2", &redis));

    // Without connectors the nodes are there, heartbeating.
    assert!(wait_until(Duration::from_secs(5), || {
        redis.command::<Option<String>>(&["HGET", &volley_engine::node_key("g2"), "advertise"]).as_deref()
            == Some("g2.test:7071")
    }));

    let first = connector(&g1, "conn-a");
    wait_connectors(&g1, 1);
    assert!(wait_lease(&redis, "conn-a", Some(("g1", 1)), Duration::from_secs(5)), "{:?}", lease(&redis, "conn-a"));
    let keys = ConnectorKeys::new(TENANT, "conn-a");
    for key in [&keys.lease, &keys.epoch, &keys.index] {
        assert_eq!(volley_engine::hash_tag(key), TENANT, "{key} carries the tenant as its hash tag");
    }
    let ttl: i64 = redis.command(&["PTTL", &keys.lease]);
    assert!(ttl > 0 && ttl <= 2000, "the lease lives one lease_seconds: {ttl} ms");
    // Renewed: still g1's at epoch 1 two leases later (a renewal late on a
    // loaded machine may let it lapse for a moment, never change hands).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(LEASE_SECONDS * 2) {
        let now = lease(&redis, "conn-a");
        assert!(now.is_none() || now == Some(("g1".into(), 1)), "{now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wait_lease(&redis, "conn-a", Some(("g1", 1)), Duration::from_secs(5)));

    // Another node looks the tenant up and finds g1.
    let directory = g2.shared().cluster.as_ref().expect("clustered");
    let serving = directory.lookup(TENANT).expect("lookup");
    assert_eq!(serving.len(), 1, "{serving:?}");
    assert_eq!((serving[0].node.as_str(), serving[0].advertise.as_str(), serving[0].epoch), ("g1", "g1.test:7071", 1));
    assert!(directory.lookup("nobody").expect("lookup").is_empty());

    // /health and /metrics say so.
    let h1 = health(&g1);
    assert_eq!(h1["node_id"], "g1", "{h1}");
    assert_eq!(h1["cluster"]["redis"], "reachable", "{h1}");
    assert_eq!(h1["cluster"]["leases_held"], 1, "{h1}");
    assert_eq!(h1["cluster"]["lost_leases"], 0, "{h1}");
    assert_eq!(metric(&g1, "volley_cluster_registrations_total"), 1);
    assert!(metric(&g1, "volley_cluster_renewals_total") >= 2);
    assert!(metric(&g2, "volley_cluster_lookups_total") >= 2);
    assert_eq!(metric(&g1, "volley_cluster_lost_leases_total"), 0);
    assert_eq!(metric(&g1, "volley_cluster_redis_errors_total"), 0);

    // The connector restarts: its tunnel closes (the lease is released),
    // the new one registers with the next epoch.
    drop(first);
    assert!(wait_lease(&redis, "conn-a", None, Duration::from_secs(5)), "released when the tunnel closed");
    let _second = connector(&g1, "conn-a");
    assert!(wait_lease(&redis, "conn-a", Some(("g1", 2)), Duration::from_secs(5)), "{:?}", lease(&redis, "conn-a"));
}

#[test]
fn a_newer_registration_elsewhere_fences_the_older_tunnel_and_is_never_overwritten() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let g1 = start(node_config("g1", &redis));
    let g2 = start(node_config("g2", &redis));
    let old = connector(&g1, "conn-b");
    assert!(wait_lease(&redis, "conn-b", Some(("g1", 1)), Duration::from_secs(5)));

    // The same connector registers on g2 (it reconnected there).
    let newer = connector(&g2, "conn-b");
    assert!(wait_lease(&redis, "conn-b", Some(("g2", 2)), Duration::from_secs(5)));
    // g1's next renewal finds it lost and closes its stale tunnel.
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(LEASE_SECONDS * 2), || !old.alive.load(Ordering::Acquire)),
        "g1 closed the stale tunnel"
    );
    eprintln!("stale tunnel closed {:?} after the newer registration", t0.elapsed());
    let h1 = health(&g1);
    assert_eq!((h1["cluster"]["lost_leases"].as_u64(), h1["cluster"]["leases_held"].as_u64()), (Some(1), Some(0)));
    // Several leases later the directory still holds the newer registration:
    // g1 never wrote over it.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(LEASE_SECONDS * 2) {
        let now = lease(&redis, "conn-b");
        assert!(now.is_none() || now == Some(("g2".into(), 2)), "{now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wait_lease(&redis, "conn-b", Some(("g2", 2)), Duration::from_secs(5)));
    assert!(newer.alive.load(Ordering::Acquire), "the newer tunnel is untouched");
    assert_eq!(metric(&g2, "volley_cluster_lost_leases_total"), 0);
}

#[test]
fn without_redis_local_queries_go_on_and_the_lease_comes_back_within_a_lease() {
    let port = free_redis_port();
    let Some(redis) = RedisServer::start(port) else { return };
    let g1 = start(node_config("g1", &redis));
    let _connector = connector(&g1, "conn-c");
    assert!(wait_lease(&redis, "conn-c", Some(("g1", 1)), Duration::from_secs(5)));

    redis.kill();
    assert!(
        wait_until(Duration::from_secs(5), || health(&g1)["cluster"]["redis"] == "unreachable"),
        "g1 noticed Redis went away"
    );
    // Node-local routing does not need Redis: queries are served, and a
    // connector registering now is served too.
    let token = session_token(TENANT, &["table", "other"]);
    let mut browser = Browser::connect(g1.local_addr(), &token, true);
    let result = browser.query("table", "q1");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_eq!(result.payloads.len(), 4);
    let mut late = ConnectorSpec::level2(vec![DatasetSpec::query("other", synthetic_frames(2, 512))]);
    late.token = Some(connector_token_jti(TENANT, SECRET, "conn-late"));
    let _late = spawn_connector(g1.local_addr(), late);
    wait_connectors(&g1, 2);
    let result = browser.query("other", "q2");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(metric(&g1, "volley_cluster_redis_errors_total") >= 1);

    // Redis comes back empty (no persistence): both leases are written
    // within one lease.
    let redis = RedisServer::start(port).expect("redis-server restarts");
    let t0 = Instant::now();
    assert!(wait_lease(&redis, "conn-c", Some(("g1", 1)), Duration::from_secs(LEASE_SECONDS)), "restored");
    assert!(wait_lease(&redis, "conn-late", Some(("g1", 1)), Duration::from_secs(LEASE_SECONDS)), "registered");
    eprintln!("leases back {:?} after Redis answered again", t0.elapsed());
    assert!(wait_until(Duration::from_secs(2), || health(&g1)["cluster"]["redis"] == "reachable"));
    assert_eq!(health(&g1)["cluster"]["leases_held"], 2);
}

#[test]
fn two_gateways_given_the_same_node_id_still_fence_each_other() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let a = start(node_config("same", &redis));
    let b = start(node_config("same", &redis));
    let old = connector(&a, "conn-e");
    assert!(wait_lease(&redis, "conn-e", Some(("same", 1)), Duration::from_secs(5)));
    let _newer = connector(&b, "conn-e");
    assert!(wait_lease(&redis, "conn-e", Some(("same", 2)), Duration::from_secs(5)));
    // The scripts compare the process, not the node id: a's renewal is lost.
    assert!(
        wait_until(Duration::from_secs(LEASE_SECONDS * 2), || !old.alive.load(Ordering::Acquire)),
        "the older process closed its tunnel"
    );
    assert_eq!(health(&a)["cluster"]["lost_leases"], 1);
    let instance = |g: &Gateway| g.shared().cluster.as_ref().expect("clustered").instance.clone();
    let holder: Option<String> = redis.command(&["HGET", &ConnectorKeys::new(TENANT, "conn-e").lease, "instance"]);
    assert_eq!(holder, Some(instance(&b)));
    assert_ne!(instance(&a), instance(&b));
}
