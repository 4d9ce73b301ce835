//! The directory's key names in Redis. Every key of a tenant carries the
//! tenant as a hash tag (`{…}`), so that all of them live in one slot and a
//! Redis Cluster can hold them (and run one script over them); a node's key
//! carries its node id the same way.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `volley:node:{<node>}` | hash | `node`, `instance`, `advertise`, `started` (Unix s), `heartbeat_ms` (Unix ms); TTL one lease |
//! | `volley:{<tenant>}:lease:<connector>` | hash | `tenant`, `connector`, `node`, `instance` (the process the scripts compare), `epoch`, `advertise`, `tunnels`, `since` (Unix s); TTL one lease |
//! | `volley:{<tenant>}:epoch:<connector>` | string | the last epoch given out (`INCR` per registration); TTL [`EPOCH_TTL_SECONDS`] |
//! | `volley:{<tenant>}:connectors` | set | connector ids with a lease (may name expired ones; lookups drop those) |
//!
//! Ids are written escaped ([`escape`]): every byte outside
//! `A-Z a-z 0-9 - _ . ~ @ + =` becomes `%XX`, so an id can hold neither a
//! brace (which would move the hash tag) nor a `:` (which would make two
//! keys' names meet) nor a glob character (`SCAN MATCH` stays literal).
//! The unescaped ids are in the hashes' fields.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// Prefix of every directory key.
pub const PREFIX: &str = "volley:";
/// How long an epoch counter outlives its last registration or renewal:
/// long past any pause a node could wake up from, so a stale node always
/// finds the counter that fences it.
pub const EPOCH_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// `SCAN MATCH` pattern of the node keys.
pub const NODE_PATTERN: &str = "volley:node:*";
/// `SCAN MATCH` pattern of the lease keys.
pub const LEASE_PATTERN: &str = "volley:{*}:lease:*";

/// `id` escaped for a key name (see the module doc).
pub fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'@' | b'+' | b'=') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A node's key: `volley:node:{<node>}`.
pub fn node(node_id: &str) -> String {
    format!("{PREFIX}node:{{{}}}", escape(node_id))
}

/// The keys of one connector of one tenant (all in the tenant's slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorKeys {
    /// `volley:{<tenant>}:lease:<connector>`.
    pub lease: String,
    /// `volley:{<tenant>}:epoch:<connector>`.
    pub epoch: String,
    /// `volley:{<tenant>}:connectors`.
    pub index: String,
}

impl ConnectorKeys {
    /// The keys of `connector` of `tenant`.
    pub fn new(tenant: &str, connector: &str) -> ConnectorKeys {
        let (tenant, connector) = (escape(tenant), escape(connector));
        ConnectorKeys {
            lease: format!("{PREFIX}{{{tenant}}}:lease:{connector}"),
            epoch: format!("{PREFIX}{{{tenant}}}:epoch:{connector}"),
            index: index(&tenant),
        }
    }

    /// The key of one of `tenant`'s leases, by its escaped connector id (a
    /// member of the tenant's index set holds the unescaped id).
    pub fn lease_of(tenant: &str, connector: &str) -> String {
        ConnectorKeys::new(tenant, connector).lease
    }
}

/// A tenant's index set, from the tenant's escaped id.
fn index(escaped_tenant: &str) -> String {
    format!("{PREFIX}{{{escaped_tenant}}}:connectors")
}

/// The set of `tenant`'s connectors with a lease.
pub fn tenant_index(tenant: &str) -> String {
    index(&escape(tenant))
}

/// The hash tag of a key as Redis Cluster reads it: the text between the
/// first `{` and the next `}`, when not empty; else the whole key.
pub fn hash_tag(key: &str) -> &str {
    let Some((_, after)) = key.split_once('{') else { return key };
    match after.split_once('}') {
        Some((tag, _)) if !tag.is_empty() => tag,
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_keys_share_its_hash_tag() {
        let keys = ConnectorKeys::new("acme", "jti-1");
        assert_eq!(keys.lease, "volley:{acme}:lease:jti-1");
        assert_eq!(keys.epoch, "volley:{acme}:epoch:jti-1");
        assert_eq!(keys.index, "volley:{acme}:connectors");
        assert_eq!(tenant_index("acme"), keys.index);
        for key in [&keys.lease, &keys.epoch, &keys.index] {
            assert_eq!(hash_tag(key), "acme", "{key}");
        }
        assert_eq!(node("gw-1"), "volley:node:{gw-1}");
        assert_eq!(hash_tag(&node("gw-1")), "gw-1");
    }

    #[test]
    fn odd_ids_cannot_move_the_tag_or_meet_another_key() {
        // A brace in the tenant would end the tag early; a colon would let
        // ("a:lease", "b") and ("a", "lease:b") name the same key.
        let keys = ConnectorKeys::new("we}ird{", "x:y*");
        assert_eq!(keys.lease, "volley:{we%7Dird%7B}:lease:x%3Ay%2A");
        assert_eq!(hash_tag(&keys.lease), "we%7Dird%7B");
        assert_eq!(hash_tag(&keys.index), hash_tag(&keys.epoch));
        assert_ne!(ConnectorKeys::new("a:lease", "b").lease, ConnectorKeys::new("a", "lease:b").lease);
        assert_eq!(escape("ñ %"), "%C3%B1%20%25");
        assert_eq!(escape(""), "");
        assert_eq!(hash_tag("volley:{}:x"), "volley:{}:x", "an empty tag is no tag");
        assert_eq!(hash_tag("plain"), "plain");
    }
}
