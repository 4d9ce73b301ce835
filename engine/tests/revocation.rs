//! Revocation over Redis pub/sub (PROTOCOL.md §8–§10)
//! against a REAL `redis-server` each test starts on a free port: a revoked
//! session is closed with 4000 within milliseconds and refused afterwards
//! (403 `revoked`); user and tenant revocations (a tenant's tunnels too);
//! the feed reconnects after Redis restarts; `redis.fail_closed`; and
//! revocations that last (PROTOCOL.md §6.2): kept in Redis sorted sets, so a
//! gateway restart or a gap in the subscription does not forget them; a
//! connector credential stays refused until its own `exp`; a user revocation
//! may be scoped to one tenant; expired entries are pruned; a revocation
//! applied just before the gateway stops still reaches the record, and the
//! stop waits on Redis for a bounded time only.
//!
//! `redis-server` must be installed (scripts/test.sh installs it); without
//! it these tests fail under CI=true and are skipped (loudly) elsewhere
//! (the testkit's `redis` module starts it).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_engine::GatewayConfig;
use volley_testkit::browser::Browser;
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{register_refused, spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::http::{http_body, http_get, http_raw, upgrade_request};
use volley_testkit::redis::{free_redis_port, RedisServer};
use volley_testkit::tokens::{connector_token, connector_token_jti, session_token_of, SECRET, TENANT};
use volley_testkit::wait_until;

const CHANNEL: &str = "volley:revocations";

/// What these tests ask of the testkit's redis-server about the revocation
/// feed: its subscribers, the durable record, publishing, held writes.
trait RevocationRedis {
    fn subscribers(&self) -> i64;
    fn wait_subscribed(&self);
    fn score(&self, kind: &str, member: &str) -> Option<i64>;
    fn publish(&self, message: &Value) -> i64;
    fn publish_then_hold_writes(&self, message: &Value) -> i64;
    fn write_held(&self, cmd: &str) -> bool;
    fn release_writes(&self);
}

impl RevocationRedis for RedisServer {
    /// Subscribers of the revocation channel (the gateway's feed).
    fn subscribers(&self) -> i64 {
        let Some(mut c) = self.connection() else { return 0 };
        let reply: Vec<redis::Value> =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(CHANNEL).query(&mut c).unwrap_or_default();
        match reply.get(1) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        }
    }

    /// Waits until the gateway's feed is subscribed.
    fn wait_subscribed(&self) {
        assert!(
            wait_until(Duration::from_secs(10), || self.subscribers() >= 1),
            "the gateway did not subscribe to {CHANNEL}"
        );
    }

    /// The score of `member` in the durable record `<channel>:<kind>`.
    fn score(&self, kind: &str, member: &str) -> Option<i64> {
        self.command::<Option<f64>>(&["ZSCORE", &format!("{CHANNEL}:{kind}"), member]).map(seconds)
    }

    /// Publishes `message`; returns how many subscribers got it.
    fn publish(&self, message: &Value) -> i64 {
        let mut c = self.connection().expect("connect to redis");
        redis::cmd("PUBLISH").arg(CHANNEL).arg(message.to_string()).query(&mut c).expect("PUBLISH")
    }

    /// Publishes `message` and, in the same transaction, makes Redis hold
    /// every write command (`CLIENT PAUSE … WRITE`, the feed's `ZADD`
    /// included) for up to 10 s; returns how many subscribers got it.
    fn publish_then_hold_writes(&self, message: &Value) -> i64 {
        let mut c = self.connection().expect("connect to redis");
        let (receivers, _paused): (i64, redis::Value) = redis::pipe()
            .atomic()
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(message.to_string())
            .cmd("CLIENT")
            .arg("PAUSE")
            .arg(10_000)
            .arg("WRITE")
            .query(&mut c)
            .expect("MULTI PUBLISH CLIENT PAUSE EXEC");
        receivers
    }

    /// True when a client's `cmd` is held by `CLIENT PAUSE` (the feed's record write).
    fn write_held(&self, cmd: &str) -> bool {
        let clients: String = self.command(&["CLIENT", "LIST"]);
        clients.lines().any(|line| line.contains(&format!("cmd={cmd} ")) && line.contains("flags=b"))
    }

    fn release_writes(&self) {
        let _: redis::Value = self.command(&["CLIENT", "UNPAUSE"]);
    }
}

/// A free port for redis-server (below the ephemeral range, see the testkit).
fn free_port() -> u16 {
    free_redis_port()
}

