//! A browser session: `/stream/{session}` after the token was verified and
//! the upgrade answered — its connection (read loop, writer, teardown, the
//! sweep's checks) here; its requests (`list`, `query`, `subscribe`,
//! `unsubscribe`, `cancel`, `ping`), which attach it to streams through the
//! registry, in `requests`. Its ring is drained by its writer task, which
//! also returns credit.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use volley_protocol::message::{BrowserEvent, ErrorCode};
use volley_protocol::token::SessionClaims;
use volley_protocol::ws::{close_code, encode_frame, FrameDecoder, MessageAssembler, OpCode, Role};

use crate::conn::transport::{ConnRead, ConnWrite};
use crate::conn::writev::OutItem;
use crate::conn::{ConnCtl, Ring, WsReader, CLOSE_GRACE};
use crate::connection::{answer, spawn_writer, Read};
use crate::frame::Level;
use crate::metrics::WorkerMetrics;
use crate::registry::{ConnectorCmd, Stream};
use crate::session::{BrowserSession, QueryLink};
use crate::worker::Worker;

mod queue;
mod requests;
mod resume;

pub(crate) use requests::datasets_changed;
pub(crate) use resume::resume_waiting;

use requests::handle_request;

/// Read buffer of a browser socket. An idle session pins this buffer under
/// its pending read, so it counts in the memory per idle session (ARCHITECTURE.md, "Memory per idle session"),
/// and browsers send few, small control messages: a read of this size holds
/// any frame header (at most 14 bytes) and a ping or a short request; a
/// longer frame gets a buffer of its exact size for the next read (one more
/// read per request, for 96 bytes less per idle session than 128).
pub const BROWSER_READ_CHUNK_BYTES: usize = 32;
// Browser sessions never align their reads: the small chunk is for idle memory.
const _: () = assert!(BROWSER_READ_CHUNK_BYTES < crate::conn::READ_ALIGN_MIN_CHUNK_BYTES);

/// Level-2 query credit goes back upstream in steps of at least
/// `limits.credit_bytes / CREDIT_RETURN_DIVISOR` bytes written to the
/// browser (1 MiB with the default 4 MiB), and whatever is owed whenever the
/// browser has been sent everything queued for it. The second rule is what
/// keeps a connector that never overdraws (PROTOCOL.md allows that reading
/// of §4.2) from stalling: with 0.5 MiB outstanding and a 3.9 MiB frame next,
/// it waits for credit that a step rule alone would never send. A fast
/// browser empties its ring after most writes, so this costs a credit
/// message per write batch (about 550 per 256 MiB of 64 KiB frames, against
/// about 210 with steps alone: no throughput difference measured).
pub const CREDIT_RETURN_DIVISOR: u64 = 4;

/// Serves one upgraded browser connection until it closes; `guards` (its
/// admission counts) are released when it ends.
///
/// The session is set up here, synchronously, so the returned future keeps
/// only what an idle session needs across its pending read: the claims and
/// the upgrade's leftovers live in the session or the reader, and the
/// teardown (with its timers) is boxed (memory per idle session: ARCHITECTURE.md, "Memory per idle session").
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub fn run<R: ConnRead, W: ConnWrite + 'static, G>(
    worker: Rc<Worker>,
    read: R,
    write: W,
    leftover: BytesMut,
    level: Level,
    claims: SessionClaims,
    ctl: Rc<ConnCtl>,
    guards: G,
) -> impl std::future::Future<Output = ()> {
    let shared = worker.shared.clone();
    let limits = &shared.config.limits.protocol;
    let id = shared.next_id();
    let rings = &shared.config.rings;
    let ring = Rc::new(RefCell::new(Ring::new(
        rings.session_bytes_max,
        rings.session_control_bytes_max,
        shared.ring_totals.clone(),
    )));
    let session = Rc::new(BrowserSession {
        id,
        level,
        claims,
        ring: ring.clone(),
        ctl: ctl.clone(),
        queries: RefCell::new(Vec::new()),
        next_query: Cell::new(1),
        last_activity: Cell::new(Instant::now()),
        last_ping: Cell::new(Instant::now()),
        datasets_sent: Cell::new(0),
    });
    worker.local.borrow_mut().sessions.insert(id, session.clone());
    shared.registry.sessions_online.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    if level == Level::Two {
        session.send(&BrowserEvent::Hello {
            protocol: 2,
            user: session.claims.sub.clone(),
            tenant: session.claims.cuenta_id.clone(),
            expires_at: session.claims.exp,
            limits: serde_json::json!({
                "control_message_bytes_max": limits.control_message_bytes_max,
                "pending_requests_max": shared.config.limits.pending_requests_max,
            }),
        });
    }

    let writer = {
        let (writer_worker, session) = (worker.clone(), session.clone());
        let on_written = move |items: &[OutItem], occupancy| written(&writer_worker, &session, items, occupancy);
        spawn_writer(&worker, "browser writer", ring, write, ctl.clone(), on_written)
    };

    let decoder = FrameDecoder::new(Role::Server, limits.browser_frame_bytes_max);
    let assembler =
        MessageAssembler::new(limits.browser_frame_bytes_max, limits.control_message_bytes_max, limits.fragments_max);
    let mut reader = WsReader::new(read, leftover, decoder, assembler, BROWSER_READ_CHUNK_BYTES, ctl);
    // An async block, not an async fn: an async fn's parameters are moved
    // into locals and the task would keep both copies.
    async move {
        // Detaches the session when dropped: at the end below, or wherever
        // this task is dropped (a panic), so no table keeps a closed session.
        let teardown = Teardown { worker, session };
        read_loop(&teardown.worker, &teardown.session, &mut reader).await;
        let carried = reader.carried_bytes;
        drop(reader);
        Box::pin(finish(&teardown, carried, writer)).await;
        drop(teardown);
        drop(guards);
    }
}

