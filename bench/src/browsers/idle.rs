//! Idle sessions: many level-2 sessions on plain std sockets, without a
//! thread per socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::wire;

/// Connections opened from one loopback source address before moving to the
/// next (127.0.0.1, .2, …): one address has about 28k ephemeral ports.
pub const IDLE_CONNECTIONS_PER_SOURCE: usize = 20_000;

/// Connects to `addr` from source address `source` (any port).
fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// Opens `count` idle level-2 sessions with plain std sockets: connects and
/// writes the upgrade request for a batch, then reads each `101` head (and
/// whatever follows). Returns the open sockets and the errors seen.
pub fn open_idle(
    addr: SocketAddr,
    token: &str,
    count: usize,
    progress: &dyn Fn(usize),
) -> (Vec<TcpStream>, Vec<String>) {
    const BATCH: usize = 256;
    let request = wire::upgrade_request(addr, &format!("/stream/{token}"), Some("volley.v2"));
    let mut open = Vec::with_capacity(count);
    let mut errors = Vec::new();
    let mut buf = [0u8; 4096];
    while open.len() + errors.len() < count {
        let n = BATCH.min(count - open.len() - errors.len());
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let index = open.len() + errors.len() + batch.len();
            let connected = if addr.ip().is_loopback() && addr.is_ipv4() {
                // Spread over 127.0.0.x so 100k sessions do not run out of ports.
                let step = u8::try_from(index / IDLE_CONNECTIONS_PER_SOURCE + 1).unwrap_or(u8::MAX);
                connect_from(std::net::IpAddr::from([127, 0, 0, step]), addr)
            } else {
                TcpStream::connect(addr)
            };
            match connected.and_then(|mut s| s.write_all(request.as_bytes()).map(|()| s)) {
                Ok(s) => batch.push(s),
                Err(e) => errors.push(format!("idle connect: {e}")),
            }
        }
        for mut s in batch {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            match s.read(&mut buf) {
                Ok(k) if buf[..k].starts_with(b"HTTP/1.1 101") => open.push(s),
                Ok(k) => errors.push(format!("idle upgrade: {}", String::from_utf8_lossy(&buf[..k.min(80)]))),
                Err(e) => errors.push(format!("idle upgrade: {e}")),
            }
        }
        progress(open.len());
    }
    (open, errors)
}
