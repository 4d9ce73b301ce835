//! A throwaway `redis-server` for the tests that need a real Redis (the
//! revocation feed, the cluster's directory): started on a free loopback
//! port with no persistence, killed on drop.
//!
//! `redis-server` must be installed (scripts/test.sh installs it): without
//! it [`RedisServer::start`] fails the test under `CI` and skips it (loudly,
//! returning `None`) elsewhere.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until;

/// Where the tests expect `redis-server`.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A redis-server child process on 127.0.0.1:`port`, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one on `port` and waits (at most 10 s) until it answers
    /// `PING`; `None` (after saying so) when redis-server is not installed
    /// outside CI.
    pub fn start(port: u16) -> Option<RedisServer> {
        if !Path::new(REDIS_SERVER).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{REDIS_SERVER} is missing: scripts/test.sh installs the redis-server package"
            );
            eprintln!("SKIPPED: {REDIS_SERVER} is not installed (apt-get install redis-server)");
            return None;
        }
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer { child, port };
        let up = wait_until(Duration::from_secs(10), || {
            server.connection().and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok()).is_some()
        });
        assert!(up, "redis-server did not answer PING on port {port}");
        Some(server)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id (to `kill -STOP` it, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A fresh connection, if it answers within 500 ms.
    pub fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url()).ok()?.get_connection_with_timeout(Duration::from_millis(500)).ok()
    }

    /// Runs one command (`["HGET", "key", "field"]`) on a fresh connection;
    /// panics, naming the command, when it fails.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self.connection().expect("connect to redis");
        let (name, rest) = args.split_first().expect("a command");
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Kills it now (a restart on the same port is [`RedisServer::start`] again).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port for redis-server, chosen *below* the kernel's ephemeral range:
/// gateways (and every other test socket) bind port 0, which the kernel takes
/// from the ephemeral range, so none of them can grab this port while Redis is
/// down between a kill and a restart.
pub fn free_redis_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|n| n.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (from, to) = (low.saturating_sub(12_000).max(1024), low.saturating_sub(1).max(1025));
    let mut rng = fastrand::Rng::new();
    for _ in 0..1000 {
        let port = rng.u16(from..to);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {from}..{to}");
}
