//! A connector with a list of gateways (issue 15), with real processes: two
//! `volley gateway` processes and `volley connector --config` whose
//! `gateway.uri` lists both. Its tunnels are spread over the list, a tunnel
//! whose gateway is killed goes to the next one, and a gateway that gets
//! SIGTERM drains: its connector opens a tunnel on the other gateway at once
//! (not after `reconnect_delay`) and closes the old one only once its
//! running query ended, so the tenant is never without a tunnel; the query
//! finishes, a browser on the draining gateway is closed with 1012, and the
//! gateway exits 0. A list the connector cannot use stops it with which
//! entry and what to write instead.
// The gateway (the engine) is Linux-only.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_protocol::ws::close_code;
use volley_testkit::browser::{Browser, Received};
use volley_testkit::connector::connector_config_listing;
use volley_testkit::files::{write_file, TempDir};
use volley_testkit::http::{health_connectors, ConnectorSamples};
use volley_testkit::process::VolleyProcess;
use volley_testkit::redis::{free_redis_port, RedisServer};
use volley_testkit::tokens::{connector_token, session_token, SECRET};
use volley_testkit::wait_until;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");
const TENANT: &str = "acme";
/// Rows of the CSV the draining test's query reads: enough that the query
/// cannot finish while its browser does not read (it is paced by credit).
const ROWS: usize = 1_000_000;

