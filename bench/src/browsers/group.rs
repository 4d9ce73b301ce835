//! One group: many browser sockets driven by one thread with epoll (mio):
//! connect and upgrade each (blocking, one after the other), send the
//! action, then read every socket as it becomes readable, parse frames
//! without copying payloads, and record counters, completion times and HDR
//! histograms.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use volley_protocol::message::BrowserEvent;

use crate::hist;
use crate::wire::{self, Event, Parser, OP_PONG};

use super::{Action, GroupResult, GroupSpec};

struct Session {
    socket: mio::net::TcpStream,
    parser: Parser,
    done: bool,
    queries_left: u32,
    query_sent: Option<Instant>,
    first_frame: bool,
    query_n: u32,
}

fn action_message(action: &Action, n: u32) -> Value {
    match action {
        Action::Subscribe { dataset } => json!({"action": "subscribe", "dataset": dataset, "query_id": "s1"}),
        Action::Query { dataset, .. } => json!({"action": "query", "dataset": dataset, "query_id": format!("q{n}")}),
    }
}

/// Connects one level-2 browser; returns its socket and the events after `hello`.
fn connect(addr: SocketAddr, token: &str) -> Result<(TcpStream, Parser, Vec<Event>), String> {
    let (mut stream, rest) = wire::handshake(addr, &format!("/stream/{token}"), Some("volley.v2"))
        .map_err(|e| format!("browser connect: {e}"))?;
    let mut parser = Parser::default();
    let mut pending = Vec::new();
    parser.feed(&rest, |e| pending.push(e));
    stream.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    let hello = wire::read_text(&mut stream, &mut parser, &mut pending).map_err(|e| format!("hello: {e}"))?;
    if !matches!(BrowserEvent::parse(&hello), Ok(BrowserEvent::Hello { .. })) {
        return Err(format!("expected hello, got {hello}"));
    }
    Ok((stream, parser, pending))
}

/// Runs one group to its end; `ready` is called once every browser is
/// connected and (for subscriptions) has its `stream_start`. Queries are sent
/// when `ready` returns (for a gated group, it returns at the fleet's go).
pub fn run_group(spec: &GroupSpec, ready: &dyn Fn()) -> GroupResult {
    let mut result = GroupResult::default();
    let mut latency_scheduled = hist::new_ns();
    let mut latency_sent = hist::new_ns();
    let mut ttfb = hist::new_us();
    let mut query = hist::new_us();
    let queries = match &spec.action {
        Action::Query { queries, .. } => *queries,
        Action::Subscribe { .. } => 1,
    };
    let deadline = Instant::now() + Duration::from_secs(spec.timeout_seconds);
    let mut streams = Vec::with_capacity(spec.count);
    for _ in 0..spec.count {
        match connect(spec.addr, &spec.token) {
            Ok(s) => streams.push(s),
            Err(e) => result.error(e),
        }
    }
    result.browsers = streams.len();
    let subscribe = matches!(spec.action, Action::Subscribe { .. });
    if subscribe {
        for (stream, _, _) in streams.iter_mut() {
            if let Err(e) = stream.write_all(&wire::text_frame(&action_message(&spec.action, 0))) {
                result.error(format!("subscribe: {e}"));
            }
        }
        for (stream, parser, pending) in streams.iter_mut() {
            loop {
                match wire::read_text(stream, parser, pending) {
                    Ok(text) => match BrowserEvent::parse(&text) {
                        Ok(BrowserEvent::StreamStart { .. }) => break,
                        Ok(BrowserEvent::Error { .. }) | Err(_) => {
                            result.error(text);
                            break;
                        }
                        Ok(_) => continue,
                    },
                    Err(e) => {
                        result.error(format!("waiting for stream_start: {e}"));
                        break;
                    }
                }
            }
        }
    }
    ready();
    let poll = mio::Poll::new();
    let mut poll = match poll {
        Ok(p) => p,
        Err(e) => {
            result.error(format!("epoll: {e}"));
            return result;
        }
    };
    let mut sessions = Vec::with_capacity(streams.len());
    for (index, (stream, parser, pending)) in streams.into_iter().enumerate() {
        let _ = stream.set_nonblocking(true);
        let mut socket = mio::net::TcpStream::from_std(stream);
        if let Err(e) = poll.registry().register(&mut socket, mio::Token(index), mio::Interest::READABLE) {
            result.error(format!("register socket: {e}"));
        }
        let mut session = Session {
            socket,
            parser,
            done: false,
            queries_left: queries,
            query_sent: None,
            first_frame: false,
            query_n: 0,
        };
        if !subscribe {
            session.query_sent = Some(Instant::now());
            session.queries_left -= 1;
            let _ = session.socket.write_all(&wire::text_frame(&action_message(&spec.action, 0)));
        }
        sessions.push((session, pending));
    }
    let mut open = sessions.len();
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut backlog: Vec<Event> = Vec::new();
    // Events already parsed during the connect phase.
    let mut initial: Vec<usize> = (0..sessions.len()).filter(|i| !sessions[*i].1.is_empty()).collect();
    while open > 0 && Instant::now() < deadline {
        let mut ready_tokens: Vec<usize> = std::mem::take(&mut initial);
        if ready_tokens.is_empty() {
            if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
                if e.kind() != ErrorKind::Interrupted {
                    result.error(format!("poll: {e}"));
                    break;
                }
            }
            ready_tokens.extend(events.iter().map(|e| e.token().0));
        }
        for index in ready_tokens {
            let Some((session, pending)) = sessions.get_mut(index) else { continue };
            if session.done {
                continue;
            }
            backlog.clear();
            backlog.append(pending);
            let mut closed = false;
            loop {
                if !backlog.is_empty() {
                    let now_ns = wire::now_nanos();
                    for event in backlog.drain(..) {
                        let finished = handle_event(
                            spec,
                            session,
                            event,
                            now_ns,
                            &mut result,
                            &mut latency_scheduled,
                            &mut latency_sent,
                            &mut ttfb,
                            &mut query,
                        );
                        if finished && !session.done {
                            session.done = true;
                            result.completed += 1;
                            result.end_nanos.push(now_ns);
                        }
                    }
                }
                if session.done {
                    break;
                }
                match session.socket.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => session.parser.feed(&buf[..n], |e| backlog.push(e)),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        result.error(format!("read: {e}"));
                        closed = true;
                        break;
                    }
                }
            }
            if closed && !session.done {
                session.done = true;
                result.error("gateway closed a browser socket before its end".into());
            }
            if session.done {
                open -= 1;
                let _ = poll.registry().deregister(&mut session.socket);
            }
        }
    }
    if open > 0 {
        result.error(format!("{open} browsers did not finish within {} s", spec.timeout_seconds));
    }
    if spec.stamped {
        result.latency_scheduled_ns = Some(hist::encode(&latency_scheduled));
        result.latency_sent_ns = Some(hist::encode(&latency_sent));
    }
    if !subscribe {
        result.ttfb_us = Some(hist::encode(&ttfb));
        result.query_us = Some(hist::encode(&query));
    }
    result
}

