//! Protocol limits: every bound a peer's input is checked against.
//!
//! Each field carries its unit in its name and its default and reason in its
//! doc comment; `PROTOCOL.md` §7 is the same table. [`Limits`] deserializes
//! from a map of those keys, every one optional (its default in
//! [`Limits::DEFAULT`]); the engine's `limits:` section embeds it.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// RFC 6455 §5.5: control frames carry at most 125 payload bytes.
pub const CONTROL_FRAME_BYTES_MAX: usize = 125;

/// Length of the level-2 binary frame header (PROTOCOL.md §3).
pub const FRAME_HEADER_BYTES: usize = 16;

/// Longest WebSocket frame header: 2 bytes + 8-byte length + 4-byte mask.
pub const WS_HEADER_BYTES_MAX: usize = 14;

/// Bounds applied to everything a peer sends.
///
/// (De)serializes as a map with these field names as keys; a key left out
/// keeps its default. Unknown keys are ignored here (the engine embeds this
/// struct with `#[serde(flatten)]`, which needs that, and refuses them itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Limits {
    /// Bytes of an HTTP upgrade request (request line + headers). Default 8 KiB:
    /// a request line and a dozen headers; larger is an attack.
    pub handshake_bytes_max: usize,
    /// Header lines in an HTTP upgrade request. Default 32.
    pub handshake_headers_max: usize,
    /// Bytes of one text (control) message. Default 64 KiB: control messages are small JSON.
    pub control_message_bytes_max: usize,
    /// Bytes of one frame received from a browser. Default 64 KiB: browsers only send control messages.
    pub browser_frame_bytes_max: usize,
    /// Bytes of one frame received from a connector. Default 16 MiB: IPC messages
    /// are at most 1 MiB by default; 16 MiB leaves room for huge rows.
    pub connector_frame_bytes_max: usize,
    /// Bytes of one reassembled (possibly fragmented) message. Default 16 MiB.
    pub message_bytes_max: usize,
    /// Frames in one fragmented message. Default 1024: bounds work per message.
    pub fragments_max: usize,
    /// Bytes of a session or connector token. Default 4 KiB.
    pub token_bytes_max: usize,
    /// Bytes of `request_id`, `query_id` and dataset names. Default 64.
    pub id_bytes_max: usize,
    /// Clock-skew leeway for `exp`, `nbf` and `iat`, seconds. Default 30.
    pub token_leeway_seconds: u64,
}

impl Limits {
    /// The defaults of PROTOCOL.md §7.
    pub const DEFAULT: Limits = Limits {
        handshake_bytes_max: 8 * 1024,
        handshake_headers_max: 32,
        control_message_bytes_max: 64 * 1024,
        browser_frame_bytes_max: 64 * 1024,
        connector_frame_bytes_max: 16 * 1024 * 1024,
        message_bytes_max: 16 * 1024 * 1024,
        fragments_max: 1024,
        token_bytes_max: 4096,
        id_bytes_max: 64,
        token_leeway_seconds: 30,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

// A control message must fit in a browser frame, and a message may never be
// smaller than the largest frame it can be made of.
const _: () = assert!(Limits::DEFAULT.control_message_bytes_max <= Limits::DEFAULT.browser_frame_bytes_max);
const _: () = assert!(Limits::DEFAULT.connector_frame_bytes_max <= Limits::DEFAULT.message_bytes_max);
const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(8));