/// A one-worker gateway process called `name`, with `extra` keys added to its config.
fn gateway(dir: &TempDir, name: &str, extra: Value) -> (VolleyProcess, SocketAddr) {
    let mut yaml = json!({"listen": "127.0.0.1:0", "workers": 1, "pin_workers": false, "tableros_secret_key": SECRET});
    if let (Some(config), Some(extra)) = (yaml.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    VolleyProcess::named_gateway(VOLLEY, dir, name, &yaml.to_string())
}

/// `volley connector --config` with `gateway.uri` listing `addrs`.
fn connector(dir: &TempDir, addrs: &[SocketAddr], performance: Value, datasets: Value) -> VolleyProcess {
    let config = connector_config_listing(addrs, TENANT, &connector_token(TENANT), performance, datasets);
    let path = write_file(dir, "connector.yaml", config.to_string().as_bytes());
    VolleyProcess::spawn(VOLLEY, &["connector", "--config", path.to_str().expect("utf-8")])
}

fn small_csv(dir: &TempDir) -> String {
    let path = write_file(dir, "small.csv", b"id,name\n1,a\n2,b\n");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn tunnels_are_spread_over_the_list_and_a_killed_gateways_tunnel_moves_to_the_other() {
    let dir = TempDir::new("gateway-list-kill");
    let (g1, addr1) = gateway(&dir, "g1", json!({}));
    let (mut g2, addr2) = gateway(&dir, "g2", json!({}));
    let datasets = json!({"small": {"type": "csv", "path": small_csv(&dir)}});
    let connector =
        connector(&dir, &[addr1, addr2], json!({"parallel_connections": 2, "reconnect_delay": 0.2}), datasets);

    let spread = wait_until(Duration::from_secs(10), || {
        health_connectors(addr1) == Some(1) && health_connectors(addr2) == Some(1)
    });
    assert!(
        spread,
        "one tunnel on each gateway: g1 {:?}, g2 {:?}\n{}",
        health_connectors(addr1),
        health_connectors(addr2),
        connector.output()
    );
    // The log names the gateway each tunnel is on (a line may come a moment
    // after the registration /health shows).
    for line in [
        format!("tunnel 0: registered with gateway 1 of 2, ws://{addr1}/ws/connect"),
        format!("tunnel 1: registered with gateway 2 of 2, ws://{addr2}/ws/connect"),
    ] {
        assert!(connector.wait_for_line(&line, Duration::from_secs(5)).is_some(), "{line}:\n{}", connector.output());
    }

    let killed = Instant::now();
    g2.child.kill().expect("kill -9 g2");
    let _ = g2.wait_exit(Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || health_connectors(addr1) == Some(2)),
        "the tunnel of the killed gateway did not move to g1 within 5 s (g1 has {:?}):\n{}",
        health_connectors(addr1),
        connector.output()
    );
    eprintln!("tunnel moved to g1 {:?} after kill -9 of g2", killed.elapsed());
    let moved = format!("tunnel 1: registered with gateway 1 of 2, ws://{addr1}/ws/connect");
    assert!(connector.wait_for_line(&moved, Duration::from_secs(2)).is_some(), "{}", connector.output());
    // Its first attempt went to the next gateway, not the dead one again.
    let output = connector.output();
    let after_loss: Vec<&str> = output.lines().filter(|l| l.contains("tunnel 1:")).skip(1).collect();
    assert!(
        after_loss.first().is_some_and(|line| line.contains(&format!("ws://{addr1}/ws/connect"))),
        "the lost tunnel's next line names g1: {after_loss:?}"
    );
    drop(g1);
}

#[test]
fn sigterm_drains_the_connector_moves_at_once_the_running_query_finishes_and_browsers_get_1012() {
    drains(&TempDir::new("gateway-list-drain"), |_| json!({}));
}

/// The same drain with both gateways nodes of one cluster (a 2 s lease):
/// the connector's registration on g2 takes the lease from g1 while g1's
/// old tunnel still serves the query; g1, draining, lets it finish instead
/// of closing it as stale (4004), and leaves the directory.
#[test]
fn a_draining_cluster_node_lets_the_moved_connectors_query_finish_and_leaves_the_directory() {
    let Some(redis) = RedisServer::start(free_redis_port()) else { return };
    let cluster = |node: &str| {
        json!({
            "redis": {"url": redis.url()},
            "cluster": {
                "node_id": node,
                "peer_listen": "127.0.0.1:0",
                "advertise": format!("{node}.test:7071"),
                "peer_secret": "a-peer-secret-of-at-least-32-bytes-for-tests",
                "lease_seconds": 2,
            },
        })
    };
    let (g1, _) = drains(&TempDir::new("gateway-list-cluster-drain"), cluster);
    let output = g1.output();
    assert!(output.contains("as this draining node asked"), "{output}");
    assert!(!output.contains("4004"), "the old tunnel was not closed as stale: {output}");
    assert!(output.contains("left the directory"), "{output}");
    assert_eq!(redis.command::<i64>(&["EXISTS", &volley_engine::node_key("g1")]), 0);
    assert_eq!(redis.command::<i64>(&["EXISTS", &volley_engine::node_key("g2")]), 1);
}

/// g1 and g2 (each with `extra(name)`'s keys), the connector listing both on
/// g1 with a query running; SIGTERM g1 and check the drain. Returns both
/// gateways, g1 exited.
fn drains(dir: &TempDir, extra: impl Fn(&str) -> Value) -> (VolleyProcess, VolleyProcess) {
    // Small credit: the query is paced by its browser, so it is still
    // running when SIGTERM comes.
    let mut first = extra("g1");
    first["shutdown_grace_seconds"] = json!(15);
    first["limits"] = json!({"credit_bytes": 65536});
    let (mut g1, addr1) = gateway(dir, "g1", first);
    let (g2, addr2) = gateway(dir, "g2", extra("g2"));
    let mut csv = String::from("id,name,amount\n");
    for row in 0..ROWS {
        csv.push_str(&format!("{row},name-{row},{}.25\n", row % 1000));
    }
    let path = write_file(dir, "big.csv", csv.as_bytes());
    let datasets = json!({"big": {"type": "csv", "path": path.to_str().expect("utf-8")}});
    // A long reconnect delay: a tunnel that moved within it moved at once.
    let connector =
        connector(dir, &[addr1, addr2], json!({"parallel_connections": 1, "reconnect_delay": 5.0}), datasets);
    assert!(
        wait_until(Duration::from_secs(10), || health_connectors(addr1) == Some(1)),
        "the tunnel registers with g1 first:\n{}",
        connector.output()
    );
    assert_eq!(health_connectors(addr2), Some(0));

    // A level-2 browser whose query is running, and an idle one.
    let token = session_token(TENANT, &["*"]);
    let mut querying = Browser::connect(addr1, &token, true);
    querying.send(json!({"action": "query", "dataset": "big", "query_id": "q1"}));
    let mut frames = 0usize;
    while frames < 3 {
        match querying.next(Duration::from_secs(10)) {
            Some(Received::Binary(_)) => frames += 1,
            Some(Received::Json(message)) => assert_ne!(message["type"], "stream_end", "{message}"),
            other => panic!("the query did not start: {other:?}"),
        }
    }
    let mut idle = Browser::connect(addr1, &token, true);

    let samples = ConnectorSamples::start(vec![addr2], Duration::from_millis(20));
    let sigterm = Instant::now();
    g1.signal("-TERM");

    // The idle browser is told to reconnect elsewhere at once.
    assert_eq!(idle.expect_close(Duration::from_secs(5)), Some(close_code::SERVICE_RESTART), "{}", g1.output());
    drop(idle);
    // The tunnel moves to g2 without waiting for reconnect_delay (5 s).
    let registered = g2.instant_of("registered: tenant", Duration::from_secs(5));
    let registered = registered.unwrap_or_else(|| panic!("no tunnel on g2:\n{}\n{}", connector.output(), g2.output()));
    let moved_after = registered.saturating_duration_since(sigterm);
    assert!(moved_after < Duration::from_secs(2), "the tunnel moved {moved_after:?} after SIGTERM, not at once");

    // The running query finishes on g1, then its browser gets 1012.
    let mut end = None;
    let finish_by = Instant::now() + Duration::from_secs(14);
    while end.is_none() {
        assert!(Instant::now() < finish_by, "the query did not finish within the grace:\n{}", g1.output());
        match querying.next(Duration::from_secs(5)) {
            Some(Received::Binary(_)) => frames += 1,
            Some(Received::Json(message)) if message["type"] == "stream_end" => end = Some(message),
            Some(Received::Json(_)) | None => {}
            Some(Received::Close(code)) => panic!("closed ({code:?}) before the query ended:\n{}", g1.output()),
        }
    }
    let end = end.unwrap_or_default();
    assert!(end["error"].is_null(), "the query ended with an error: {end}");
    assert_eq!(querying.expect_close(Duration::from_secs(5)), Some(close_code::SERVICE_RESTART));
    drop(querying);
    eprintln!("query of {frames} frames finished {:?} after SIGTERM", sigterm.elapsed());

    assert_eq!(g1.wait_exit(Duration::from_secs(15)), Some(0), "{}", g1.output());
    let exited = Instant::now();
    let samples = samples.stop();
    // No gap: the old tunnel left g1 only after the new one registered on
    // g2, and g2 kept it from then on.
    let left = g1.instants_of("disconnected").first().copied().unwrap_or(exited);
    assert!(registered < left, "the tunnel left g1 before it registered on g2:\n{}", g1.output());
    let gaps: Vec<_> = samples
        .iter()
        .filter(|(at, counts)| *at > registered + Duration::from_millis(50) && counts.first() != Some(&Some(1)))
        .collect();
    assert!(gaps.is_empty(), "g2 lost the tunnel after it registered: {gaps:?}");
    assert_eq!(health_connectors(addr2), Some(1));
    let closing = "closing the tunnel to the draining gateway (its streams ended)";
    assert!(connector.wait_for_line(closing, Duration::from_secs(5)).is_some(), "{}", connector.output());
    assert!(g1.output().contains("asked to move to another gateway"), "{}", g1.output());
    // The moved tunnel serves queries on g2.
    let mut browser = Browser::connect(addr2, &token, true);
    assert_eq!(browser.query("big", "q2").error_code(), None);
    drop(connector);
    (g1, g2)
}

#[test]
fn a_gateway_list_the_connector_cannot_use_is_refused_naming_the_entry() {
    let dir = TempDir::new("gateway-list-errors");
    let good = "ws://127.0.0.1:9/ws/connect";
    for (name, uri, needles) in [
        ("empty", json!([]), vec!["gateway.uri", "empty list", "at least one gateway"]),
        ("bad-entry", json!([good, "http://gw-2:8081/ws"]), vec!["entry 2 of 2", "http://gw-2:8081/ws", "ws://"]),
        ("repeated", json!([good, good]), vec!["entry 2 of 2", "repeats entry 1"]),
        ("not-a-uri", json!({"host": "gw"}), vec!["gateway.uri", "neither a URI nor a list"]),
    ] {
        let config = json!({"gateway": {"uri": uri}, "tenant": {"id": TENANT}, "datasets": {}});
        let path = write_file(&dir, &format!("{name}.yaml"), config.to_string().as_bytes());
        let mut process = VolleyProcess::spawn(VOLLEY, &["connector", "--config", path.to_str().expect("utf-8")]);
        let code = process.wait_exit(Duration::from_secs(10));
        let output = process.output();
        assert_ne!(code, Some(0), "{name}: {output}");
        for needle in needles {
            assert!(output.contains(needle), "{name}: {needle:?} not in {output}");
        }
    }
}