/// Handles one event; returns true when the browser reached its end.
#[allow(clippy::too_many_arguments)] // one call site; the histograms are the group's
fn handle_event(
    spec: &GroupSpec,
    session: &mut Session,
    event: Event,
    now_ns: u64,
    result: &mut GroupResult,
    latency_scheduled: &mut Histogram<u64>,
    latency_sent: &mut Histogram<u64>,
    ttfb: &mut Histogram<u64>,
    query: &mut Histogram<u64>,
) -> bool {
    match event {
        Event::Binary { len, prefix } => {
            result.frames += 1;
            result.bytes += len as u64;
            if result.first_frame_nanos == 0 || now_ns < result.first_frame_nanos {
                result.first_frame_nanos = now_ns;
            }
            result.last_frame_nanos = result.last_frame_nanos.max(now_ns);
            if spec.stamped && len >= wire::PREFIX_BYTES {
                let scheduled = wire::le_u64(&prefix, 16);
                let sent = wire::le_u64(&prefix, 24);
                hist::record(latency_scheduled, now_ns.saturating_sub(scheduled));
                hist::record(latency_sent, now_ns.saturating_sub(sent));
            }
            if !session.first_frame {
                session.first_frame = true;
                if let Some(sent) = session.query_sent {
                    hist::record(ttfb, crate::units::sat_u64(sent.elapsed().as_micros()));
                }
            }
            matches!(spec.action, Action::Subscribe { .. }) && len >= 4 && prefix[3] & 1 == 1
        }
        Event::Text(text) => {
            let Ok(msg) = serde_json::from_str::<Value>(&text) else { return false };
            match msg["type"].as_str() {
                Some("gap") => {
                    result.gaps += 1;
                    result.skipped_frames += msg["skipped_frames"].as_u64().unwrap_or(0);
                    false
                }
                Some("stream_end") | Some("error") => {
                    if msg["type"] == "error" || msg["error"].is_object() {
                        result.error(text.chars().take(300).collect());
                    } else {
                        result.queries_ok += 1;
                    }
                    if let Some(sent) = session.query_sent.take() {
                        hist::record(query, crate::units::sat_u64(sent.elapsed().as_micros()));
                    }
                    if session.queries_left == 0 {
                        return true;
                    }
                    session.queries_left -= 1;
                    session.query_n += 1;
                    session.first_frame = false;
                    session.query_sent = Some(Instant::now());
                    let message = wire::text_frame(&action_message(&spec.action, session.query_n));
                    if let Err(e) = write_small(&mut session.socket, &message) {
                        result.error(format!("query: {e}"));
                        return true;
                    }
                    false
                }
                _ => false,
            }
        }
        Event::Ping(payload) => {
            let _ = write_small(&mut session.socket, &wire::client_frame(OP_PONG, &payload));
            false
        }
        Event::Close(code) => {
            result.error(format!("gateway closed a browser with code {code:?}"));
            true
        }
    }
}

/// Writes a small message on a nonblocking socket, retrying briefly on WouldBlock.
fn write_small(socket: &mut mio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