/// Reads and handles the session's requests until it closes. A plain fn
/// returning an async block: an async fn would keep its three references
/// twice in every idle session's task.
#[allow(clippy::manual_async_fn)] // deliberate, see above
fn read_loop<'a, R: ConnRead>(
    worker: &'a Rc<Worker>,
    session: &'a Rc<BrowserSession>,
    reader: &'a mut WsReader<R>,
) -> impl std::future::Future<Output = ()> + 'a {
    async move {
        loop {
            // Backpressure: while the ring holds its budget, the next
            // request is not read (TCP then slows the browser down).
            Ring::wait_for_room(&session.ring).await;
            // Closing (from here or elsewhere: a policy, the sweep, a
            // revocation): nothing more the peer sends is read.
            if session.ring.borrow().is_closing() {
                break;
            }
            let read = reader.next().await;
            if matches!(read, Ok(Some(_))) {
                session.last_activity.set(Instant::now());
            }
            let message = match answer(read, &session.ring) {
                Read::Data(message) => message,
                Read::Control => continue,
                Read::End => break,
            };
            if message.as_text().is_none() {
                session.close(close_code::UNSUPPORTED_DATA, "browsers send text control messages only");
                break;
            }
            let text = message.as_text().unwrap_or_default();
            handle_request(worker, session, text);
            // A reply past the control cap closed the session: nothing
            // more it sends is read.
            if session.ring.borrow().is_closing() {
                break;
            }
        }
    }
}

/// Ends the connection ([`crate::connection::finish`]); dropping the
/// [`Teardown`] afterwards detaches the session from everything.
async fn finish(teardown: &Teardown, carried_bytes: u64, writer: monoio::task::JoinHandle<()>) {
    let session = &teardown.session;
    teardown.worker.metrics.borrow_mut().read_carry_bytes += carried_bytes;
    crate::connection::finish(&session.ctl, &session.ring, writer).await;
}

