//! The lock-sharded registry: which connectors serve which tenant, and which
//! streams exist with their subscribers.
//!
//! Read-mostly; shards are `parking_lot` locks keyed by hash, and no lock is
//! ever held across an `.await` or an IO. The per-frame hot path touches no
//! lock at all: a connector keeps its own streams' `Arc<Stream>` and reads the
//! destination-worker bitmask atomically.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use atomic_waker::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use volley_protocol::Codec;

use crate::frame::Level;
use crate::share_log::{ShareBudget, ShareLog};

/// Shards per table; a power of two.
pub const SHARDS: usize = 16;
/// Most workers a gateway runs (the destination set is a 64-bit mask).
pub const WORKERS_MAX: usize = 64;
const _: () = assert!(WORKERS_MAX <= u64::BITS as usize, "one bit per worker in a u64 mask");
const _: () = assert!(SHARDS.is_power_of_two());

mod entries;
mod queue;

pub use entries::{ConnectorCmd, ConnectorHandle, Stream, StreamState, Subscriber, Unreachable};
pub use queue::Waiter;

/// What makes a stream shareable within a tenant: the dataset and the codec
/// its bytes carry (live streams; and queries, which have no parameters).
type LiveKey = (String, Option<Codec>);

/// What a query's stream is opened with.
#[derive(Debug, Clone, Copy)]
pub struct QueryParams {
    /// Credit a new stream's connector starts with (`limits.credit_bytes`).
    pub credit_bytes: u64,
    /// `limits.streams_per_connector_max`.
    pub streams_per_connector_max: usize,
    /// `queries.share_log_bytes`: a new stream's log bound; 0: not shared.
    pub share_log_bytes: usize,
}

impl QueryParams {
    /// What the configuration says.
    pub fn from_config(config: &crate::config::GatewayConfig) -> QueryParams {
        QueryParams {
            credit_bytes: config.limits.credit_bytes,
            streams_per_connector_max: config.limits.streams_per_connector_max,
            share_log_bytes: config.queries.share_log_bytes,
        }
    }
}

/// A query attached to a stream by [`Registry::open_query`] or
/// [`Registry::admit_waiting`].
#[derive(Debug, Clone)]
pub struct Opened {
    /// The stream.
    pub stream: Arc<Stream>,
    /// Its reader slot in the stream's log, when the stream is shared.
    pub reader: Option<u32>,
    /// A new stream: the caller asks its connector to start it. False: the
    /// query joined a shared stream that runs (or completed and is kept).
    pub is_new: bool,
}

#[derive(Debug, Default)]
struct TenantEntry {
    connectors: Vec<Arc<ConnectorHandle>>,
    next: usize,
    /// (dataset, codec) → live stream shared by all its subscribers.
    live: HashMap<LiveKey, Arc<Stream>>,
    /// (dataset, codec) → the newest shared query stream: identical queries
    /// join it while its log takes readers (`share_log.rs`).
    shared: HashMap<LiveKey, Arc<Stream>>,
    /// Queries waiting for a stream slot, oldest first (`queue.rs`).
    queue: std::collections::VecDeque<Waiter>,
    /// The registry's `datasets_generation` when a connector of this tenant
    /// last registered or left: what live subscriptions waiting for one of
    /// its connectors compare (`Registry::tenant_generation`).
    generation: u64,
}

