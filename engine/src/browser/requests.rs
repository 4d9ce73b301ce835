//! A session's requests: `list`, `query`, `subscribe`, `unsubscribe`,
//! `cancel`, `ping` — parsed, answered, and turned into subscriptions
//! through the registry.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_protocol::message::{BrowserEvent, BrowserRequest, DatasetInfo, ErrorCode};
use volley_protocol::Codec;

use crate::conn::writev::OutItem;
use crate::frame::Level;
use crate::registry::{OpenError, Opened, QueryParams, Stream, Subscriber, Unreachable};
use crate::session::{BrowserSession, OpenQuery, QueryLink};
use crate::worker::{LocalSub, Worker};

pub(super) fn handle_request(worker: &Rc<Worker>, session: &Rc<BrowserSession>, text: &str) {
    let shared = &worker.shared;
    let request = match BrowserRequest::parse(text, shared.config.limits.protocol.id_bytes_max) {
        Ok(request) => request,
        Err(e) => {
            session.error(e.code, e.message, None);
            return;
        }
    };
    match request {
        BrowserRequest::Ping => session.send(&BrowserEvent::Pong),
        BrowserRequest::List => {
            let online = shared.registry.datasets(&session.claims.cuenta_id);
            let datasets = readable_datasets(&online, session);
            session.datasets_sent.set(digest(&datasets));
            session.send(&BrowserEvent::Datasets { datasets });
        }
        BrowserRequest::Query { dataset, query_id, compression } => {
            open(worker, session, dataset, query_id, compression.as_deref(), false)
        }
        BrowserRequest::Subscribe { dataset, query_id, compression } => {
            open(worker, session, dataset, query_id, compression.as_deref(), true)
        }
        BrowserRequest::Unsubscribe { query_id } => close_query(worker, session, query_id, false),
        BrowserRequest::Cancel { query_id } => close_query(worker, session, query_id, true),
    }
}

/// `unsubscribe` or `cancel` (`is_cancel`) of one of the session's queries
/// or subscriptions: detaches it (which cancels the upstream stream when no
/// one else reads it) and answers `unsubscribed`, or, for a `cancel` of a
/// query, its `stream_end` with error `cancelled`.
fn close_query(worker: &Rc<Worker>, session: &Rc<BrowserSession>, query_id: String, is_cancel: bool) {
    let Some(query) = session.take_query(&query_id) else {
        // A query still waiting for a stream slot leaves the queue.
        if worker.unqueue(session.id, &query_id) {
            if is_cancel {
                session.send(&BrowserEvent::StreamEnd {
                    query_id: query_id.clone(),
                    request_id: query_id,
                    stream_id: None,
                    total_bytes: 0,
                    error: Some(volley_protocol::ErrorBody::new(ErrorCode::Cancelled, "cancelled by the client")),
                });
            } else {
                session.send(&BrowserEvent::Unsubscribed { query_id });
            }
            return;
        }
        session.error(ErrorCode::UnknownQuery, format!("no open query {query_id:?}"), Some(query_id));
        return;
    };
    // A waiting subscription's stream already ended: nothing to detach.
    let QueryLink::Attached(stream) = query.link else {
        session.send(&BrowserEvent::Unsubscribed { query_id });
        return;
    };
    worker.detach(&stream, session.id, &query_id);
    if is_cancel && !stream.live {
        session.send(&BrowserEvent::StreamEnd {
            query_id: query_id.clone(),
            request_id: query_id,
            stream_id: (session.level == Level::Two).then_some(stream.id),
            total_bytes: 0,
            error: Some(volley_protocol::ErrorBody::new(ErrorCode::Cancelled, "cancelled by the client")),
        });
    } else {
        session.send(&BrowserEvent::Unsubscribed { query_id });
    }
}

