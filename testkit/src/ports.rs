//! Free TCP ports on loopback, for the servers the tests start.

/// A free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    try_free_port().expect("a free port on 127.0.0.1")
}

/// [`free_port`], or why there is none.
pub(crate) fn try_free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
