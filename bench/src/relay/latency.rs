//! The relay's latency: an open-loop sender of records stamped with their
//! scheduled time, through the two-hop relay to one reader
//! ([`relay_latency`]) or fanned out to many readers on a few epoll threads
//! ([`relay_fanout_latency`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::hist;
use crate::wire;

use super::{copy_to_all, pair, Relay, RELAY_BUFFER_BYTES};

/// Records sent in `duration` at `rate` per second.
fn record_count(rate: u64, duration: Duration) -> u64 {
    crate::units::sat_u64(u128::from(rate) * duration.as_nanos() / 1_000_000_000)
}

/// Writes `total` records of `size` (≥ 8) bytes at `rate` per second, open
/// loop: record i is due at t0 + i/rate and carries that scheduled time
/// ([`wire::now_nanos`]) in its first 8 bytes. Records that are due are
/// written together in one `write_all`; between them the sender sleeps.
fn send_paced(socket: &mut TcpStream, rate: u64, size: usize, total: u64) -> std::io::Result<()> {
    let mut record = vec![0u8; size];
    let t0 = wire::now_nanos();
    let mut next = 0u64;
    while next < total {
        let now = wire::now_nanos();
        let due = (crate::units::sat_u64(u128::from(now - t0) * u128::from(rate) / 1_000_000_000) + 1).min(total);
        if due <= next {
            let at = t0 + crate::units::sat_u64(u128::from(next) * 1_000_000_000 / u128::from(rate));
            std::thread::sleep(Duration::from_nanos(at.saturating_sub(now)));
            continue;
        }
        let mut out = Vec::with_capacity(size * usize::try_from(due - next).unwrap_or(1));
        for seq in next..due {
            let scheduled = t0 + crate::units::sat_u64(u128::from(seq) * 1_000_000_000 / u128::from(rate));
            record[..8].copy_from_slice(&scheduled.to_le_bytes());
            out.extend_from_slice(&record);
        }
        socket.write_all(&out)?;
        next = due;
    }
    Ok(())
}

/// The receiving end of one socket of paced records: bytes are cut into
/// whole `size`-byte records, one latency sample (receive time − the
/// record's scheduled time) each.
#[derive(Default)]
struct Records {
    pending: Vec<u8>,
    seen: u64,
}

impl Records {
    /// Adds `data`, received at `now` (Unix nanos).
    fn feed(&mut self, data: &[u8], size: usize, now: u64, h: &mut hdrhistogram::Histogram<u64>) {
        self.pending.extend_from_slice(data);
        let whole = self.pending.len() / size * size;
        for record in self.pending[..whole].chunks_exact(size) {
            hist::record(h, now.saturating_sub(wire::le_u64(record, 0)));
            self.seen += 1;
        }
        self.pending.drain(..whole);
    }
}

/// Latency (ns) through the relay: `rate` records/s of `size` bytes for `duration`, open loop.
pub fn relay_latency(rate: u64, size: usize, duration: Duration) -> std::io::Result<hdrhistogram::Histogram<u64>> {
    let size = size.max(16);
    let relay = Relay::start()?;
    let mut a = TcpStream::connect(relay.upstream)?;
    a.set_nodelay(true)?;
    let mut b = TcpStream::connect(relay.downstream)?;
    b.set_nodelay(true)?;
    let total = record_count(rate, duration);
    let reader = std::thread::spawn(move || {
        let mut h = hist::new_ns();
        let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
        let mut records = Records::default();
        while records.seen < total {
            let Ok(n) = b.read(&mut buf) else { break };
            if n == 0 {
                break;
            }
            records.feed(&buf[..n], size, wire::now_nanos(), &mut h);
        }
        h
    });
    send_paced(&mut a, rate, size, total)?;
    let h = reader.join().map_err(|_| std::io::Error::other("latency reader panicked"))?;
    drop(a);
    let _ = relay.join();
    Ok(h)
}

/// How long past its `duration` [`relay_fanout_latency`] waits for its
/// readers before giving up (a relay that cannot keep up is slow, not stuck).
pub const FANOUT_GRACE: Duration = Duration::from_secs(120);