/// Opens a query or subscription; `compression` is the codecs the client
/// said it decodes (`None`: it said nothing).
fn open(
    worker: &Rc<Worker>,
    session: &Rc<BrowserSession>,
    dataset: String,
    query_id: Option<String>,
    compression: Option<&[String]>,
    live: bool,
) {
    let shared = &worker.shared;
    let config = &shared.config;
    let query_id = query_id.unwrap_or_else(|| {
        let n = session.next_query.get();
        session.next_query.set(n + 1);
        format!("q{n}")
    });
    if session.has_query(&query_id) || worker.is_queued(session.id, &query_id) {
        session.error(ErrorCode::BadRequest, format!("query id {query_id:?} is already open"), Some(query_id));
        return;
    }
    let queued = worker.queued_count(session.id);
    if session.level == Level::One && (!session.queries.borrow().is_empty() || queued > 0) {
        session.error(ErrorCode::Busy, "a level-1 socket runs one query at a time", Some(query_id));
        return;
    }
    if session.queries.borrow().len() + queued >= config.limits.pending_requests_max {
        session.error(
            ErrorCode::TooManyRequests,
            format!("at most {} open queries per session", config.limits.pending_requests_max),
            Some(query_id),
        );
        return;
    }
    if !session.claims.allows(&dataset) {
        session.error(ErrorCode::DatasetForbidden, format!("your session may not read {dataset:?}"), Some(query_id));
        return;
    }
    let codecs = config.compression.preference(compression);
    let (stream, reader) = match attach(worker, session, &query_id, &dataset, live, &codecs) {
        Ok(attached) => attached,
        // Every tunnel serving it is at its stream limit: the query waits
        // for a slot in its tenant's queue (§5.1).
        Err(Refused::Open(OpenError::Busy)) if !live => {
            super::queue::enqueue(worker, session, query_id, dataset, codecs);
            return;
        }
        Err(refused) => {
            let (code, message) = refused.explain(&session.claims.cuenta_id, &dataset);
            session.error(code, message, Some(query_id));
            return;
        }
    };
    let deadline = (!live).then(|| Instant::now() + Duration::from_secs(config.timeouts.query_seconds));
    session.queries.borrow_mut().push(OpenQuery {
        id: query_id.clone(),
        link: QueryLink::Attached(stream.clone()),
        credit_owed: 0,
        reader,
        deadline,
        attached: None,
        codecs: if live { codecs } else { Vec::new() },
    });
    // A shared query's reader takes what its stream's log holds already
    // (all of it, for a completed stream kept for reuse).
    if let Some(slot) = reader {
        worker.pull_reader(session, &stream, slot, &query_id);
    }
}

/// Why [`attach`] attached nothing.
pub(super) enum Refused {
    /// The registry found no stream to join or start.
    Open(OpenError),
    /// A late joiner's snapshot (the kept schema, dictionaries and window)
    /// does not fit its ring or the gateway's budget.
    Snapshot {
        /// The snapshot's bytes.
        bytes: usize,
        /// What the session's ring holds now.
        queued: usize,
        /// The ring's budget.
        budget: usize,
    },
    /// The connector picked could not be asked.
    Unreachable(Unreachable),
}

impl Refused {
    /// The error code and message a browser gets for it.
    pub(super) fn explain(&self, tenant: &str, dataset: &str) -> (ErrorCode, String) {
        match self {
            Refused::Open(OpenError::Offline) => {
                (ErrorCode::ConnectorOffline, format!("no connector of tenant {tenant:?} is online"))
            }
            Refused::Open(OpenError::NotFound) => {
                (ErrorCode::DatasetNotFound, format!("no online connector serves {dataset:?}"))
            }
            Refused::Open(OpenError::NotLive) => (ErrorCode::NotLive, format!("{dataset:?} is not a live dataset")),
            Refused::Open(OpenError::Busy) => {
                (ErrorCode::TooManyRequests, "every connector of the tenant is at its stream limit".to_owned())
            }
            // Unreachable: `preference` always ends with `None`, which every tunnel offers.
            Refused::Open(OpenError::NoCodec) => {
                (ErrorCode::Internal, format!("no connector serving {dataset:?} offers an acceptable compression"))
            }
            // The snapshot counts in this session's ring and in the gateway's
            // budget like any frame; without room for it the subscriber could
            // not decode what follows, so it is refused instead.
            Refused::Snapshot { bytes, queued, budget } => (
                ErrorCode::RetainedLimit,
                format!(
                    "the live stream's schema, dictionaries and recent batches ({bytes} bytes) do not fit this \
                     session's queue ({queued} of {budget} bytes taken) or the gateway's budget: read what is \
                     queued, then subscribe again"
                ),
            ),
            Refused::Unreachable(why) => why.explain(dataset),
        }
    }
}

