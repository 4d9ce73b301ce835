//! Opening a tunnel's socket to one of the listed gateways: TCP connect (to
//! the address of the name the tunnel's turn prefers, then the others), TLS
//! for `wss://` (the roots `gateway.ca_file` names, else the system's) and
//! the WebSocket upgrade, each step bounded by [`HANDSHAKE_TIMEOUT`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

use super::{TunnelError, GATEWAY_MESSAGE_BYTES_MAX, HANDSHAKE_TIMEOUT};
use crate::ca::load_ca_file;
use crate::config::GatewayConfig;

/// One tunnel connection's socket.
pub(super) type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

pub(super) fn set_read_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.set_read_timeout(Some(timeout)),
        MaybeTlsStream::Rustls(stream) => stream.get_ref().set_read_timeout(Some(timeout)),
        _ => Ok(()),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// The roots `wss://` trusts: `gateway.ca_file` alone when set, else the
/// system's (Mozilla's bundled roots when the system has none).
fn client_tls_config(gateway: &GatewayConfig) -> Result<Arc<rustls::ClientConfig>, TunnelError> {
    let mut roots = rustls::RootCertStore::empty();
    match &gateway.ca_file {
        Some(path) => {
            let certs = load_ca_file(path).map_err(|e| TunnelError::Io(io::Error::other(e)))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TunnelError::Io(io::Error::other(format!(
                    "gateway.ca_file {}: no usable CA certificate",
                    path.display()
                ))));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TunnelError::Protocol(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An open socket and where it went.
pub(super) struct Dialled {
    pub(super) socket: Socket,
    /// The address connected to.
    pub(super) addr: SocketAddr,
    /// How many addresses the URI's host resolved to (more than one: the
    /// tunnel has somewhere else to go on the same URI).
    pub(super) addresses: usize,
}

/// TCP connect and WebSocket upgrade (TLS for `wss://`) to `uri`, one of
/// `gateway.uri`'s, each step bounded by [`HANDSHAKE_TIMEOUT`]. Of the
/// addresses its host resolves to, the one at `preferred` (modulo their
/// number) is tried first, then the others in order: tunnels spread over a
/// name's addresses. `tungstenite::connect` has no timeout at all: a
/// listener that accepts but never answers would block it forever.
pub(super) fn open_socket(gateway: &GatewayConfig, uri: &str, preferred: usize) -> Result<Dialled, TunnelError> {
    use std::net::ToSocketAddrs as _;
    use tungstenite::client::IntoClientRequest as _;
    use tungstenite::handshake::HandshakeError;

    let request = uri.into_client_request()?;
    let tls = request.uri().scheme_str() == Some("wss");
    let tls_connector = if tls { Some(tungstenite::Connector::Rustls(client_tls_config(gateway)?)) } else { None };
    let host = request.uri().host().ok_or_else(|| TunnelError::Protocol(format!("no host in {uri}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = request.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, format!("{host} resolves to no address"));
    let mut stream = None;
    let mut addrs: Vec<SocketAddr> =
        (host.as_str(), port).to_socket_addrs().map_err(TunnelError::Unreachable)?.collect();
    let addresses = addrs.len();
    if addresses > 0 {
        addrs.rotate_left(preferred % addresses);
    }
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(connected) => {
                stream = Some((connected, addr));
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let (stream, addr) = stream.ok_or(TunnelError::Unreachable(last_error))?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut ws_config = tungstenite::protocol::WebSocketConfig::default();
    ws_config.max_message_size = Some(GATEWAY_MESSAGE_BYTES_MAX);
    ws_config.max_frame_size = Some(GATEWAY_MESSAGE_BYTES_MAX);
    let timed_out = || {
        TunnelError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no WebSocket handshake from {uri} within {HANDSHAKE_TIMEOUT:?}"),
        ))
    };
    let socket = match tungstenite::client_tls_with_config(request, stream, Some(ws_config), tls_connector) {
        Ok((socket, _)) => socket,
        Err(HandshakeError::Interrupted(_)) => return Err(timed_out()),
        Err(HandshakeError::Failure(tungstenite::Error::Io(e))) if is_timeout(&e) => return Err(timed_out()),
        Err(HandshakeError::Failure(e)) => return Err(e.into()),
    };
    // Writes block again once connected: backpressure from the gateway is
    // normal and must not fail the connection.
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.set_write_timeout(None)?,
        MaybeTlsStream::Rustls(stream) => stream.get_ref().set_write_timeout(None)?,
        _ => {}
    }
    Ok(Dialled { socket, addr, addresses })
}
