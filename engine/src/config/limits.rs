//! `limits:` — the protocol's [`Limits`] (PROTOCOL.md §7) and the engine's
//! own, under one YAML section. The protocol's limits are embedded, not
//! repeated: their keys, defaults and docs live in `volley_protocol::limits`
//! only, and the engine reads each of them at one path,
//! `config.limits.protocol.<key>`.
//!
//! serde's `deny_unknown_fields` does not work with `#[serde(flatten)]`,
//! and a value that serde buffers for a flattened struct is refused without
//! its key's name. So the keys that are not the engine's own go through
//! [`protocol_limits`], which refuses a key that is not a protocol limit
//! (naming it and the keys there are, read from the serialized defaults: no
//! list to keep) and checks each value on its own, naming its key.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use volley_protocol::Limits;

/// Limits of the protocol and of the engine. Every field optional in YAML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// The protocol's limits, at the top level of `limits:` (the keys of
    /// PROTOCOL.md §7: `handshake_bytes_max`, `token_bytes_max`, …), with
    /// the defaults of [`Limits::DEFAULT`].
    #[serde(flatten, deserialize_with = "protocol_limits")]
    pub protocol: Limits,
    /// Open queries and subscriptions per browser session. Default 16.
    pub pending_requests_max: usize,
    /// Concurrent streams per connector tunnel. Default 256.
    pub streams_per_connector_max: usize,
    /// Initial per-stream credit granted to a connector, bytes. Default 4 MiB.
    pub credit_bytes: u64,
    /// Heartbeat interval, seconds. Default 15.
    pub heartbeat_seconds: u64,
    /// Missed heartbeats before close 4003. Default 3.
    pub heartbeat_misses_max: u32,
    /// Open connections per gateway (all kinds). Default 200 000.
    pub connections_max: usize,
    /// Open connections per client IP address (all kinds). Default 20 000.
    pub connections_per_ip_max: usize,
    /// Open browser sessions per tenant (`cuenta_id`). Default 50 000.
    pub sessions_per_tenant_max: usize,
    /// Queued commands per connector tunnel. Default 4096.
    pub connector_queue_max: usize,
    /// Messages per worker inbox. Default 65 536.
    pub inbox_max: usize,
    /// Bytes of connector frames (and of the schema and error text of stream
    /// events) waiting in one worker's inbox for its sessions. Default
    /// 64 MiB. A connector's reader that would pass it waits until the
    /// destination worker has delivered enough (the connector's socket is not
    /// read meanwhile). At least `message_bytes_max` (itself at least
    /// `connector_frame_bytes_max`), so that one frame, or one message a
    /// connector sent in fragments, always fits.
    pub inbox_bytes_max: usize,
    /// Bytes a live stream keeps for late joiners: its schema frame and the
    /// dictionary frames since, each counted with its bookkeeping (some 120
    /// bytes). Default 4 MiB: dictionaries are small, and a late joiner's
    /// snapshot must fit its ring with room left for the frames that follow.
    /// A value over `rings.session_bytes_max` acts as that (see
    /// [`crate::config::GatewayConfig::live_retained_bytes_max`]). A live
    /// stream that would keep more ends with `retained_limit` (PROTOCOL.md §5.2).
    pub live_retained_bytes_max: usize,
    /// Bytes of a live stream's most recent record batch frames the gateway
    /// keeps, whole, so that every subscriber starts with the same recent
    /// history (PROTOCOL.md §5.2), each counted with its bookkeeping. Default
    /// 1 MiB; 0 keeps none (a joiner then gets only what follows). Counted in
    /// `rings.total_bytes_max`; what `rings.session_bytes_max` leaves beside
    /// `live_retained_bytes_max` caps it (see
    /// [`crate::config::GatewayConfig::live_window_bytes`]). Sent to the
    /// connector as `do_get`'s `history_bytes`, so that the first subscriber
    /// gets no more history than a later one.
    pub live_window_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            protocol: Limits::default(),
            pending_requests_max: 16,
            streams_per_connector_max: 256,
            credit_bytes: 4 << 20,
            heartbeat_seconds: 15,
            heartbeat_misses_max: 3,
            connections_max: 200_000,
            connections_per_ip_max: 20_000,
            sessions_per_tenant_max: 50_000,
            connector_queue_max: 4096,
            inbox_max: 65_536,
            inbox_bytes_max: 64 << 20,
            live_retained_bytes_max: 4 << 20,
            live_window_bytes: 1 << 20,
        }
    }
}