/// Attaches the session's query or subscription `query_id` to a stream of
/// `dataset` through the registry — a new one (whose connector is sent
/// `Open`), or, for a subscription, the running live stream, whose kept
/// frames it is sent first, or for a query an identical query's shared
/// stream, which it joins — and to this worker's tables. Returns the stream
/// and the query's reader slot in its log when it is shared. The caller
/// records it in the session's queries (and then has a shared query's
/// reader pull what the log holds).
pub(super) fn attach(
    worker: &Rc<Worker>,
    session: &Rc<BrowserSession>,
    query_id: &str,
    dataset: &str,
    live: bool,
    codecs: &[Option<Codec>],
) -> Result<(Arc<Stream>, Option<u32>), Refused> {
    let shared = &worker.shared;
    let config = &shared.config;
    let tenant = &session.claims.cuenta_id;
    let subscriber = Subscriber { worker: worker.index, session: session.id, query_id: query_id.to_owned() };
    let opened = if live {
        shared
            .registry
            .open_live(tenant, dataset, subscriber, config.limits.streams_per_connector_max, codecs)
            .map(|(stream, is_new)| Opened { stream, reader: None, is_new })
    } else {
        shared.registry.open_query(tenant, dataset, subscriber, QueryParams::from_config(config), codecs)
    };
    let Opened { stream, reader, is_new } = opened.map_err(Refused::Open)?;
    let mut sub = LocalSub {
        session: session.clone(),
        query_id: query_id.to_owned(),
        dataset: dataset.to_owned(),
        live,
        compression: stream.compression,
        started: false,
        skipping: false,
        skipped: 0,
        opened_at: Instant::now(),
        first_frame_seen: false,
        snapshot_through: None,
        reader: reader.map(|slot| (stream.clone(), slot)),
        share_seen: 0,
    };
    if live && !is_new {
        // Late joiner of a live stream: schema, dictionaries and the recent
        // batches first, then the next batch.
        let state = stream.state.lock();
        let bytes: usize = state.retained.frames().map(|frame| frame.wire_len(session.level)).sum();
        let (queued, budget) = {
            let ring = session.ring.borrow();
            (ring.bytes(), ring.budget())
        };
        // Ended meanwhile: no snapshot, no stream_start; the end, routed to
        // this worker (it attached before), follows.
        let started = state.started && !state.ended;
        if started
            && (queued.saturating_add(bytes) > budget
                || shared.held_bytes().saturating_add(bytes) > config.rings.total_bytes_max)
        {
            drop(state);
            worker.detach(&stream, session.id, query_id);
            return Err(Refused::Snapshot { bytes, queued, budget });
        }
        if started {
            sub.started = true;
            let event = BrowserEvent::StreamStart {
                query_id: query_id.to_owned(),
                request_id: query_id.to_owned(),
                dataset: dataset.to_owned(),
                schema: state.schema_b64.clone().unwrap_or_default(),
                stream_id: (session.level == Level::Two).then_some(stream.id),
                live: true,
                compression: stream.compression.map(|codec| codec.as_str().to_owned()),
            };
            let mut ring = session.ring.borrow_mut();
            ring.push_text(&event.to_json());
            for frame in state.retained.frames() {
                ring.push(OutItem::Frame(frame.clone(), session.level));
                sub.snapshot_through = sub.snapshot_through.max(Some(frame.sequence));
            }
        }
    }
    worker.add_sub(stream.id, sub);
    if is_new {
        if let Err(why) = stream.request_open() {
            // Others may have joined the new stream meanwhile: they are told too.
            let subscriber = Subscriber { worker: worker.index, session: session.id, query_id: query_id.to_owned() };
            worker.leave_unopened(&stream, &subscriber, Some(why));
            return Err(Refused::Unreachable(why));
        }
    }
    Ok((stream, reader))
}

/// The datasets `session` may read from the connectors online now.
/// Of `online` (the tenant's datasets, `Registry::datasets`), those `session` may read.
fn readable_datasets(online: &[(String, bool)], session: &BrowserSession) -> Vec<DatasetInfo> {
    online
        .iter()
        .filter(|(name, _)| session.claims.allows(name))
        .map(|(name, live)| DatasetInfo { name: name.clone(), live: *live })
        .collect()
}

/// A digest of a dataset list, never 0 (0 means "none sent yet").
fn digest(datasets: &[DatasetInfo]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for dataset in datasets {
        dataset.name.hash(&mut hasher);
        dataset.live.hash(&mut hasher);
    }
    hasher.finish() | 1
}

/// Connectors came or went (the sweep saw a new `datasets_generation`):
/// a level-2 session that has asked for the list, and whose readable
/// datasets differ from the list it was last sent, gets the new one,
/// unasked (`datasets_changed`). A session that never asked shows no list,
/// so it is told nothing. `online` caches the registry's list per tenant for
/// one pass over the worker's sessions: one lookup per tenant, not per session.
pub(crate) fn datasets_changed(
    worker: &Worker,
    session: &BrowserSession,
    online: &mut HashMap<String, Vec<(String, bool)>>,
) {
    if session.level != Level::Two || session.datasets_sent.get() == 0 || session.ring.borrow().is_closing() {
        return;
    }
    let tenant = &session.claims.cuenta_id;
    if !online.contains_key(tenant) {
        online.insert(tenant.clone(), worker.shared.registry.datasets(tenant));
    }
    let datasets = readable_datasets(online.get(tenant).map(Vec::as_slice).unwrap_or_default(), session);
    let digest = digest(&datasets);
    if digest == session.datasets_sent.get() {
        return;
    }
    session.datasets_sent.set(digest);
    session.send(&BrowserEvent::DatasetsChanged { datasets });
}