impl TenantEntry {
    /// Nothing of the tenant is left: no connector, stream, waiter.
    fn is_empty(&self) -> bool {
        self.connectors.is_empty() && self.live.is_empty() && self.queue.is_empty() && self.shared.is_empty()
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No connector of the tenant is online.
    Offline,
    /// Online connectors don't list the dataset.
    NotFound,
    /// The dataset is not live (subscribe).
    NotLive,
    /// Every candidate tunnel is at its stream limit.
    Busy,
    /// No candidate tunnel offers the codec asked for (the caller tries the
    /// next one it may use; uncompressed is always offered).
    NoCodec,
}

impl OpenError {
    /// Of two reasons no codec could be served, the one to report: `Busy`
    /// (a tunnel would serve it, but has no room) over `NoCodec`.
    fn worse(self, other: OpenError) -> OpenError {
        if self == OpenError::Busy || other == OpenError::Busy {
            OpenError::Busy
        } else {
            other
        }
    }
}

type StreamShard = Mutex<HashMap<u32, Arc<Stream>>>;

/// See the module docs.
#[derive(Debug)]
pub struct Registry {
    tenants: [RwLock<HashMap<String, TenantEntry>>; SHARDS],
    streams: [StreamShard; SHARDS],
    hasher: std::collections::hash_map::RandomState,
    next_stream_id: AtomicU32,
    /// Connectors online.
    pub connectors_online: AtomicUsize,
    /// Bumped whenever a connector registers or leaves: the workers' sweeps
    /// compare it with what they last saw to tell sessions their datasets
    /// changed (`datasets_changed`, PROTOCOL.md §4.4).
    pub datasets_generation: AtomicU64,
    /// Browser sessions open.
    pub sessions_online: AtomicUsize,
    /// Bytes live streams keep for late joiners, all streams together
    /// (counted in the `rings.total_bytes_max` budget).
    pub retained_bytes: Arc<AtomicUsize>,
    /// Of those, the bytes of live streams' windows (`retained.rs`), all
    /// streams together: at most a quarter of `rings.total_bytes_max`.
    pub window_bytes: Arc<AtomicUsize>,
    /// Queries waiting in admission queues now, all tenants.
    pub queued_queries: AtomicUsize,
    /// Queries that ever waited in an admission queue.
    pub queries_queued_total: AtomicU64,
    /// Shared query logs: their gateway-wide budget and counters.
    pub share: Arc<ShareBudget>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry whose shared query logs may hold
    /// `share_total_bytes` together (`queries.share_total_bytes`).
    pub fn with_share_budget(share_total_bytes: usize) -> Registry {
        Registry { share: Arc::new(ShareBudget::new(share_total_bytes)), ..Registry::new() }
    }

    /// An empty registry (queries are not shared).
    pub fn new() -> Registry {
        Registry {
            tenants: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            streams: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: std::collections::hash_map::RandomState::new(),
            next_stream_id: AtomicU32::new(1),
            connectors_online: AtomicUsize::new(0),
            datasets_generation: AtomicU64::new(0),
            sessions_online: AtomicUsize::new(0),
            retained_bytes: Arc::new(AtomicUsize::new(0)),
            window_bytes: Arc::new(AtomicUsize::new(0)),
            queued_queries: AtomicUsize::new(0),
            queries_queued_total: AtomicU64::new(0),
            share: Arc::new(ShareBudget::new(0)),
        }
    }

    // Both shard indexes are remainders of SHARDS and both tables are arrays
    // of exactly SHARDS, so they are in bounds (the stream id is peer-chosen).
    #[allow(clippy::indexing_slicing)]
    fn tenant_shard(&self, tenant: &str) -> &RwLock<HashMap<String, TenantEntry>> {
        let hash = self.hasher.hash_one(tenant);
        &self.tenants[usize::try_from(hash % SHARDS as u64).unwrap_or(0)]
    }

    #[allow(clippy::indexing_slicing)]
    fn stream_shard(&self, id: u32) -> &Mutex<HashMap<u32, Arc<Stream>>> {
        &self.streams[(id as usize) % SHARDS]
    }

    /// Adds a connector tunnel.
    pub fn add_connector(&self, handle: Arc<ConnectorHandle>) {
        let mut shard = self.tenant_shard(&handle.tenant).write();
        let entry = shard.entry(handle.tenant.clone()).or_default();
        entry.connectors.push(handle);
        self.connectors_online.fetch_add(1, Ordering::Relaxed);
        entry.generation = self.datasets_generation.fetch_add(1, Ordering::Release) + 1;
    }

    /// The registry's `datasets_generation` when a connector of `tenant`
    /// last registered or left (0: none is known).
    pub fn tenant_generation(&self, tenant: &str) -> u64 {
        self.tenant_shard(tenant).read().get(tenant).map_or(0, |entry| entry.generation)
    }

    /// Removes a connector tunnel (and the live streams it carried from the tenant's table).
    pub fn remove_connector(&self, handle: &ConnectorHandle) {
        let mut shard = self.tenant_shard(&handle.tenant).write();
        if let Some(entry) = shard.get_mut(&handle.tenant) {
            let before = entry.connectors.len();
            entry.connectors.retain(|c| c.id != handle.id);
            if entry.connectors.len() < before {
                self.connectors_online.fetch_sub(1, Ordering::Relaxed);
                entry.generation = self.datasets_generation.fetch_add(1, Ordering::Release) + 1;
            }
            entry.live.retain(|_, stream| stream.connector.id != handle.id);
            if entry.is_empty() {
                shard.remove(&handle.tenant);
            }
        }
    }