/// The keys of `limits:` that are not the engine's own, as the protocol's
/// [`Limits`]: a key that is not one of its fields is refused, and so is a
/// value of the wrong type, each error naming the key.
fn protocol_limits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Limits, D::Error> {
    let rest = Map::<String, Value>::deserialize(deserializer)?;
    let protocol_keys = keys_of(&Limits::DEFAULT);
    for (key, value) in &rest {
        if !protocol_keys.contains(key) {
            let expected = keys_of(&LimitsConfig::default()).iter().map(|key| format!("`{key}`")).collect::<Vec<_>>();
            return Err(de::Error::custom(format_args!(
                "unknown field `{key}`, expected one of {}",
                expected.join(", ")
            )));
        }
        let alone = Map::from_iter([(key.clone(), value.clone())]);
        if let Err(e) = serde_json::from_value::<Limits>(Value::Object(alone)) {
            return Err(de::Error::custom(format_args!("{key}: {e}")));
        }
    }
    serde_json::from_value(Value::Object(rest)).map_err(de::Error::custom)
}

/// The keys a value serializes to, in alphabetical order.
fn keys_of(value: &impl Serialize) -> Vec<String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;

    fn refusal(yaml: &str) -> String {
        GatewayConfig::from_yaml(yaml).expect_err(yaml).to_string()
    }

    #[test]
    fn protocol_and_engine_limits_share_the_section_and_the_protocol_defaults() {
        let config = GatewayConfig::from_yaml("limits:\n  handshake_bytes_max: 4096\n  connections_max: 5\n").unwrap();
        assert_eq!(config.limits.protocol, Limits { handshake_bytes_max: 4096, ..Limits::DEFAULT });
        assert_eq!(config.limits.connections_max, 5);
        assert_eq!(GatewayConfig::default().limits.protocol, Limits::DEFAULT);
        assert_eq!(GatewayConfig::from_yaml("limits:\n").unwrap().limits, LimitsConfig::default());
        let all = "limits:\n  token_leeway_seconds: 7\n  id_bytes_max: 32\n  pending_requests_max: 4\n";
        let config = GatewayConfig::from_yaml(all).unwrap();
        assert_eq!((config.limits.protocol.token_leeway_seconds, config.limits.protocol.id_bytes_max), (7, 32));
        assert_eq!(config.limits.pending_requests_max, 4);
    }

    #[test]
    fn a_misspelt_limit_is_refused_naming_it_and_the_keys_there_are() {
        for typo in ["handshake_byte_max", "conections_max", "frame_max", "rings"] {
            let err = refusal(&format!("limits:\n  connections_max: 5\n  {typo}: 1\n"));
            assert!(err.contains(&format!("unknown field `{typo}`")), "{err}");
            // Both kinds of key are offered, the protocol's and the engine's.
            assert!(err.contains("`handshake_bytes_max`") && err.contains("`connections_max`"), "{err}");
            assert!(err.contains("`token_leeway_seconds`") && err.contains("`live_retained_bytes_max`"), "{err}");
        }
    }

    #[test]
    fn a_limit_of_the_wrong_type_is_refused_naming_it() {
        for (yaml, key) in [
            ("limits:\n  handshake_bytes_max: big\n", "handshake_bytes_max"),
            ("limits:\n  token_leeway_seconds: -1\n", "token_leeway_seconds"),
            ("limits:\n  connections_max: big\n", "connections_max"),
        ] {
            let err = refusal(yaml);
            assert!(err.contains(key) && err.contains("invalid"), "{yaml}: {err}");
        }
    }

    #[test]
    fn the_keys_of_the_section_are_those_of_gateway_yaml() {
        // gateway.yaml's keys under `limits:`, as README.md and PROTOCOL.md §7 give them.
        let gateway_yaml = [
            "browser_frame_bytes_max",
            "connections_max",
            "connections_per_ip_max",
            "connector_frame_bytes_max",
            "connector_queue_max",
            "control_message_bytes_max",
            "credit_bytes",
            "fragments_max",
            "handshake_bytes_max",
            "handshake_headers_max",
            "heartbeat_misses_max",
            "heartbeat_seconds",
            "id_bytes_max",
            "inbox_bytes_max",
            "inbox_max",
            "live_retained_bytes_max",
            "live_window_bytes",
            "message_bytes_max",
            "pending_requests_max",
            "sessions_per_tenant_max",
            "streams_per_connector_max",
            "token_bytes_max",
            "token_leeway_seconds",
        ];
        assert_eq!(keys_of(&LimitsConfig::default()), gateway_yaml);
        for key in keys_of(&Limits::DEFAULT) {
            assert!(gateway_yaml.contains(&key.as_str()), "{key}");
        }
    }
}
