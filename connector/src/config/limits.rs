//! Every limit of the connector's configuration, as a named constant with
//! its unit and reason: defaults, and the bounds a value must stay within.

use volley_protocol::Codec;

/// Most gateways `gateway.uri` may list: a cluster's nodes, not a fleet.
pub const GATEWAY_URIS_MAX: usize = 64;
/// Default number of parallel tunnel connections (seed default).
pub const PARALLEL_CONNECTIONS_DEFAULT: usize = 3;
/// Upper bound on tunnel connections: each one is a socket and a thread at the gateway.
pub const PARALLEL_CONNECTIONS_MAX: usize = 64;
/// Default target maximum size of one encoded IPC message (one WebSocket frame): 1 MiB.
pub const CHUNK_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Default target minimum size of one encoded IPC message: 64 KiB. Smaller
/// batches are concatenated up to this size so per-frame overhead stays small.
pub const CHUNK_BYTES_MIN_DEFAULT: usize = 64 * 1024;
/// Smallest accepted `max_chunk_size`: the seed used 16 KiB; below 4 KiB the
/// IPC metadata dominates every frame.
pub const CHUNK_BYTES_FLOOR: usize = 4 * 1024;
/// Largest accepted `max_chunk_size`: 16 MiB, the frame limit a gateway is
/// expected to accept; bigger frames stall every stream sharing the socket.
pub const CHUNK_BYTES_CEILING: usize = 16 * 1024 * 1024;
/// Default delay before a reconnect attempt, in seconds.
pub const RECONNECT_DELAY_SECONDS_DEFAULT: f64 = 1.0;
/// Longest accepted reconnect delay, in seconds (one hour).
pub const RECONNECT_DELAY_SECONDS_MAX: f64 = 3600.0;
/// Default rows per record batch read from a source.
pub const BATCH_ROWS_DEFAULT: usize = 8192;
/// Largest accepted `batch_rows`: bounds the memory one source batch may take.
pub const BATCH_ROWS_MAX: usize = 1_000_000;
/// Codecs offered to the gateway when `performance.compression` is absent:
/// all the connector can produce. The gateway asks for one only when its own
/// `compression.codecs` and the requesting browser allow it.
pub const COMPRESSION_CODECS_DEFAULT: [Codec; 2] = Codec::ALL;
/// Rows read to infer a CSV/NDJSON schema when none is given.
pub const INFER_SCHEMA_ROWS: usize = 1000;
/// Default poll interval of a followed CSV/NDJSON file, in milliseconds.
pub const FOLLOW_POLL_MS_DEFAULT: u64 = 250;
/// Shortest accepted poll interval (file follow and SQL polling), in milliseconds.
pub const POLL_MS_MIN: u64 = 10;
/// Longest accepted poll interval, in milliseconds (one day).
pub const POLL_MS_MAX: u64 = 86_400_000;
/// Longest accepted dataset name, in bytes.
pub const DATASET_NAME_BYTES_MAX: usize = 128;
/// Most datasets one connector may serve (bounds the `register` message).
pub const DATASETS_MAX: usize = 10_000;
/// Largest accepted config file, in bytes.
pub const CONFIG_BYTES_MAX: u64 = 4 * 1024 * 1024;
