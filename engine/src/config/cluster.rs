//! `cluster:` — this gateway as one node of several that share one Redis
//! (`redis.url`) as their directory (ARCHITECTURE.md, "Cluster";
//! docs/decisions/2026-12-07-cluster-directory.md). Absent: a single
//! gateway, exactly as without clustering.
//!
//! The peer secret is never printed: [`PeerSecret`]'s `Debug` hides it, and
//! error messages name the key, never the value.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Shortest `cluster.peer_secret` accepted, bytes.
pub const PEER_SECRET_BYTES_MIN: usize = 32;
/// Longest `cluster.node_id`, bytes.
pub const NODE_ID_BYTES_MAX: usize = 64;
/// Shortest and longest `cluster.lease_seconds`.
pub const LEASE_SECONDS_RANGE: (u64, u64) = (2, 3600);

/// The shared secret of the nodes' peer links. Its `Debug` prints its
/// length only, so a configuration logged with `{:?}` does not leak it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct PeerSecret(String);

impl PeerSecret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerSecret(<{} bytes, hidden>)", self.0.len())
    }
}

/// `cluster:` as written in gateway.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster: letters, digits, `.`, `_`,
    /// `-`, at most [`NODE_ID_BYTES_MAX`] bytes. Default: the host name.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Where the gateway-to-gateway links will listen (`ADDRESS:PORT`).
    /// Not bound yet: the peer links are a later part of the cluster work;
    /// this node publishes [`ClusterConfig::advertise`] in the directory.
    pub peer_listen: String,
    /// What the other nodes dial to reach this one (`HOST:PORT`). Default:
    /// `peer_listen`, which must then name an address others can dial (not
    /// `0.0.0.0` or `[::]`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The secret every node of the cluster shares, at least
    /// [`PEER_SECRET_BYTES_MIN`] bytes; or `peer_secret_file`.
    #[serde(default)]
    pub peer_secret: Option<PeerSecret>,
    /// A file holding the secret (one line; surrounding whitespace is ignored).
    #[serde(default)]
    pub peer_secret_file: Option<PathBuf>,
    /// How long a connector registration (and this node's entry) lives in
    /// the directory without renewal, seconds; renewed every third of it.
    /// Default 10.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
}

fn default_lease_seconds() -> u64 {
    10
}

/// `cluster:` after validation: every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// This node's id.
    pub node_id: String,
    /// What the other nodes dial.
    pub advertise: String,
    /// Lease length, seconds.
    pub lease_seconds: u64,
}

impl ClusterConfig {
    /// Checks the section; `redis_url` is `redis.url`, which a cluster needs.
    pub(super) fn validate(&self, redis_url: Option<&str>) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| Err(ConfigError::Invalid { key, message });
        if redis_url.is_none() {
            return invalid(
                "cluster",
                "needs redis.url: the nodes of a cluster find each other and their connectors in Redis; add \
                 `redis:\\n  url: redis://HOST:6379/` (the same on every node)"
                    .into(),
            );
        }
        self.identity()?;
        self.peer_secret()?;
        let (min, max) = LEASE_SECONDS_RANGE;
        if !(min..=max).contains(&self.lease_seconds) {
            return invalid(
                "cluster.lease_seconds",
                format!(
                    "is {}; it must be between {min} and {max} (10 is a good value: a lost node's connectors are \
                     served elsewhere within about that long)",
                    self.lease_seconds
                ),
            );
        }
        Ok(())
    }

    /// The node id, the advertised address and the lease, defaults resolved.
    pub fn identity(&self) -> Result<ClusterIdentity, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => host_name().ok_or_else(|| {
                invalid(
                    "cluster.node_id",
                    "is not set and the host name could not be read; set cluster.node_id to a name unique in the \
                     cluster"
                        .into(),
                )
            })?,
        };
        check_node_id(&node_id).map_err(|why| invalid("cluster.node_id", why))?;
        let peer_listen: SocketAddr = self.peer_listen.parse().map_err(|_| {
            invalid(
                "cluster.peer_listen",
                format!("{:?} is not ADDRESS:PORT; write e.g. 0.0.0.0:7071", self.peer_listen),
            )
        })?;
        let advertise = match &self.advertise {
            Some(advertise) => {
                check_host_port(advertise).map_err(|why| invalid("cluster.advertise", why))?;
                advertise.clone()
            }
            None if peer_listen.ip().is_unspecified() => {
                return Err(invalid(
                    "cluster.advertise",
                    format!(
                        "is not set and peer_listen ({peer_listen}) is not an address other nodes can dial; set \
                         cluster.advertise to this node's HOST:PORT as the other nodes reach it, e.g. 10.0.3.7:{}",
                        peer_listen.port()
                    ),
                ))
            }
            None => peer_listen.to_string(),
        };
        Ok(ClusterIdentity { node_id, advertise, lease_seconds: self.lease_seconds })
    }

    /// The peer secret: `peer_secret`, or the contents of `peer_secret_file`.
    /// Errors name the key and never the value.
    pub fn peer_secret(&self) -> Result<PeerSecret, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
        let (secret, key) = match (&self.peer_secret, &self.peer_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "cluster.peer_secret",
                    "and cluster.peer_secret_file are both set; keep one".into(),
                ))
            }
            (Some(secret), None) => (secret.clone(), "cluster.peer_secret"),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "cluster.peer_secret_file",
                        format!(
                            "cannot read {}: {e}; check the path and that the gateway's user may read it",
                            path.display()
                        ),
                    )
                })?;
                (PeerSecret(text.trim().to_owned()), "cluster.peer_secret_file")
            }
            (None, None) => {
                return Err(invalid(
                    "cluster.peer_secret",
                    format!(
                        "is required with cluster: (or cluster.peer_secret_file): the same secret of at least \
                         {PEER_SECRET_BYTES_MIN} bytes on every node, e.g. from `openssl rand -base64 48`"
                    ),
                ))
            }
        };
        if secret.0.len() < PEER_SECRET_BYTES_MIN {
            return Err(invalid(
                key,
                format!(
                    "is {} bytes long; it must be at least {PEER_SECRET_BYTES_MIN} (generate one with `openssl rand \
                     -base64 48` and give every node the same)",
                    secret.0.len()
                ),
            ));
        }
        Ok(secret)
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
fn host_name() -> Option<String> {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_proc
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > NODE_ID_BYTES_MAX {
        return Err(format!("must be 1 to {NODE_ID_BYTES_MAX} bytes long"));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{id:?} contains {bad:?}; use letters, digits, '.', '_' and '-' only"));
    }
    Ok(())
}