/// A session's detachment from its worker: when dropped, the connection is
/// killed, its queries leave their streams (the last reader cancels a
/// stream upstream) and the worker forgets it, so its ring and state are
/// freed as soon as the writer task lets go too.
struct Teardown {
    worker: Rc<Worker>,
    session: Rc<BrowserSession>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let (worker, session) = (&self.worker, &self.session);
        session.ctl.kill();
        if let Ok(mut ring) = session.ring.try_borrow_mut() {
            ring.wake();
        }
        // Queries still waiting for a stream slot leave their tenant's queue.
        let queued: Vec<String> = worker
            .local
            .borrow()
            .queued
            .iter()
            .filter(|q| q.session == session.id)
            .map(|q| q.query_id.clone())
            .collect();
        for query_id in queued {
            worker.unqueue(session.id, &query_id);
        }
        let queries = std::mem::take(&mut *session.queries.borrow_mut());
        for query in queries {
            // A waiting subscription's stream already ended: nothing to detach.
            if let Some(stream) = query.stream() {
                worker.detach(stream, session.id, &query.id);
            }
        }
        worker.local.borrow_mut().sessions.remove(&session.id);
        worker.shared.registry.sessions_online.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// After a batch reached the socket: relay latency, counters, credit back upstream.
fn written(worker: &Rc<Worker>, session: &BrowserSession, items: &[OutItem], occupancy: usize) {
    session.last_activity.set(Instant::now());
    let now = Instant::now();
    let mut metrics = worker.metrics.borrow_mut();
    if worker.shared.metrics.enabled {
        WorkerMetrics::record(&mut metrics.ring_occupancy_bytes, occupancy as u64);
    }
    let credit_bytes = worker.shared.config.limits.credit_bytes;
    let mut queries = session.queries.borrow_mut();
    for item in items {
        let OutItem::Frame(frame, level) = item else { continue };
        metrics.frames_out += 1;
        metrics.bytes_out += frame.wire_len(*level) as u64;
        // A late joiner's replay was read when its stream began: not relay time.
        if worker.shared.metrics.enabled && !frame.replayed {
            WorkerMetrics::record_us(&mut metrics.relay_latency_us, now.duration_since(frame.read_at));
        }
        let body = frame.body().len() as u64;
        // Several query ids of a session may share one stream: the first
        // one holds the stream's credit. A shared query's log gives its
        // credit back itself.
        if let Some(query) = queries
            .iter_mut()
            .find(|q| q.reader.is_none() && q.stream().is_some_and(|s| s.id == frame.stream_id && !s.live))
        {
            query.credit_owed += body;
        }
    }
    for query in queries.iter_mut() {
        let (QueryLink::Attached(stream), bytes) = (&query.link, &mut query.credit_owed) else { continue };
        if *bytes == 0 {
            continue;
        }
        match stream.connector.level {
            Level::One => {
                stream.return_credit(*bytes);
                *bytes = 0;
            }
            Level::Two => {
                if *bytes >= credit_bytes / CREDIT_RETURN_DIVISOR || session.ring.borrow().bytes() == 0 {
                    let cmd = ConnectorCmd::Credit { stream_id: stream.id, bytes: *bytes };
                    if stream.connector.mailbox.push(cmd).is_ok() {
                        *bytes = 0;
                    }
                }
            }
        }
    }
    drop(queries);
    drop(metrics);
    // The ring has room again: shared queries take their next frames.
    crate::worker::pull_session(worker, session);
}

/// One sweep's checks of a session (see `sweep::sweep`): token
/// expiry, idle timeout, heartbeat ping. Returns true when one of its
/// queries is past its deadline: the sweep then calls [`expire_queries`]
/// once it no longer walks the worker's tables.
pub fn check(worker: &Worker, session: &BrowserSession, now: Instant, now_unix: i64) -> bool {
    let config = &worker.shared.config;
    if session.ctl.killed() {
        return false;
    }
    if let Some(closing_at) = session.ring.borrow().closing_at() {
        // Closing, and nothing written for CLOSE_GRACE (the peer reads
        // nothing, so its close frame cannot go out): end the connection
        // now. A peer that still reads keeps draining toward the close frame.
        let progress = closing_at.max(session.last_activity.get());
        if now.saturating_duration_since(progress) > CLOSE_GRACE {
            session.ctl.kill();
        }
        return false;
    }
    let overdue = session.queries.borrow().iter().any(|q| q.deadline.is_some_and(|deadline| deadline <= now));
    let leeway = i64::try_from(config.limits.protocol.token_leeway_seconds).unwrap_or(0);
    if session.claims.exp.saturating_add(leeway) < now_unix {
        session.close(close_code::TOKEN_EXPIRED, "session token expired");
        return false;
    }
    let busy = !session.queries.borrow().is_empty();
    if !busy
        && now.saturating_duration_since(session.last_activity.get())
            > Duration::from_secs(config.timeouts.idle_seconds)
    {
        session.close(close_code::IDLE_TIMEOUT, "idle timeout");
        return false;
    }
    if now.saturating_duration_since(session.last_ping.get()) >= Duration::from_secs(config.limits.heartbeat_seconds) {
        session.last_ping.set(now);
        session.ring.borrow_mut().push(OutItem::Encoded(encode_frame(OpCode::Ping, b"")));
    }
    overdue
}

/// Ends the session's queries that are past their deadline with
/// `query_timeout`, and cancels them upstream (if no other reader shares
/// their stream).
pub fn expire_queries(worker: &Worker, session: &BrowserSession, now: Instant) {
    let timeout_seconds = worker.shared.config.timeouts.query_seconds;
    let expired: Vec<(String, Arc<Stream>)> = {
        let mut queries = session.queries.borrow_mut();
        let mut expired = Vec::new();
        let mut at = 0;
        while at < queries.len() {
            if queries.get(at).is_some_and(|q| q.deadline.is_some_and(|deadline| deadline <= now)) {
                let query = queries.swap_remove(at);
                if let QueryLink::Attached(stream) = query.link {
                    expired.push((query.id, stream));
                }
            } else {
                at += 1;
            }
        }
        expired
    };
    for (query_id, stream) in expired {
        worker.detach(&stream, session.id, &query_id);
        session.send(&BrowserEvent::StreamEnd {
            query_id: query_id.clone(),
            request_id: query_id,
            stream_id: (session.level == Level::Two).then_some(stream.id),
            total_bytes: 0,
            error: Some(volley_protocol::ErrorBody::new(
                ErrorCode::QueryTimeout,
                format!("the query ran longer than {timeout_seconds} s (timeouts.query_seconds); ask for less data or raise the limit"),
            )),
        });
    }
}
