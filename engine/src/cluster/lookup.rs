//! Which nodes serve a tenant's connectors, read from the directory: the
//! tenant's index set, then each listed lease (`keys.rs`). For the later
//! slices that route a browser's request to the node holding the connector;
//! nothing on the frame path calls it.
//!
//! An answer is cached per tenant for [`LOOKUP_CACHE_TTL`] (at most
//! [`LOOKUP_CACHE_MAX`] tenants), so a burst of requests for one tenant costs
//! one Redis read. Invalidation is by age only for now: a connector that
//! moved is seen at most [`LOOKUP_CACHE_TTL`] late. The design
//! (a control message on registration that clears the other nodes' entries)
//! comes with the peer links.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{Connection, RedisResult};

use super::keys::{tenant_index, ConnectorKeys};

/// How long a lookup's answer is reused.
pub const LOOKUP_CACHE_TTL: Duration = Duration::from_secs(1);
/// Tenants whose answers are cached at once; at the limit the expired ones
/// are dropped, and if none had expired, all of them.
pub const LOOKUP_CACHE_MAX: usize = 10_000;
/// Leases read for one tenant at most (a tenant's index set names one per connector).
pub const LOOKUP_LEASES_MAX: usize = 1024;

/// One connector lease of a tenant: who serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// The connector id (its credential's `jti`).
    pub connector: String,
    /// The node holding its lease.
    pub node: String,
    /// What other nodes dial to reach that node.
    pub advertise: String,
    /// The lease's epoch.
    pub epoch: u64,
}

/// The lookup cache and its Redis connection.
pub struct Lookup {
    url: String,
    timeout: Duration,
    connection: Mutex<Option<Connection>>,
    cache: Mutex<HashMap<String, Cached>>,
}

/// A cached answer and when it was read.
type Cached = (Instant, Arc<Vec<Serving>>);

impl Lookup {
    /// Lookups against `url`, each Redis command bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Lookup {
        Lookup { url: url.to_owned(), timeout, connection: Mutex::new(None), cache: Mutex::new(HashMap::new()) }
    }

    /// The cached answer for `tenant`, if fresh.
    pub fn cached(&self, tenant: &str) -> Option<Arc<Vec<Serving>>> {
        let cache = self.cache.lock();
        cache.get(tenant).filter(|(at, _)| at.elapsed() < LOOKUP_CACHE_TTL).map(|(_, answer)| answer.clone())
    }

    /// Reads `tenant`'s leases from Redis (blocking, bounded by the timeout)
    /// and caches the answer.
    pub fn read(&self, tenant: &str) -> RedisResult<Arc<Vec<Serving>>> {
        let answer = {
            let mut connection = self.connection.lock();
            let result = match connection.as_mut() {
                Some(c) => read_tenant(c, tenant),
                None => connect(&self.url, self.timeout).and_then(|mut c| {
                    let answer = read_tenant(&mut c, tenant);
                    *connection = Some(c);
                    answer
                }),
            };
            if result.is_err() {
                *connection = None;
            }
            Arc::new(result?)
        };
        let mut cache = self.cache.lock();
        if cache.len() >= LOOKUP_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < LOOKUP_CACHE_TTL);
            if cache.len() >= LOOKUP_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(tenant.to_owned(), (Instant::now(), answer.clone()));
        Ok(answer)
    }
}

/// A connection with read and write timeouts.
pub fn connect(url: &str, timeout: Duration) -> RedisResult<Connection> {
    let client = redis::Client::open(url)?;
    let connection = client.get_connection_with_timeout(timeout)?;
    connection.set_read_timeout(Some(timeout))?;
    connection.set_write_timeout(Some(timeout))?;
    Ok(connection)
}

/// The tenant's leases; members of its index set whose lease expired are removed.
fn read_tenant(c: &mut Connection, tenant: &str) -> RedisResult<Vec<Serving>> {
    let index = tenant_index(tenant);
    let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(&index).query(c)?;
    members.sort();
    members.truncate(LOOKUP_LEASES_MAX);
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for connector in &members {
        pipe.cmd("HMGET").arg(ConnectorKeys::lease_of(tenant, connector)).arg("node").arg("advertise").arg("epoch");
    }
    let leases: Vec<(Option<String>, Option<String>, Option<u64>)> = pipe.query(c)?;
    let mut serving = Vec::new();
    let mut expired = Vec::new();
    for (connector, lease) in members.into_iter().zip(leases) {
        match lease {
            (Some(node), advertise, Some(epoch)) => {
                serving.push(Serving { connector, node, advertise: advertise.unwrap_or_default(), epoch })
            }
            _ => expired.push(connector),
        }
    }
    if !expired.is_empty() {
        // A renewal adds its connector back, so a race here heals within a third of a lease.
        let _: i64 = redis::cmd("SREM").arg(&index).arg(&expired).query(c)?;
    }
    Ok(serving)
}