fn check_host_port(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not HOST:PORT; write e.g. 10.0.3.7:7071 or gw-1.internal:7071");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(bad());
    }
    if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return Err(format!("{text:?} is not an address other nodes can dial; give this node's own address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-ok";

    fn yaml(cluster: &str) -> String {
        format!("redis:\n  url: redis://127.0.0.1:6379/\ncluster:\n{cluster}")
    }

    fn refusal(text: &str) -> String {
        GatewayConfig::from_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_resolve_and_the_secret_never_prints() {
        let config = GatewayConfig::from_yaml(&yaml(&format!(
            "  node_id: gw-1\n  peer_listen: 10.0.3.7:7071\n  peer_secret: {SECRET}\n"
        )))
        .unwrap();
        let cluster = config.cluster.as_ref().unwrap();
        let identity = cluster.identity().unwrap();
        assert_eq!(identity.node_id, "gw-1");
        assert_eq!(identity.advertise, "10.0.3.7:7071", "advertise defaults to peer_listen");
        assert_eq!(identity.lease_seconds, 10);
        assert_eq!(cluster.peer_secret().unwrap().expose(), SECRET.as_bytes());
        let printed = format!("{config:?}");
        assert!(!printed.contains(SECRET), "{printed}");
        // Without cluster: nothing changes.
        assert_eq!(GatewayConfig::from_yaml("http_port: 9000\n").unwrap().cluster, None);
    }

    #[test]
    fn the_host_name_is_the_default_node_id() {
        let config = GatewayConfig::from_yaml(&yaml(&format!(
            "  peer_listen: 0.0.0.0:7071\n  advertise: gw.internal:7071\n  peer_secret: {SECRET}\n  lease_seconds: 2\n"
        )))
        .unwrap();
        let identity = config.cluster.unwrap().identity().unwrap();
        assert!(!identity.node_id.is_empty());
        assert_eq!((identity.advertise.as_str(), identity.lease_seconds), ("gw.internal:7071", 2));
    }

    #[test]
    fn the_secret_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("volley-peer-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let config = GatewayConfig::from_yaml(&yaml(&format!(
            "  node_id: a\n  peer_listen: 127.0.0.1:7071\n  peer_secret_file: {}\n",
            path.display()
        )))
        .unwrap();
        assert_eq!(config.cluster.unwrap().peer_secret().unwrap().expose(), SECRET.as_bytes());
        std::fs::write(&path, "short\n").unwrap();
        let err = refusal(&yaml(&format!(
            "  node_id: a\n  peer_listen: 127.0.0.1:7071\n  peer_secret_file: {}\n",
            path.display()
        )));
        assert!(err.contains("cluster.peer_secret_file") && err.contains("at least 32"), "{err}");
        assert!(!err.contains("short"), "the value is never shown: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mistakes_are_refused_naming_the_key_and_the_fix() {
        let listen = "  node_id: a\n  peer_listen: 127.0.0.1:7071\n";
        for (text, key, fix) in [
            (yaml(listen), "cluster.peer_secret", "openssl rand"),
            (yaml(&format!("{listen}  peer_secret: tooshort\n")), "cluster.peer_secret", "at least 32"),
            (format!("cluster:\n{listen}  peer_secret: {SECRET}\n"), "cluster", "redis.url"),
            (
                yaml(&format!("  node_id: a\n  peer_listen: 0.0.0.0:7071\n  peer_secret: {SECRET}\n")),
                "cluster.advertise",
                "HOST:PORT",
            ),
            (
                yaml(&format!("  node_id: 'a b'\n  peer_listen: 127.0.0.1:1\n  peer_secret: {SECRET}\n")),
                "cluster.node_id",
                "letters",
            ),
            (
                yaml(&format!("  node_id: a\n  peer_listen: nowhere\n  peer_secret: {SECRET}\n")),
                "cluster.peer_listen",
                "ADDRESS:PORT",
            ),
            (
                yaml(&format!("{listen}  advertise: nohost\n  peer_secret: {SECRET}\n")),
                "cluster.advertise",
                "HOST:PORT",
            ),
            (
                yaml(&format!("{listen}  peer_secret: {SECRET}\n  lease_seconds: 1\n")),
                "cluster.lease_seconds",
                "between",
            ),
            (
                yaml(&format!("{listen}  peer_secret: {SECRET}\n  peer_secret_file: /x\n")),
                "cluster.peer_secret",
                "keep one",
            ),
            (yaml(&format!("{listen}  peer_secret: {SECRET}\n  lease: 3\n")), "lease", "lease"),
        ] {
            let err = refusal(&text);
            assert!(err.contains(key) && err.contains(fix), "{text}: {err}");
            assert!(!err.contains(SECRET), "{err}");
        }
    }
}