/// A sorted-set score as whole seconds (scores the gateway writes are whole).
fn seconds(score: f64) -> i64 {
    format!("{score:.0}").parse().expect("a finite score")
}

fn now() -> i64 {
    volley_engine::unix_now()
}

/// Waits until the gateway's feed has subscribed and loaded the durable record.
fn wait_ready(gateway: &volley_engine::Gateway) {
    let shared = gateway.shared().clone();
    assert!(
        wait_until(Duration::from_secs(10), || shared.revocations.connected.load(Ordering::Acquire)),
        "the revocation feed did not come up"
    );
}

/// Drops `gateway` on another thread and returns once it has begun to stop
/// (its feed thread sees the stop flag); join the handle for the stop's end.
fn stop_in_background(gateway: volley_engine::Gateway) -> std::thread::JoinHandle<Duration> {
    let shared = gateway.shared().clone();
    let t0 = Instant::now();
    let stopping = std::thread::spawn(move || {
        drop(gateway);
        t0.elapsed()
    });
    assert!(wait_until(Duration::from_secs(5), || shared.is_stopping()), "the gateway began to stop");
    stopping
}

fn redis_config(url: &str) -> GatewayConfig {
    let mut config = config();
    config.redis.url = Some(url.to_owned());
    config
}

/// Status and error code of an upgrade to `/stream/{token}` that is refused.
fn refused(addr: SocketAddr, token: &str) -> (u16, String) {
    let (status, text) = http_raw(addr, upgrade_request(&format!("/stream/{token}"), "").as_bytes());
    let code = serde_json::from_str::<Value>(http_body(&text)).map(|v| v["code"].as_str().unwrap_or("").to_owned());
    (status, code.unwrap_or_default())
}

/// Publishes and measures how long until `browser` reads close 4000.
fn publish_and_time_close(redis: &RedisServer, message: Value, browser: &mut Browser) -> Duration {
    let t0 = Instant::now();
    assert_eq!(redis.publish(&message), 1, "one subscriber (the gateway) got {message}");
    let code = browser.expect_close(Duration::from_secs(5));
    let elapsed = t0.elapsed();
    assert_eq!(code, Some(4000), "close code after {message}");
    elapsed
}

#[test]
fn a_revoked_session_is_closed_at_once_and_refused_afterwards() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let gateway = start(redis_config(&redis.url()));
    let addr = gateway.local_addr();
    redis.wait_subscribed();

    let revoked = session_token_of("ana", TENANT, "sess-revoked");
    let kept = session_token_of("ana", TENANT, "sess-kept");
    let mut victim = Browser::connect(addr, &revoked, true);
    let mut bystander = Browser::connect(addr, &kept, false);
    let elapsed = publish_and_time_close(&redis, json!({"session_id": "sess-revoked"}), &mut victim);
    eprintln!("session revocation: publish → close 4000 read by the browser in {elapsed:?}");
    assert!(elapsed < Duration::from_millis(500), "close took {elapsed:?} (goal 100 ms)");

    // Refused from now on; other sessions of the same user are untouched.
    assert_eq!(refused(addr, &revoked), (403, "revoked".to_owned()));
    bystander.send(json!({"action": "ping"}));
    assert_eq!(bystander.next_json(Duration::from_secs(5))["type"], "pong");
    let (status, body) = http_get(addr, &format!("/session-check/{revoked}"));
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(http_body(&body)).expect("json")["code"], "revoked");

    // Malformed feed messages are ignored, the feed keeps working.
    assert_eq!(redis.publish(&json!({"nonsense": 1})), 1);
    assert_eq!(redis.publish(&json!({"session_id": "a", "user_id": "b"})), 1);
    let mut again = Browser::connect(addr, &session_token_of("ana", TENANT, "sess-later"), true);
    publish_and_time_close(&redis, json!({"session_id": "sess-later"}), &mut again);
}

