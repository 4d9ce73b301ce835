//! HTTP/1.1 on the gateway's port: read one request head (bounded, within
//! `timeouts.connect_seconds`), then route it: WebSocket upgrades for
//! connectors (`/ws/connect`) and browsers (`/stream/{session}`), `/health`,
//! `/metrics`, `/metrics.json`, `/session-check/{session}`, and the
//! dashboard's static files. Anything else gets a proper HTTP error and the
//! connection is closed.
//!
//! A browser session is admitted by [`authorize_browser`] (origin, token or
//! control-plane verdict, revocations, the revocation feed's fail-closed
//! policy), then counted against `limits.sessions_per_tenant_max` for as long
//! as it is open.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::Splitable;
use monoio::net::TcpStream;
use volley_protocol::handshake::{http_response, parse_request, upgrade_response, validate_upgrade, Request, Upgrade};
use volley_protocol::route::{redact_path, route, Route};
use volley_protocol::token::{verify_session, SessionClaims, TokenError, Validation};

use crate::admission::CounterGuard;
use crate::conn::transport::{ConnRead, ConnWrite};
use crate::conn::{or_killed, ConnCtl, Side};
use crate::control_plane::Verdict;
use crate::frame::Level;
use crate::refusal::{Refusal, RefusalKind};
use crate::shared::Shared;
use crate::worker::Worker;

/// Validates a WebSocket upgrade and answers it: `101` and the upgrade on
/// success; the HTTP error (and `None`) when the request is refused or the
/// answer cannot be written.
async fn accept_upgrade<W: ConnWrite>(write: &mut W, request: &Request, ctl: &ConnCtl) -> Option<Upgrade> {
    let upgrade = match validate_upgrade(request) {
        Ok(upgrade) => upgrade,
        Err(e) => {
            respond(write, Refusal::from_handshake(e).http_response(), ctl).await;
            return None;
        }
    };
    let written = or_killed!(ctl, Side::Write, write.write_bytes(Bytes::from(upgrade_response(&upgrade))));
    written.and_then(Result::ok).map(|()| upgrade)
}

/// Writes a whole HTTP response and ends the stream.
async fn respond<W: ConnWrite>(write: &mut W, response: impl Into<Bytes>, ctl: &ConnCtl) {
    if let Some(Ok(())) = or_killed!(ctl, Side::Write, write.write_bytes(response.into())) {
        let _ = or_killed!(ctl, Side::Write, write.shutdown());
    }
}

/// Releases an accepted connection's admission counts (gateway-wide, and
/// its IP's guard) when the connection ends, in whichever task it ends.
pub struct ConnSlot {
    shared: Arc<Shared>,
    _ip: Option<CounterGuard<IpAddr>>,
}