/// Latency (ns) through a plain TCP relay fanning out to `readers` sockets:
/// a sender paced as in [`relay_latency`] (`rate` records/s of `size` bytes
/// for `duration`, open loop, stamped with their scheduled time), one relay
/// thread writing each read to every reader in turn (the copy loop of
/// [`Relay`], TCP_NODELAY), and `reader_threads` threads each reading its
/// share of the sockets with epoll (mio), non-blocking. One sample per record
/// per reader (receive time − scheduled time): `readers × rate × duration`
/// in all, the deliveries per second of `readers` browsers subscribed to one
/// stream at `rate`, with no gateway work but the copies.
///
/// Errors: socket errors of any thread (a thread that fails closes its
/// sockets, so the others end too), a reader socket that ended before its
/// last record, or readers still waiting [`FANOUT_GRACE`] after `duration`.
pub fn relay_fanout_latency(
    rate: u64,
    size: usize,
    duration: Duration,
    readers: usize,
    reader_threads: usize,
) -> std::io::Result<hdrhistogram::Histogram<u64>> {
    let size = size.max(16);
    let total = record_count(rate, duration);
    // Every socket is connected here, before any thread starts: a failure
    // leaves nothing waiting in `accept`.
    let (mut sender, from) = pair()?;
    let down = TcpListener::bind("127.0.0.1:0")?;
    let mut outs = Vec::with_capacity(readers);
    let mut sockets = Vec::with_capacity(readers);
    for _ in 0..readers {
        sockets.push(TcpStream::connect(down.local_addr()?)?);
        let (to, _) = down.accept()?;
        to.set_nodelay(true)?;
        outs.push(to);
    }
    drop(down);
    let relay = std::thread::spawn(move || copy_to_all(from, outs));
    let deadline = Instant::now() + duration + FANOUT_GRACE;
    let threads = reader_threads.clamp(1, readers.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let share = readers / threads + usize::from(t < readers % threads);
        let mine: Vec<TcpStream> = sockets.drain(..share).collect();
        handles.push(std::thread::spawn(move || fanout_reader(mine, size, total, deadline)));
    }
    let sent = send_paced(&mut sender, rate, size, total);
    // The end of the stream (or of a failed one): the relay reads EOF and
    // closes the readers' sockets.
    drop(sender);
    let mut h = hist::new_ns();
    let mut errors = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(part)) => {
                if let Err(e) = h.add(&part) {
                    errors.push(("merge", std::io::Error::other(format!("{e:?}"))));
                }
            }
            Ok(Err(e)) => errors.push(("reader", e)),
            Err(_) => errors.push(("reader", std::io::Error::other("panicked"))),
        }
    }
    match relay.join() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => errors.push(("relay", e)),
        Err(_) => errors.push(("relay", std::io::Error::other("panicked"))),
    }
    if let Err(e) = sent {
        errors.push(("sender", e));
    }
    if errors.is_empty() {
        return Ok(h);
    }
    // The cause rather than its echoes (closed sockets) decides the kind.
    let echo =
        |kind: ErrorKind| matches!(kind, ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe | ErrorKind::ConnectionReset);
    let kind = errors.iter().map(|(_, e)| e.kind()).find(|k| !echo(*k)).unwrap_or(errors[0].1.kind());
    let text: Vec<String> = errors.iter().map(|(who, e)| format!("{who}: {e}")).collect();
    Err(std::io::Error::new(kind, format!("relay fan-out: {}", text.join("; "))))
}

/// One reader thread of [`relay_fanout_latency`]: reads `sockets` with epoll
/// until each has seen `total` records or its end.
fn fanout_reader(
    sockets: Vec<TcpStream>,
    size: usize,
    total: u64,
    deadline: Instant,
) -> std::io::Result<hdrhistogram::Histogram<u64>> {
    let mut poll = mio::Poll::new()?;
    let mut readers = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::TcpStream::from_std(socket);
        poll.registry().register(&mut socket, mio::Token(index), mio::Interest::READABLE)?;
        readers.push((socket, Records::default(), total == 0));
    }
    let mut open = readers.iter().filter(|(_, _, done)| !done).count();
    let mut h = hist::new_ns();
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
    while open > 0 {
        let now = Instant::now();
        if now >= deadline {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                format!("{open} reader sockets still waiting {FANOUT_GRACE:?} after the last scheduled record"),
            ));
        }
        match poll.poll(&mut events, Some((deadline - now).min(Duration::from_millis(100)))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            let Some((socket, records, done)) = readers.get_mut(event.token().0) else { continue };
            while !*done {
                match socket.read(&mut buf) {
                    Ok(0) => *done = true,
                    Ok(n) => {
                        records.feed(&buf[..n], size, wire::now_nanos(), &mut h);
                        *done = records.seen >= total;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                if *done {
                    open -= 1;
                    poll.registry().deregister(socket)?;
                }
            }
        }
    }
    let short = readers.iter().filter(|(_, records, _)| records.seen < total).count();
    if short > 0 {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("{short} of {} reader sockets ended before all {total} records", readers.len()),
        ));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_fanout_latency_samples_every_record_at_every_reader() {
        // 2000/s for 0.5 s = 1000 records of 64 bytes, to 8 readers on 2 epoll threads.
        let h = relay_fanout_latency(2000, 64, Duration::from_millis(500), 8, 2).expect("relay fan-out runs");
        assert_eq!(h.len(), 8 * 1000, "one sample per record per reader");
        assert!(h.min() > 0, "latencies are positive: {}", h.min());
    }

    #[test]
    fn relay_fanout_latency_without_readers_ends() {
        let h = relay_fanout_latency(1000, 64, Duration::from_millis(20), 0, 4).expect("relay fan-out runs");
        assert!(h.is_empty());
    }
}