#[test]
fn user_and_tenant_revocations_close_every_match_and_the_tenants_tunnels() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let gateway = start(redis_config(&redis.url()));
    let addr = gateway.local_addr();
    redis.wait_subscribed();

    // User: both of bob's sessions close (they may sit on different workers), ana's stays.
    let mut bob1 = Browser::connect(addr, &session_token_of("bob", TENANT, "b1"), true);
    let mut bob2 = Browser::connect(addr, &session_token_of("bob", TENANT, "b2"), false);
    let mut ana = Browser::connect(addr, &session_token_of("ana", TENANT, "a1"), true);
    let elapsed = publish_and_time_close(&redis, json!({"user_id": "bob"}), &mut bob1);
    eprintln!("user revocation: close read in {elapsed:?}");
    assert_eq!(bob2.expect_close(Duration::from_secs(2)), Some(4000));
    assert_eq!(refused(addr, &session_token_of("bob", TENANT, "b3")), (403, "revoked".to_owned()));
    ana.send(json!({"action": "ping"}));
    assert_eq!(ana.next_json(Duration::from_secs(5))["type"], "pong");

    // Tenant: its sessions and its connectors (on every worker) close, another tenant's stay.
    let other_tenant = "globex";
    let connectors: Vec<_> = (0..3)
        .map(|_| spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]).of_tenant("initech")))
        .collect();
    let other = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]).of_tenant(other_tenant));
    wait_connectors(&gateway, 4);
    let mut initech = Browser::connect(addr, &session_token_of("carl", "initech", "i1"), true);
    let mut globex = Browser::connect(addr, &session_token_of("dora", other_tenant, "g1"), true);
    let elapsed = publish_and_time_close(&redis, json!({"cuenta_id": "initech"}), &mut initech);
    eprintln!("tenant revocation: close read in {elapsed:?}");
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || connectors.iter().all(|c| !c.alive.load(Ordering::Acquire))),
        "the tenant's tunnels were closed"
    );
    eprintln!("tenant revocation: all 3 tunnels gone {:?} after the browser's close", t0.elapsed());
    wait_connectors(&gateway, 1);
    assert!(other.alive.load(Ordering::Acquire), "another tenant's tunnel stays");
    globex.send(json!({"action": "ping"}));
    assert_eq!(globex.next_json(Duration::from_secs(5))["type"], "pong");

    // Refused until the entry expires: sessions (403) and connectors at register.
    assert_eq!(refused(addr, &session_token_of("carl", "initech", "i2")), (403, "revoked".to_owned()));
    let (reply, code) = register_refused(
        addr,
        json!({"action": "register", "tenant_id": "initech", "version": "0", "datasets": ["x"],
               "protocol": 2, "token": connector_token("initech")}),
    );
    assert_eq!(reply["code"], "revoked", "{reply}");
    assert_eq!(code, Some(1008));
}

#[test]
fn the_feed_reconnects_after_redis_restarts() {
    let port = free_port();
    let Some(redis) = RedisServer::start(port) else { return };
    let mut config = redis_config(&redis.url());
    config.redis.fail_closed = false;
    let gateway = start(config);
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    let shared = gateway.shared().clone();
    // Redis counts the subscriber when it handles SUBSCRIBE, a moment before the
    // feed reads the confirmation and marks itself connected: wait for both.
    assert!(
        wait_until(Duration::from_secs(5), || shared.revocations.connected.load(Ordering::Acquire)),
        "the feed marked itself connected"
    );

    redis.kill();
    assert!(
        wait_until(Duration::from_secs(5), || !shared.revocations.connected.load(Ordering::Acquire)),
        "the gateway noticed Redis went away"
    );
    // fail_closed is off: sessions are still admitted while Redis is down.
    let mut browser = Browser::connect(addr, &session_token_of("ana", TENANT, "r1"), true);

    let t0 = Instant::now();
    let redis = RedisServer::start(port).expect("redis-server restarts");
    redis.wait_subscribed();
    eprintln!("feed resubscribed {:?} after Redis came back", t0.elapsed());
    let elapsed = publish_and_time_close(&redis, json!({"session_id": "r1"}), &mut browser);
    eprintln!("after restart: close read in {elapsed:?}");
    assert!(elapsed < Duration::from_millis(500), "close took {elapsed:?}");
    assert_eq!(refused(addr, &session_token_of("ana", TENANT, "r1")), (403, "revoked".to_owned()));
}

#[test]
fn fail_closed_refuses_new_sessions_while_the_feed_is_down() {
    let port = free_port();
    let mut config = redis_config(&format!("redis://127.0.0.1:{port}/"));
    config.redis.fail_closed = true;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let jwt = session_token_of("ana", TENANT, "fc1");

    // No Redis yet: 503 unavailable.
    assert_eq!(refused(addr, &jwt), (503, "unavailable".to_owned()));
    let Some(redis) = RedisServer::start(port) else { return };
    redis.wait_subscribed();
    assert!(wait_until(Duration::from_secs(5), || gateway.shared().revocations.connected.load(Ordering::Acquire)));
    let mut browser = Browser::connect(addr, &jwt, true);
    browser.send(json!({"action": "ping"}));
    assert_eq!(browser.next_json(Duration::from_secs(5))["type"], "pong");

    // Redis goes away again: open sessions stay, new ones are refused.
    redis.kill();
    let shared = gateway.shared().clone();
    assert!(wait_until(Duration::from_secs(5), || !shared.revocations.connected.load(Ordering::Acquire)));
    assert_eq!(refused(addr, &jwt), (503, "unavailable".to_owned()));
    browser.send(json!({"action": "ping"}));
    assert_eq!(browser.next_json(Duration::from_secs(5))["type"], "pong");
}

