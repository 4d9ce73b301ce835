//! The machine's limits, measured in the same run as every scenario:
//! memcpy, one loopback TCP hop, a plain two-hop TCP relay (read/write with a
//! 256 KiB buffer in one thread — what any gateway must at least do), the
//! relay's latency at a fixed rate, and the harness's own capacity (the
//! simulated connector's frame writer feeding the browser parser directly,
//! no gateway).
//!
//! Not in [`measure`] (it takes as long as the scenario it is compared
//! with): [`relay_fanout_latency`], the same relay writing every read to many
//! readers on a few epoll threads, which the `latency` scenario runs itself;
//! and [`relay_fanout`], the relay writing one bulk transfer to many readers,
//! which the `query-fanout` scenario runs itself.
//!
//! Files: the bulk figures, the relay itself and [`measure`] are here;
//! `latency` paces stamped records through the relay (one reader, or many
//! on epoll threads); `fanout` fans one bulk transfer out to many readers;
//! `harness` measures the bench's own capacity.

mod fanout;
mod harness;
mod latency;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hist;

pub use fanout::{relay_fanout, RelayFanout, RELAY_FANOUT_TIMEOUT};
pub use harness::harness_capacity;
pub use latency::{relay_fanout_latency, relay_latency, FANOUT_GRACE};

/// Relay copy buffer.
pub const RELAY_BUFFER_BYTES: usize = 256 * 1024;

fn gbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e9
}

/// memcpy bandwidth (GB/s copied), 64 MiB buffers.
pub fn memcpy_gbps() -> f64 {
    let src = vec![7u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    dst.copy_from_slice(&src);
    let start = Instant::now();
    let rounds = 8;
    for i in 0..rounds {
        dst.copy_from_slice(&src);
        dst[i] ^= 1;
    }
    std::hint::black_box(&dst);
    gbps(rounds as u64 * (64 << 20), start.elapsed())
}

fn sink(stream: TcpStream) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
        let mut total = 0u64;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    })
}

fn pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

/// The relay's copy loop: blocking reads from `from` into a
/// [`RELAY_BUFFER_BYTES`] buffer, each read written (`write_all`) to every
/// socket of `outs` in turn, until `from` ends. Returns the bytes read, or
/// the first error (dropping, so closing, every socket: the sender and the
/// receivers see it).
fn copy_to_all(mut from: TcpStream, mut outs: Vec<TcpStream>) -> std::io::Result<u64> {
    let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        for to in &mut outs {
            to.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
}

/// A running two-hop relay: `upstream` in, `downstream` out.
pub struct Relay {
    /// Where the sender connects.
    pub upstream: SocketAddr,
    /// Where the receiver connects.
    pub downstream: SocketAddr,
    thread: std::thread::JoinHandle<std::io::Result<u64>>,
}

impl Relay {
    /// Listens on two loopback ports; copies once both are connected.
    pub fn start() -> std::io::Result<Relay> {
        let up = TcpListener::bind("127.0.0.1:0")?;
        let down = TcpListener::bind("127.0.0.1:0")?;
        let (upstream, downstream) = (up.local_addr()?, down.local_addr()?);
        let thread = std::thread::spawn(move || {
            let (from, _) = up.accept()?;
            let (to, _) = down.accept()?;
            to.set_nodelay(true)?;
            copy_to_all(from, vec![to])
        });
        Ok(Relay { upstream, downstream, thread })
    }

    /// Joins the copy thread (after the sender closed).
    pub fn join(self) -> std::io::Result<u64> {
        self.thread.join().unwrap_or_else(|_| Err(std::io::Error::other("relay panicked")))
    }
}

/// Writes `bytes` (rounded up to whole chunks) in `chunk`-byte writes, then
/// closes the socket so the reader sees the end.
fn write_chunks(mut socket: TcpStream, bytes: u64, chunk: usize) -> std::io::Result<()> {
    let data = vec![1u8; chunk];
    let mut sent = 0u64;
    while sent < bytes {
        socket.write_all(&data)?;
        sent += chunk as u64;
    }
    Ok(())
}

/// GB/s of `bytes` written in `chunk`-byte writes over one loopback hop.
pub fn loopback_gbps(bytes: u64, chunk: usize) -> std::io::Result<f64> {
    let (a, b) = pair()?;
    let reader = sink(b);
    let start = Instant::now();
    write_chunks(a, bytes, chunk)?;
    let got = reader.join().unwrap_or(0);
    Ok(gbps(got, start.elapsed()))
}

/// GB/s of `bytes` written in `chunk`-byte writes through the two-hop relay.
pub fn relay_gbps(bytes: u64, chunk: usize) -> std::io::Result<f64> {
    let relay = Relay::start()?;
    let a = TcpStream::connect(relay.upstream)?;
    a.set_nodelay(true)?;
    let b = TcpStream::connect(relay.downstream)?;
    let reader = sink(b);
    let start = Instant::now();
    write_chunks(a, bytes, chunk)?;
    let got = reader.join().unwrap_or(0);
    let elapsed = start.elapsed();
    let _ = relay.join();
    Ok(gbps(got, elapsed))
}

/// Every baseline figure, as stored in each result under `baseline`.
pub fn measure(bytes: u64, rate: u64, latency_size: usize, latency_duration: Duration) -> std::io::Result<Value> {
    let memcpy = memcpy_gbps();
    let loopback_64k = loopback_gbps(bytes, 64 * 1024)?;
    let relay_64k = relay_gbps(bytes, 64 * 1024)?;
    let relay_1m = relay_gbps(bytes, 1 << 20)?;
    let relay_1k = relay_gbps(bytes / 4, 1024)?;
    let latency = relay_latency(rate, latency_size, latency_duration)?;
    let (harness_1k_fps, harness_1k_gbps) = harness_capacity(1024, bytes / 128)?;
    let (harness_64k_fps, harness_64k_gbps) = harness_capacity(64 * 1024, (bytes / (64 * 1024)).max(1))?;
    Ok(json!({
        "memcpy_gbps": memcpy,
        "loopback_tcp_64k_gbps": loopback_64k,
        "relay_64k_gbps": relay_64k,
        "relay_1m_gbps": relay_1m,
        "relay_1k_writes_gbps": relay_1k,
        "relay_1k_writes_frames_per_s": relay_1k * 1e9 / 1024.0,
        "relay_latency_ns": hist::record_json(&latency, "ns"),
        "relay_latency_rate_per_s": rate,
        "relay_latency_record_bytes": latency_size,
        "harness_1k_frames_per_s": harness_1k_fps,
        "harness_1k_gbps": harness_1k_gbps,
        "harness_64k_frames_per_s": harness_64k_fps,
        "harness_64k_gbps": harness_64k_gbps,
        "bytes_per_bulk_run": bytes,
        "note": "relay = plain two-hop TCP relay, one thread, read/write with a 256 KiB buffer; harness_* = the bench's connector frame writer feeding its browser parser over one loopback socket (no gateway): what one core of the load generator can push",
    }))
}