impl ConnSlot {
    /// Counts a connection already added to `shared.connections`, with its
    /// per-IP guard when it got one.
    pub fn new(shared: Arc<Shared>, ip: Option<CounterGuard<IpAddr>>) -> ConnSlot {
        ConnSlot { shared, _ip: ip }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one accepted TCP connection: the TLS handshake when the listener
/// has TLS, then one HTTP request. A browser session continues in a task
/// of its own, so the handshake's state (request head, TLS setup) is freed
/// as soon as the upgrade is done.
pub async fn serve(worker: Rc<Worker>, stream: TcpStream, peer: SocketAddr, slot: ConnSlot) {
    let _ = stream.set_nodelay(true);
    let ctl = ConnCtl::new();
    // Handshake deadline: a connection that has not finished its TLS
    // handshake and upgrade (and, for a connector, its register) in time is
    // cancelled by the worker's sweep — never a hung slot.
    worker.watch_handshake(&ctl);
    match worker.shared.tls.clone() {
        None => {
            let (read, write) = stream.into_split();
            serve_http(worker, read, write, peer, ctl, slot).await;
        }
        Some(acceptor) => match or_killed!(&ctl, Side::Read, acceptor.accept(stream)) {
            Some(Ok((read, write))) => serve_http(worker, read, write, peer, ctl, slot).await,
            Some(Err(e)) => log::debug!("{peer}: TLS handshake failed: {e}"),
            None => log::debug!("{peer}: TLS handshake cut at the handshake deadline"),
        },
    }
}

/// Reads one request head and routes it.
async fn serve_http<R: ConnRead + 'static, W: ConnWrite + 'static>(
    worker: Rc<Worker>,
    mut read: R,
    mut write: W,
    peer: SocketAddr,
    ctl: Rc<ConnCtl>,
    slot: ConnSlot,
) {
    let limits = worker.shared.config.limits.protocol.clone();
    let mut buf = BytesMut::with_capacity(1024);
    let (request, used) = loop {
        match parse_request(&buf, &limits) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(e) => {
                respond(&mut write, Refusal::from_handshake(e).http_response(), &ctl).await;
                return;
            }
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().min(limits.handshake_bytes_max));
        }
        let (start, end) = (buf.len(), buf.capacity());
        let Some((result, returned)) = or_killed!(&ctl, Side::Read, read.read_into(buf.slice_mut(start..end))) else {
            return;
        };
        buf = returned.into_inner();
        match result {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    let leftover = buf.split_off(used);
    log::debug!("{peer} {} {}", request.method, redact_path(request.path()));
    let route = match route(&request) {
        Ok(route) => route,
        Err(e) => {
            log::debug!("{peer}: refused: {}", e.reason);
            respond(&mut write, Refusal::from_handshake(e).http_response(), &ctl).await;
            return;
        }
    };
    match route {
        Route::Connect => {
            let Some(_) = accept_upgrade(&mut write, &request, &ctl).await else { return };
            // Boxed: a tunnel's future (2.7 KB, 128-byte aligned for its timers)
            // would otherwise size every connection's handshake task.
            Box::pin(crate::connector::run(worker, read, write, leftover, ctl)).await;
            drop(slot);
        }
        Route::Stream { session } => {
            let claims = match authorize_browser(&worker, &request, &session, peer.ip()).await {
                Ok(claims) => claims,
                Err(refusal) => {
                    log::info!("{peer}: browser refused ({}): {}", refusal.code().as_str(), refusal.message);
                    respond(&mut write, refusal.http_response(), &ctl).await;
                    return;
                }
            };
            let tenant_max = worker.shared.config.limits.sessions_per_tenant_max;
            let Some(tenant_slot) = worker.shared.tenant_sessions.guard(claims.cuenta_id.clone(), tenant_max) else {
                log::info!("{peer}: browser refused: tenant {:?} has {tenant_max} open sessions", claims.cuenta_id);
                let message = format!("tenant {:?} is at its limit of {tenant_max} open sessions", claims.cuenta_id);
                respond(&mut write, RefusalKind::AtLimit.with(message).http_response(), &ctl).await;
                return;
            };
            let Some(upgrade) = accept_upgrade(&mut write, &request, &ctl).await else { return };
            let level = if upgrade.protocol.is_some() { Level::Two } else { Level::One };
            ctl.mark_ready();
            // Bytes the client sent past the head stay; an empty remainder gives
            // back the head's buffer (the reader allocates a small one).
            let leftover = if leftover.is_empty() { BytesMut::new() } else { leftover };
            // Set up here and spawned as is: the session's task is the session's
            // own future (a wrapping async block would keep a second copy).
            let session =
                crate::browser::run(worker.clone(), read, write, leftover, level, claims, ctl, (tenant_slot, slot));
            crate::task::spawn(&worker, "browser session", session);
        }
        Route::Echo if worker.shared.config.test_echo_route => {
            let Some(_) = accept_upgrade(&mut write, &request, &ctl).await else { return };
            ctl.mark_ready();
            crate::echo::run(worker, read, write, leftover, ctl).await;
        }
        Route::SessionCheck { session } => {
            let response = session_check(&worker, &request, &session, peer.ip()).await;
            ctl.mark_ready();
            respond(&mut write, response, &ctl).await;
        }
        Route::Other if worker.shared.config.test_fault_routes && request.path().starts_with(TEST_PANIC_PREFIX) => {
            test_fault(&worker, request.path());
        }
        Route::Echo | Route::Other => {
            let response = plain_response(&worker, &request, request.path());
            ctl.mark_ready();
            respond(&mut write, response, &ctl).await;
        }
    }
}

/// Prefix of the test-only fault routes (`test_fault_routes`).
const TEST_PANIC_PREFIX: &str = "/test/panic/";

/// The test-only fault routes: `/test/panic/connection` panics in this
/// connection's task (contained: the connection closes, the worker goes
/// on); `/test/panic/worker` panics in a task spawned outside containment,
/// as a bug in the worker's own loop would (the worker ends, so does the
/// process).
fn test_fault(worker: &Rc<Worker>, path: &str) {
    log::warn!("test fault route {path} requested (test_fault_routes is on)");
    if path.ends_with("/worker") {
        #[allow(clippy::disallowed_methods)] // deliberately uncontained: this is what the route tests
        drop(monoio::spawn(async { panic!("test fault: a worker panicked outside any connection") }));
        return;
    }
    let _ = worker;
    panic!("test fault: a connection task panicked");
}

/// `/session-check/{session}`: would this session be admitted? Always 200, the verdict in the body.
async fn session_check(worker: &Rc<Worker>, request: &Request, token: &str, client: IpAddr) -> Vec<u8> {
    let body = match authorize_browser(worker, request, token, client).await {
        Ok(claims) => {
            serde_json::json!({"ok": true, "tenant": claims.cuenta_id, "user": claims.sub, "expires_at": claims.exp})
        }
        Err(refusal) => serde_json::json!({"ok": false, "code": refusal.code().as_str(), "message": refusal.message}),
    };
    http_response(200, "application/json", body.to_string().as_bytes(), &[])
}

/// `/health`, `/metrics`, `/metrics.json` and the static files (from
/// memory: [`crate::static_files`], read at start).
fn plain_response(worker: &Rc<Worker>, request: &Request, path: &str) -> Bytes {
    if request.method != "GET" && request.method != "HEAD" {
        return RefusalKind::NotGet.with("only GET is served here").http_response().into();
    }
    let shared = &worker.shared;
    match path {
        "/health" => {
            let mut body = serde_json::json!({
                "status": "ok",
                "workers": shared.workers,
                "runtime": shared.runtime.name(),
                "worker_runtimes": vec![shared.runtime.name(); shared.workers],
                "connectors": shared.registry.connectors_online.load(std::sync::atomic::Ordering::Relaxed),
                "sessions": shared.registry.sessions_online.load(std::sync::atomic::Ordering::Relaxed),
            });
            if let (Some(directory), Some(fields)) = (&shared.cluster, body.as_object_mut()) {
                fields.insert("node_id".into(), directory.identity.node_id.clone().into());
                fields.insert("cluster".into(), directory.health());
            }
            http_response(200, "application/json", body.to_string().as_bytes(), &[]).into()
        }
        "/metrics" => {
            let mut text = shared.metrics.to_prometheus(&shared.gauges());
            if let Some(directory) = &shared.cluster {
                text.push_str(&directory.stats.prometheus());
            }
            http_response(200, "text/plain; version=0.0.4", text.as_bytes(), &[]).into()
        }
        "/metrics.json" => {
            http_response(200, "application/json", shared.metrics.to_json(&shared.gauges()).to_string().as_bytes(), &[])
                .into()
        }
        _ => {
            if request.wants_upgrade() {
                return RefusalKind::NoEndpoint.with("no WebSocket endpoint at this path").http_response().into();
            }
            shared.static_files.response(path)
        }
    }
}

/// The message of a session refused because the control plane did not answer.
const CONTROL_PLANE_UNREACHABLE: &str = "the control plane is unreachable; retry later";

/// True when `id` has the shape of a JWT (three dot-separated parts).
fn looks_like_jwt(id: &str) -> bool {
    id.bytes().filter(|b| *b == b'.').count() == 2
}

/// Admits a browser session or says why not: the origin, then the token
/// (a JWT verified locally and/or the control plane's verdict), then the
/// revocation set. Runs before the upgrade answer, on the worker; the
/// control-plane request runs on its own threads, within `client`'s lookup
/// budget.
pub async fn authorize_browser(
    worker: &Worker,
    request: &Request,
    token: &str,
    client: IpAddr,
) -> Result<SessionClaims, Refusal> {
    let shared = &worker.shared;
    if let (Some(origin), false) = (&request.origin, shared.config.allowed_origins.is_empty()) {
        if !shared.config.allowed_origins.iter().any(|o| o == origin) {
            return Err(RefusalKind::Forbidden.with(format!("origin {origin} is not allowed")));
        }
    }
    if token.is_empty() {
        return Err(RefusalKind::Unauthorized.with("the session token is missing"));
    }
    let token_bytes_max = shared.config.limits.protocol.token_bytes_max;
    if token.len() > token_bytes_max {
        let message = format!("the session token is over {token_bytes_max} bytes");
        return Err(RefusalKind::Unauthorized.with(message));
    }
    if shared.revocations.feed_down_and_fail_closed(shared.config.redis.fail_closed) {
        return Err(RefusalKind::Unavailable.with("the revocation feed is unreachable; new sessions are refused"));
    }
    let now = crate::clock::unix_now();
    let claims = match (&shared.control_plane, looks_like_jwt(token)) {
        (Some(control_plane), false) => match control_plane.validate(token, client).await {
            Verdict::Admit(claims) => claims,
            Verdict::Refuse(refusal) => return Err(refusal),
            Verdict::Unavailable(why) => {
                log::warn!("control plane: {why}");
                return Err(RefusalKind::Unavailable.with(CONTROL_PLANE_UNREACHABLE));
            }
        },
        (Some(control_plane), true) if control_plane.validate_all => {
            let claims = verify_locally(worker, token, now)?;
            match control_plane.validate(&claims.jti, client).await {
                Verdict::Admit(answer) if answer.cuenta_id == claims.cuenta_id => claims,
                Verdict::Admit(_) => {
                    return Err(RefusalKind::Forbidden.with("the control plane places this session in another tenant"))
                }
                Verdict::Refuse(refusal) => return Err(refusal),
                Verdict::Unavailable(why) if control_plane.fail_open => {
                    log::warn!("control plane: {why}; admitting a locally verified token (fail_open)");
                    claims
                }
                Verdict::Unavailable(why) => {
                    log::warn!("control plane: {why}");
                    return Err(RefusalKind::Unavailable.with(CONTROL_PLANE_UNREACHABLE));
                }
            }
        }
        _ => verify_locally(worker, token, now)?,
    };
    if let Some(edge) =
        shared.config.edge_id.as_deref().filter(|edge| !claims.edge_id.is_empty() && claims.edge_id != *edge)
    {
        let message = format!("this session was issued for edge {:?}; this gateway is edge {edge:?}", claims.edge_id);
        return Err(RefusalKind::Forbidden.with(message));
    }
    if let Some(revocation) = shared.revocations.check_session(&claims, now) {
        let what = match revocation {
            crate::revocation::Revocation::Session(_) => "this session",
            crate::revocation::Revocation::User(_) => "this user",
            crate::revocation::Revocation::Tenant(_) => "this tenant",
        };
        return Err(RefusalKind::Revoked.with(format!("{what} was revoked")));
    }
    Ok(claims)
}

fn verify_locally(worker: &Worker, token: &str, now: i64) -> Result<SessionClaims, Refusal> {
    let shared = &worker.shared;
    let secrets: Vec<&[u8]> = shared.secrets.iter().map(Vec::as_slice).collect();
    let validation = Validation {
        secrets: &secrets,
        now,
        leeway_seconds: i64::try_from(shared.config.limits.protocol.token_leeway_seconds).unwrap_or(0),
        token_bytes_max: shared.config.limits.protocol.token_bytes_max,
    };
    verify_session(token, &validation).map_err(|e| match e {
        TokenError::Expired => RefusalKind::TokenExpired.with("the session token has expired"),
        TokenError::Role(message) => RefusalKind::Forbidden.with(message),
        other => RefusalKind::Unauthorized.with(other.to_string()),
    })
}