#[test]
fn revoking_a_connector_credential_closes_its_open_tunnels_only() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let gateway = start(redis_config(&redis.url()));
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    let spec = |jti: &str| ConnectorSpec {
        token: Some(connector_token_jti(TENANT, SECRET, jti)),
        ..ConnectorSpec::level2(vec![DatasetSpec::live("ticker")])
    };
    // Two tunnels with the stolen credential (likely on both workers), one with another.
    let stolen: Vec<_> = (0..2).map(|_| spawn_connector(addr, spec("cred-stolen"))).collect();
    let kept = spawn_connector(addr, spec("cred-kept"));
    wait_connectors(&gateway, 3);
    let mut browser = Browser::connect(addr, &session_token_of("ana", TENANT, "s-keep"), true);

    let t0 = Instant::now();
    assert_eq!(redis.publish(&json!({"session_id": "cred-stolen"})), 1);
    assert!(
        wait_until(Duration::from_secs(2), || stolen.iter().all(|c| !c.alive.load(Ordering::Acquire))),
        "tunnels of the revoked credential were closed"
    );
    eprintln!("connector credential revocation: both tunnels gone in {:?}", t0.elapsed());
    wait_connectors(&gateway, 1);
    assert!(kept.alive.load(Ordering::Acquire), "a tunnel with another credential stays");
    browser.send(json!({"action": "ping"}));
    assert_eq!(browser.next_json(Duration::from_secs(5))["type"], "pong", "the tenant's sessions stay");

    // The credential cannot register again.
    let (reply, code) = register_refused(
        addr,
        json!({"action": "register", "tenant_id": TENANT, "version": "0", "datasets": ["x"],
               "protocol": 2, "token": connector_token_jti(TENANT, SECRET, "cred-stolen")}),
    );
    assert_eq!(reply["code"], "revoked", "{reply}");
    assert_eq!(code, Some(1008));
}

/// A Redis that stops answering without closing TCP (SIGSTOP: a host that
/// froze or vanished behind a silent network) is noticed by the keepalive
/// PING, reported down (fail_closed refuses new sessions), and the feed
/// resubscribes once it answers again.
#[test]
fn a_frozen_redis_is_noticed_by_the_keepalive_and_the_feed_recovers() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let mut config = redis_config(&redis.url());
    config.redis.fail_closed = true;
    config.redis.keepalive_seconds = 1;
    let gateway = start(config);
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    let shared = gateway.shared().clone();
    assert!(wait_until(Duration::from_secs(5), || shared.revocations.connected.load(Ordering::Acquire)));

    let pid = redis.pid().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let t0 = Instant::now();
    let noticed = wait_until(Duration::from_secs(6), || !shared.revocations.connected.load(Ordering::Acquire));
    let took = t0.elapsed();
    signal("-CONT");
    assert!(noticed, "a frozen Redis was not noticed within 6 s (keepalive 1 s)");
    eprintln!("frozen Redis noticed after {took:?}");
    assert!(wait_until(Duration::from_secs(10), || shared.revocations.connected.load(Ordering::Acquire)));
    // Subscribed again: revocations work.
    redis.wait_subscribed();
    let mut browser = Browser::connect(addr, &session_token_of("ana", TENANT, "s-frozen"), true);
    let elapsed = publish_and_time_close(&redis, json!({"session_id": "s-frozen"}), &mut browser);
    eprintln!("revocation after recovery: close read in {elapsed:?}");
}