    /// The tenant's connectors.
    pub fn connectors(&self, tenant: &str) -> Vec<Arc<ConnectorHandle>> {
        self.tenant_shard(tenant).read().get(tenant).map(|e| e.connectors.clone()).unwrap_or_default()
    }

    /// Every connector of every tenant (for shutdown and revocation).
    pub fn all_connectors(&self) -> Vec<Arc<ConnectorHandle>> {
        self.tenants
            .iter()
            .flat_map(|shard| shard.read().values().flat_map(|e| e.connectors.clone()).collect::<Vec<_>>())
            .collect()
    }

    /// Datasets the tenant's connectors serve now: (name, live), sorted, deduplicated.
    pub fn datasets(&self, tenant: &str) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        for connector in self.connectors(tenant) {
            for dataset in &connector.datasets {
                let live = connector.is_live(dataset);
                match out.iter_mut().find(|(name, _)| name == dataset) {
                    Some(entry) => entry.1 |= live,
                    None => out.push((dataset.clone(), live)),
                }
            }
        }
        out.sort();
        out
    }

    fn new_stream_id(&self) -> u32 {
        loop {
            let id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// A tunnel of the tenant that serves `dataset` (live, when asked) and
    /// offers `codec`, round robin among those below their stream limit.
    fn pick_connector(
        &self,
        entry: &mut TenantEntry,
        dataset: &str,
        live: bool,
        codec: Option<Codec>,
        streams_per_connector_max: usize,
    ) -> Result<Arc<ConnectorHandle>, OpenError> {
        if entry.connectors.is_empty() {
            return Err(OpenError::Offline);
        }
        let serving =
            |c: &&Arc<ConnectorHandle>| c.serves(dataset) && (!live || (c.is_live(dataset) && c.level == Level::Two));
        if !entry.connectors.iter().any(|c| serving(&c)) {
            let served = entry.connectors.iter().any(|c| c.serves(dataset));
            return Err(if served { OpenError::NotLive } else { OpenError::NotFound });
        }
        let candidates: Vec<&Arc<ConnectorHandle>> =
            entry.connectors.iter().filter(serving).filter(|c| c.offers(codec)).collect();
        if candidates.is_empty() {
            return Err(OpenError::NoCodec);
        }
        // Round robin: start at `next`, wrap around once.
        let start = entry.next % candidates.len();
        for (offset, candidate) in candidates.iter().cycle().skip(start).take(candidates.len()).enumerate() {
            if candidate.active_streams.load(Ordering::Relaxed) < streams_per_connector_max {
                entry.next = entry.next.wrapping_add(offset + 1);
                return Ok(Arc::clone(candidate));
            }
        }
        Err(OpenError::Busy)
    }

    /// Attaches a query to a stream: it joins the running (or kept) shared
    /// stream of an identical query if there is one that takes readers,
    /// else a new stream is created on one of the tenant's tunnels (round
    /// robin), shared when sharing is on and the gateway's log budget has
    /// room, with `subscriber` as its first reader. For a new stream the
    /// caller sends `Open`.
    ///
    /// `codecs` is what the request may get, most preferred first, ending
    /// with `None` ([`crate::config::CompressionConfig::preference`]): it
    /// joins a shared stream of the first of them that has one, or else
    /// the new stream gets the first one that a tunnel serving the dataset
    /// offers and has room for.
    pub fn open_query(
        &self,
        tenant: &str,
        dataset: &str,
        subscriber: Subscriber,
        params: QueryParams,
        codecs: &[Option<Codec>],
    ) -> Result<Opened, OpenError> {
        let now = std::time::Instant::now();
        let mut shard = self.tenant_shard(tenant).write();
        let entry = shard.get_mut(tenant).ok_or(OpenError::Offline)?;
        if let Some(joined) = self.join_shared(entry, dataset, codecs, &subscriber, now) {
            return Ok(joined);
        }
        let mut last = OpenError::NoCodec;
        let mut picked = None;
        for codec in codecs {
            match self.pick_connector(entry, dataset, false, *codec, params.streams_per_connector_max) {
                Ok(connector) => {
                    picked = Some((connector, *codec));
                    break;
                }
                Err(e @ (OpenError::NoCodec | OpenError::Busy)) => last = last.worse(e),
                Err(e) => return Err(e),
            }
        }
        let (connector, codec) = picked.ok_or(last)?;
        // Queries already wait for this dataset: this one waits behind them.
        if Registry::has_waiters(entry, dataset) {
            return Err(OpenError::Busy);
        }
        Ok(self.start_query(entry, tenant, dataset, codec, connector, subscriber, params, now))
    }

    /// Joins `subscriber` to a shared stream of `dataset` with one of
    /// `codecs` (the first that has one taking readers).
    fn join_shared(
        &self,
        entry: &TenantEntry,
        dataset: &str,
        codecs: &[Option<Codec>],
        subscriber: &Subscriber,
        now: std::time::Instant,
    ) -> Option<Opened> {
        if entry.shared.is_empty() {
            return None;
        }
        codecs.iter().find_map(|codec| {
            let stream = entry.shared.get(&(dataset.to_owned(), *codec))?;
            let (reader, reused) = stream.join_shared(subscriber.clone(), now)?;
            self.share.joins.fetch_add(1, Ordering::Relaxed);
            if reused {
                self.share.reuses.fetch_add(1, Ordering::Relaxed);
            }
            Some(Opened { stream: stream.clone(), reader: Some(reader), is_new: false })
        })
    }

    /// A new query stream on `connector` with `subscriber` as its first
    /// reader; shared (with a log) when sharing is on and the budget has room.
    #[allow(clippy::too_many_arguments)] // two call sites, all of it needed
    fn start_query(
        &self,
        entry: &mut TenantEntry,
        tenant: &str,
        dataset: &str,
        codec: Option<Codec>,
        connector: Arc<ConnectorHandle>,
        subscriber: Subscriber,
        params: QueryParams,
        now: std::time::Instant,
    ) -> Opened {
        let log = (params.share_log_bytes > 0)
            .then(|| ShareLog::new(params.share_log_bytes, params.credit_bytes, self.share.clone()))
            .flatten();
        let shared = log.is_some();
        let stream = self.new_stream(tenant, dataset, false, codec, connector, params.credit_bytes, log);
        if !shared {
            let attached = stream.attach(subscriber);
            debug_assert!(attached, "a new stream has not ended");
            return Opened { stream, reader: None, is_new: true };
        }
        let reader = stream.join_shared(subscriber, now).map(|(slot, _)| slot);
        debug_assert!(reader.is_some(), "a new shared stream takes readers");
        entry.shared.insert((dataset.to_owned(), codec), stream.clone());
        Opened { stream, reader, is_new: true }
    }

    /// Attaches `subscriber` to the tenant's live stream of `dataset` with
    /// the first codec of `codecs` (as in [`Registry::open_query`]) for which
    /// one runs or a tunnel can start one, creating it in the second case.
    /// Returns the stream and whether it is new (the caller then sends `Open`).
    pub fn open_live(
        &self,
        tenant: &str,
        dataset: &str,
        subscriber: Subscriber,
        streams_per_connector_max: usize,
        codecs: &[Option<Codec>],
    ) -> Result<(Arc<Stream>, bool), OpenError> {
        let mut shard = self.tenant_shard(tenant).write();
        let entry = shard.get_mut(tenant).ok_or(OpenError::Offline)?;
        let mut last = OpenError::NoCodec;
        for codec in codecs {
            let key: LiveKey = (dataset.to_owned(), *codec);
            // A stream that is ending (not yet out of the table) takes no one.
            if let Some(stream) = entry.live.get(&key) {
                if stream.attach(subscriber.clone()) {
                    return Ok((stream.clone(), false));
                }
            }
            let connector = match self.pick_connector(entry, dataset, true, *codec, streams_per_connector_max) {
                Ok(connector) => connector,
                Err(e @ (OpenError::NoCodec | OpenError::Busy)) => {
                    last = last.worse(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let stream = self.new_stream(tenant, dataset, true, *codec, connector, u64::MAX / 4, None);
            let attached = stream.attach(subscriber);
            debug_assert!(attached, "a new stream has not ended");
            entry.live.insert(key, stream.clone());
            return Ok((stream, true));
        }
        Err(last)
    }

    #[allow(clippy::too_many_arguments)] // each is a field of the new stream
    fn new_stream(
        &self,
        tenant: &str,
        dataset: &str,
        live: bool,
        compression: Option<Codec>,
        connector: Arc<ConnectorHandle>,
        credit_bytes: u64,
        share: Option<ShareLog>,
    ) -> Arc<Stream> {
        let id = self.new_stream_id();
        let mut state = StreamState::new(self.retained_bytes.clone(), self.window_bytes.clone());
        let shared = share.is_some();
        state.share = share;
        connector.active_streams.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(Stream {
            id,
            tenant: tenant.to_owned(),
            dataset: dataset.to_owned(),
            live,
            compression,
            connector,
            shared,
            share_version: AtomicU64::new(0),
            share_chunk: Mutex::new(bytes::BytesMut::new()),
            dest_workers: AtomicU64::new(0),
            credit_available: AtomicI64::new(i64::try_from(credit_bytes).unwrap_or(i64::MAX)),
            credit_waker: AtomicWaker::new(),
            state: Mutex::new(state),
        });
        self.stream_shard(id).lock().insert(id, stream.clone());
        stream
    }

    /// Looks a stream up by id.
    pub fn stream(&self, id: u32) -> Option<Arc<Stream>> {
        self.stream_shard(id).lock().get(&id).cloned()
    }

    /// Forgets a stream: marks it ended, drops the frames it kept for late
    /// joiners, removes it from the tables. Returns the workers its
    /// subscribers are on, read under the lock that marked it ended: no
    /// subscriber attaches after that ([`Stream::attach`]), so routing the
    /// end to these reaches every one.
    pub fn end_stream(&self, stream: &Stream) -> u64 {
        let mask;
        let kept;
        {
            let mut state = stream.state.lock();
            if state.ended {
                return stream.destinations();
            }
            state.ended = true;
            mask = stream.destinations();
            // A shared query's log stays while readers read it, or while it
            // is kept for reuse; otherwise it goes now.
            kept = state.share.as_mut().is_some_and(|log| {
                let kept = log.kept_until().is_some();
                if !kept && log.readers() == 0 {
                    log.release();
                }
                kept
            });
            state.retained.clear();
            // Nobody attaches to an ended stream, but a live subscription
            // waiting for a connector still holds it (`OpenQuery::waiting`):
            // keep nothing a connector sent in it.
            state.schema_b64 = None;
            state.subscribers = Vec::new();
        }
        stream.connector.active_streams.fetch_sub(1, Ordering::Relaxed);
        self.stream_shard(stream.id).lock().remove(&stream.id);
        if stream.live || (stream.shared && !kept) {
            let mut shard = self.tenant_shard(&stream.tenant).write();
            if let Some(entry) = shard.get_mut(&stream.tenant) {
                let key: LiveKey = (stream.dataset.clone(), stream.compression);
                let table = if stream.live { &mut entry.live } else { &mut entry.shared };
                if table.get(&key).is_some_and(|s| s.id == stream.id) {
                    table.remove(&key);
                }
                // Its connectors left before it ended: nothing keeps the tenant's entry.
                if entry.is_empty() {
                    shard.remove(&stream.tenant);
                }
            }
        }
        mask
    }

    /// Forgets completed shared queries kept for `queries.reuse_seconds`
    /// whose time is over (the sweep calls it): later identical queries ask
    /// the connector again. Returns how many it forgot.
    pub fn expire_kept(&self, now: std::time::Instant) -> usize {
        let mut forgotten = 0;
        for shard in &self.tenants {
            if shard.read().values().all(|entry| entry.shared.is_empty()) {
                continue;
            }
            let mut shard = shard.write();
            for entry in shard.values_mut() {
                entry.shared.retain(|_, stream| {
                    let mut state = stream.state.lock();
                    if !state.ended {
                        return true;
                    }
                    let Some(log) = state.share.as_mut() else { return false };
                    let keep = log.kept_until().is_some_and(|until| now < until);
                    if !keep {
                        log.expire(now);
                        forgotten += 1;
                    }
                    keep
                });
            }
            shard.retain(|_, entry| !entry.is_empty());
        }
        forgotten
    }
}
