//! What `volley cluster status` shows, read from the directory in Redis:
//! the nodes (`SCAN` of the node keys) and the leases (`SCAN` of the lease
//! keys), each with its time to live. A `SCAN` covers one Redis server; on a
//! Redis Cluster it would have to run on every master (not done yet).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::time::Duration;

use redis::{Connection, RedisResult};

use super::keys::{LEASE_PATTERN, NODE_PATTERN};
use super::lookup::connect;

/// Most keys of each kind read (a status for people, not an export).
pub const STATUS_KEYS_MAX: usize = 10_000;

/// A node as its key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub node: String,
    /// What other nodes dial.
    pub advertise: String,
    /// When it started, Unix seconds.
    pub started: i64,
    /// Its last heartbeat, Unix milliseconds.
    pub heartbeat_ms: i64,
    /// Milliseconds until its key expires.
    pub ttl_ms: i64,
}

/// A connector lease as its key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Tenant.
    pub tenant: String,
    /// Connector id.
    pub connector: String,
    /// Node holding it.
    pub node: String,
    /// Its epoch.
    pub epoch: u64,
    /// The holding node's tunnels of the connector (`c-3,c-7`).
    pub tunnels: String,
    /// Milliseconds until it expires.
    pub ttl_ms: i64,
}

/// Nodes and leases, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Nodes by id.
    pub nodes: Vec<NodeStatus>,
    /// Leases by tenant, connector.
    pub leases: Vec<LeaseStatus>,
}

/// Reads the directory at `url`, each command bounded by `timeout`.
pub fn read_status(url: &str, timeout: Duration) -> RedisResult<ClusterStatus> {
    let mut c = connect(url, timeout)?;
    let mut nodes = Vec::new();
    for key in scan(&mut c, NODE_PATTERN)? {
        let (fields, ttl_ms) = hash_with_ttl(&mut c, &key)?;
        let Some(node) = fields.get("node").cloned() else { continue };
        nodes.push(NodeStatus {
            node,
            advertise: fields.get("advertise").cloned().unwrap_or_default(),
            started: number(&fields, "started"),
            heartbeat_ms: number(&fields, "heartbeat_ms"),
            ttl_ms,
        });
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let mut leases = Vec::new();
    for key in scan(&mut c, LEASE_PATTERN)? {
        let (fields, ttl_ms) = hash_with_ttl(&mut c, &key)?;
        let (Some(tenant), Some(connector), Some(node)) =
            (fields.get("tenant").cloned(), fields.get("connector").cloned(), fields.get("node").cloned())
        else {
            continue;
        };
        let epoch = u64::try_from(number(&fields, "epoch")).unwrap_or(0);
        leases.push(LeaseStatus {
            tenant,
            connector,
            node,
            epoch,
            tunnels: fields.get("tunnels").cloned().unwrap_or_default(),
            ttl_ms,
        });
    }
    leases.sort_by(|a, b| (&a.tenant, &a.connector).cmp(&(&b.tenant, &b.connector)));
    Ok(ClusterStatus { nodes, leases })
}

fn number(fields: &HashMap<String, String>, name: &str) -> i64 {
    fields.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn scan(c: &mut Connection, pattern: &str) -> RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500).query(c)?;
        keys.extend(batch);
        if next == 0 || keys.len() >= STATUS_KEYS_MAX {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    keys.truncate(STATUS_KEYS_MAX);
    Ok(keys)
}

fn hash_with_ttl(c: &mut Connection, key: &str) -> RedisResult<(HashMap<String, String>, i64)> {
    redis::pipe().cmd("HGETALL").arg(key).cmd("PTTL").arg(key).query(c)
}