/// A revoked session published the way operators do today (PUBLISH only) is
/// still refused after the gateway restarts: the gateway that received it
/// wrote it to Redis, and the new one loads it.
#[test]
fn a_revoked_session_stays_refused_after_the_gateway_restarts() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let config = redis_config(&redis.url());
    let token = session_token_of("ana", TENANT, "sess-restart");
    {
        let gateway = start(config.clone());
        redis.wait_subscribed();
        wait_ready(&gateway);
        let mut victim = Browser::connect(gateway.local_addr(), &token, true);
        publish_and_time_close(&redis, json!({"session_id": "sess-restart"}), &mut victim);
        assert_eq!(refused(gateway.local_addr(), &token), (403, "revoked".to_owned()));
    }
    // The first gateway is gone; a new one starts on the same Redis.
    let gateway = start(config);
    wait_ready(&gateway);
    let after = refused(gateway.local_addr(), &token);
    eprintln!("revoked session after a gateway restart: HTTP {} {:?}", after.0, after.1);
    assert_eq!(after, (403, "revoked".to_owned()), "the revoked session is accepted again after a restart");
    let kept = Browser::try_connect(gateway.local_addr(), &session_token_of("ana", TENANT, "sess-other"), true);
    assert!(kept.is_ok(), "another session of the same user is admitted: {:?}", kept.err());
}

/// Revocations made while no gateway listens are honoured: one recorded by
/// its publisher before any gateway started, and two made while the running
/// gateway's subscription was down (it could not authenticate), which also
/// close the open session and tunnel they cover once the feed is back.
#[test]
fn revocations_made_while_no_gateway_is_subscribed_are_honoured() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    // The documented durable form: ZADD the record, then PUBLISH.
    let until = (now() + 3600).to_string();
    let _: i64 = redis.command(&["ZADD", &format!("{CHANNEL}:tenants"), &until, "initech"]);
    assert_eq!(redis.publish(&json!({"cuenta_id": "initech"})), 0, "no gateway is subscribed yet");

    let gateway = start(redis_config(&redis.url()));
    let addr = gateway.local_addr();
    wait_ready(&gateway);
    let seen = refused(addr, &session_token_of("carl", "initech", "i1"));
    eprintln!("tenant revoked before the gateway started: HTTP {} {:?}", seen.0, seen.1);
    assert_eq!(seen, (403, "revoked".to_owned()));
    let (reply, code) = register_refused(
        addr,
        json!({"action": "register", "tenant_id": "initech", "version": "0", "datasets": ["x"],
               "protocol": 2, "token": connector_token("initech")}),
    );
    assert_eq!(reply["code"], "revoked", "{reply}");
    assert_eq!(code, Some(1008));

    // Now the running gateway loses its subscription and cannot get it back
    // (Redis starts asking for a password), a revocation is recorded and
    // published meanwhile, then Redis lets it in again.
    let mut dora = Browser::connect(addr, &session_token_of("dora", TENANT, "d1"), true);
    let hooli = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]).of_tenant("hooli"));
    wait_connectors(&gateway, 1);
    let mut admin = redis.connection().expect("admin connection");
    let run = |c: &mut redis::Connection, args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query::<redis::Value>(c).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    run(&mut admin, &["CONFIG", "SET", "requirepass", "s3cret"]);
    run(&mut admin, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    run(&mut admin, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    let shared = gateway.shared().clone();
    assert!(
        wait_until(Duration::from_secs(5), || !shared.revocations.connected.load(Ordering::Acquire)),
        "the gateway noticed its subscription was gone"
    );
    run(&mut admin, &["ZADD", &format!("{CHANNEL}:users"), &until, "dora"]);
    run(&mut admin, &["ZADD", &format!("{CHANNEL}:tenants"), &until, "hooli"]);
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(json!({"user_id": "dora"}).to_string())
        .query(&mut admin)
        .expect("PUBLISH");
    assert_eq!(receivers, 0, "the gateway was not subscribed when dora was revoked");
    run(&mut admin, &["CONFIG", "SET", "requirepass", ""]);
    wait_ready(&gateway);
    let t0 = Instant::now();
    let code = dora.expect_close(Duration::from_secs(5));
    eprintln!(
        "user revoked during a feed outage: open session closed with {code:?} {:?} after the feed came back",
        t0.elapsed()
    );
    assert_eq!(code, Some(4000));
    assert_eq!(refused(addr, &session_token_of("dora", TENANT, "d2")), (403, "revoked".to_owned()));
    assert!(
        wait_until(Duration::from_secs(2), || !hooli.alive.load(Ordering::Acquire)),
        "the tunnel of the tenant revoked during the outage was closed"
    );
}

/// `{"user_id": "admin", "cuenta_id": "acme"}` closes acme's admin only;
/// `{"user_id": "root"}` (no tenant) closes every tenant's root.
#[test]
fn a_user_revocation_naming_a_tenant_covers_that_tenant_only() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let config = redis_config(&redis.url());
    let gateway = start(config.clone());
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    wait_ready(&gateway);

    let mut acme_admin = Browser::connect(addr, &session_token_of("admin", "acme", "aa1"), true);
    let mut globex_admin = Browser::connect(addr, &session_token_of("admin", "globex", "ga1"), false);
    assert_eq!(redis.publish(&json!({"user_id": "admin", "cuenta_id": "acme"})), 1);
    let code = acme_admin.expect_close(Duration::from_secs(2));
    eprintln!("tenant-scoped user revocation: acme's admin read close {code:?}");
    assert_eq!(code, Some(4000), "acme's admin is closed");
    globex_admin.send(json!({"action": "ping"}));
    assert_eq!(globex_admin.next_json(Duration::from_secs(5))["type"], "pong", "globex's admin stays");
    assert_eq!(refused(addr, &session_token_of("admin", "acme", "aa2")), (403, "revoked".to_owned()));
    let other = Browser::try_connect(addr, &session_token_of("admin", "globex", "ga2"), true);
    assert!(other.is_ok(), "globex's admin is still admitted: {:?}", other.err());

    // Without cuenta_id a user revocation covers the user id in every tenant.
    let mut acme_root = Browser::connect(addr, &session_token_of("root", "acme", "ar1"), true);
    let mut globex_root = Browser::connect(addr, &session_token_of("root", "globex", "gr1"), false);
    assert_eq!(redis.publish(&json!({"user_id": "root"})), 1);
    assert_eq!(acme_root.expect_close(Duration::from_secs(2)), Some(4000));
    assert_eq!(globex_root.expect_close(Duration::from_secs(2)), Some(4000));

    // Both forms last across a restart, each with its own scope.
    drop(gateway);
    let gateway = start(config);
    let addr = gateway.local_addr();
    wait_ready(&gateway);
    assert_eq!(refused(addr, &session_token_of("admin", "acme", "aa3")), (403, "revoked".to_owned()));
    let other = Browser::try_connect(addr, &session_token_of("admin", "globex", "ga3"), true);
    assert!(other.is_ok(), "globex's admin is admitted after the restart: {:?}", other.err());
    assert_eq!(refused(addr, &session_token_of("root", "globex", "gr2")), (403, "revoked".to_owned()));
}

/// A revocation the gateway applied (its session closed with 4000) whose
/// write to the Redis record had not gone through when the gateway stopped
/// is written on the way out: the next gateway on the same Redis refuses it.
/// Here Redis holds the feed's `ZADD` (`CLIENT PAUSE WRITE`, in the same
/// transaction as the `PUBLISH`) and the record connection drops once the
/// gateway is stopping, so the write fails and is queued again just as the
/// feed thread ends — as a write queued a moment before the stop is.
#[test]
fn a_revocation_applied_just_before_the_gateway_stops_is_refused_by_the_next_gateway() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let config = redis_config(&redis.url());
    let gateway = start(config.clone());
    redis.wait_subscribed();
    wait_ready(&gateway);
    let mut victim = Browser::connect(gateway.local_addr(), &session_token_of("admin", "acme", "aa1"), true);

    assert_eq!(redis.publish_then_hold_writes(&json!({"user_id": "admin", "cuenta_id": "acme"})), 1);
    assert_eq!(victim.expect_close(Duration::from_secs(2)), Some(4000), "the revocation was applied");
    assert!(wait_until(Duration::from_secs(5), || redis.write_held("zadd")), "the feed's record write waits");
    let stopping = stop_in_background(gateway);
    let killed: i64 = redis.command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert!(killed >= 1, "the feed's record connection was dropped");
    redis.release_writes();
    let took = stopping.join().expect("the gateway stopped");
    eprintln!("gateway stopped in {took:?} with a revocation's record write pending");
    assert!(
        redis.score("tenant_users", r#"["acme","admin"]"#).is_some(),
        "the revocation applied before the stop is in the Redis record"
    );

    let gateway = start(config);
    wait_ready(&gateway);
    let after = refused(gateway.local_addr(), &session_token_of("admin", "acme", "aa2"));
    assert_eq!(after, (403, "revoked".to_owned()), "acme's admin is admitted again by the next gateway");
}

/// A record write queued a moment before the gateway stops and not yet
/// attempted is written on the way out. Here a worker stretches a revoked
/// credential's entry to the credential's `exp` (it tried to register) while
/// the feed thread waits on an earlier write that Redis holds; the gateway
/// stops, Redis lets the earlier write through, and the feed thread ends.
#[test]
fn a_record_write_queued_just_before_the_gateway_stops_is_written() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let mut config = redis_config(&redis.url());
    config.redis.revocation_ttl_seconds = 3;
    let gateway = start(config);
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    wait_ready(&gateway);
    let credential_exp = now() + 3600;
    assert_eq!(redis.publish(&json!({"session_id": "cred-late"})), 1);
    assert!(
        wait_until(Duration::from_secs(2), || redis.score("sessions", "cred-late").is_some()),
        "the gateway recorded the revocation"
    );

    assert_eq!(redis.publish_then_hold_writes(&json!({"session_id": "other"})), 1);
    assert!(wait_until(Duration::from_secs(5), || redis.write_held("zadd")), "the feed's record write waits");
    let (reply, code) = register_refused(
        addr,
        json!({"action": "register", "tenant_id": TENANT, "version": "0", "datasets": ["x"],
               "protocol": 2, "token": connector_token_jti(TENANT, SECRET, "cred-late")}),
    );
    assert_eq!((reply["code"].as_str(), code), (Some("revoked"), Some(1008)), "{reply}");
    let stopping = stop_in_background(gateway);
    redis.release_writes();
    let took = stopping.join().expect("the gateway stopped");
    eprintln!("gateway stopped in {took:?} with a stretched entry queued");
    let score = redis.score("sessions", "cred-late").unwrap_or(0);
    assert!(
        score >= credential_exp,
        "the entry stretched just before the stop lasts until the credential's exp: {score} < {credential_exp}"
    );
}

/// Stopping does not wait on Redis for long: with writes queued and Redis
/// holding every write, the gateway stops within the command timeout of the
/// write in flight plus the bounded final flush.
#[test]
fn the_gateway_stops_in_bounded_time_when_redis_holds_its_writes() {
    use volley_engine::{REDIS_COMMAND_TIMEOUT, STOP_FLUSH_TIMEOUT};
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let gateway = start(redis_config(&redis.url()));
    redis.wait_subscribed();
    wait_ready(&gateway);

    assert_eq!(redis.publish_then_hold_writes(&json!({"user_id": "held"})), 1);
    assert!(wait_until(Duration::from_secs(5), || redis.write_held("zadd")), "the feed's record write waits");
    let took = stop_in_background(gateway).join().expect("the gateway stopped");
    eprintln!("gateway stopped in {took:?} while Redis held its writes");
    let bound = REDIS_COMMAND_TIMEOUT + STOP_FLUSH_TIMEOUT + Duration::from_secs(2);
    assert!(took < bound, "stopping took {took:?}, over {bound:?}");
    redis.release_writes();
}

/// With `revocation_ttl_seconds: 3`, a connector credential that lives an
/// hour stays refused after those 3 s — on this gateway and on one started
/// later — whether its tunnel was open when it was revoked or it only tried
/// to register while revoked: the entry lasts until the credential's `exp`.
#[test]
fn a_revoked_connector_credential_stays_refused_after_the_ttl_until_its_exp() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let mut config = redis_config(&redis.url());
    config.redis.revocation_ttl_seconds = 3;
    let gateway = start(config.clone());
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    wait_ready(&gateway);
    let credential_exp = now() + 3600;
    let register = |addr: SocketAddr, jti: &str| {
        register_refused(
            addr,
            json!({"action": "register", "tenant_id": TENANT, "version": "0", "datasets": ["x"],
                   "protocol": 2, "token": connector_token_jti(TENANT, SECRET, jti)}),
        )
    };

    // In use when revoked.
    let tunnel = spawn_connector(
        addr,
        ConnectorSpec {
            token: Some(connector_token_jti(TENANT, SECRET, "cred-open")),
            ..ConnectorSpec::level2(vec![DatasetSpec::live("ticker")])
        },
    );
    wait_connectors(&gateway, 1);
    let revoked_at = now();
    assert_eq!(redis.publish(&json!({"session_id": "cred-open"})), 1);
    assert!(wait_until(Duration::from_secs(2), || !tunnel.alive.load(Ordering::Acquire)), "its tunnel closed");
    // Not in use when revoked; tries to register while revoked.
    assert_eq!(redis.publish(&json!({"session_id": "cred-idle"})), 1);
    assert!(
        wait_until(Duration::from_secs(2), || register(addr, "cred-idle").0["code"] == "revoked"),
        "cred-idle is refused while revoked"
    );

    // Past the TTL.
    assert!(wait_until(Duration::from_secs(10), || now() > revoked_at + 4));
    for jti in ["cred-open", "cred-idle"] {
        let (reply, code) = register(addr, jti);
        eprintln!("{jti} registering after revocation_ttl_seconds passed: {reply} (close {code:?})");
        assert_eq!(reply["code"], "revoked", "{jti} came back after the TTL: {reply}");
        assert_eq!(code, Some(1008));
        let score = redis.score("sessions", jti).unwrap_or(0);
        assert!(score >= credential_exp, "{jti}'s record lasts until the credential's exp: {score} < {credential_exp}");
    }

    // And on a gateway started afterwards.
    drop(gateway);
    let gateway = start(config);
    wait_ready(&gateway);
    for jti in ["cred-open", "cred-idle"] {
        let (reply, _) = register(gateway.local_addr(), jti);
        assert_eq!(reply["code"], "revoked", "{jti} after a restart: {reply}");
    }
}

/// Expired entries leave Redis: those already expired when the feed loads,
/// and those that expire while it runs (`redis.prune_interval_seconds`).
#[test]
fn expired_revocations_are_pruned_from_redis() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let sessions = format!("{CHANNEL}:sessions");
    let _: i64 = redis.command(&["ZADD", &sessions, &(now() - 10).to_string(), "stale"]);
    let _: i64 = redis.command(&["ZADD", &sessions, &(now() + 3600).to_string(), "fresh"]);
    let mut config = redis_config(&redis.url());
    // 2 s: recorded for at least 1 s whatever the clock's second boundary.
    config.redis.revocation_ttl_seconds = 2;
    config.redis.prune_interval_seconds = 1;
    let gateway = start(config);
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    wait_ready(&gateway);

    assert_eq!(redis.score("sessions", "stale"), None, "an entry expired before the load is pruned");
    assert!(redis.score("sessions", "fresh").is_some(), "a live entry stays");
    assert_eq!(refused(addr, &session_token_of("ana", TENANT, "fresh")), (403, "revoked".to_owned()));

    // Written by the gateway with the 2 s TTL, then pruned while it runs.
    assert_eq!(redis.publish(&json!({"user_id": "brief"})), 1);
    assert!(
        wait_until(Duration::from_secs(3), || redis.score("users", "brief").is_some()),
        "the gateway recorded the revocation it received"
    );
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(6), || redis.score("users", "brief").is_none()),
        "the expired user entry was pruned from Redis"
    );
    eprintln!("expired entry pruned {:?} after it was recorded", t0.elapsed());
    let shared = gateway.shared().clone();
    assert!(wait_until(Duration::from_secs(3), || shared.revocations.len() == 1), "and from memory");
    assert!(redis.score("sessions", "fresh").is_some(), "the live entry stays");
}

/// A Redis user that may subscribe and read but not `ZADD` (an ACL the
/// operator got wrong): revocations still apply in the gateway's memory, the
/// refused write is logged, and the feed stays subscribed instead of
/// reconnecting in a loop.
#[test]
fn a_refused_record_write_is_logged_and_the_feed_stays_up() {
    let Some(redis) = RedisServer::start(free_port()) else { return };
    let _: redis::Value = redis.command(&["ACL", "SETUSER", "gateway", "on", ">pw", "~*", "&*", "+@all", "-zadd"]);
    let mut config = config();
    config.redis.url = Some(format!("redis://gateway:pw@127.0.0.1:{}/", redis.port()));
    config.redis.fail_closed = true;
    let gateway = start(config);
    let addr = gateway.local_addr();
    redis.wait_subscribed();
    wait_ready(&gateway);

    let token = session_token_of("ana", TENANT, "sess-acl");
    let mut victim = Browser::connect(addr, &token, true);
    publish_and_time_close(&redis, json!({"session_id": "sess-acl"}), &mut victim);
    assert_eq!(refused(addr, &token), (403, "revoked".to_owned()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(redis.score("sessions", "sess-acl"), None, "the ACL refused the write");
    assert!(gateway.shared().revocations.connected.load(Ordering::Acquire), "the feed stayed up");
    let clients: String = redis.command(&["CLIENT", "LIST"]);
    let subscriptions =
        clients.lines().filter(|line| line.contains("user=gateway") && line.contains("cmd=subscribe")).count();
    assert_eq!(subscriptions, 1, "one subscription, no reconnect loop:\n{clients}");
    // The feed still works.
    let mut next = Browser::connect(addr, &session_token_of("ana", TENANT, "sess-acl2"), true);
    publish_and_time_close(&redis, json!({"session_id": "sess-acl2"}), &mut next);
}
