//! The relay fanning out one bulk transfer: a sender writes `size` bytes
//! once, in frame-sized writes; the relay thread copies each read to every
//! reader socket in turn ([`copy_to_all`]); readers on a few epoll threads
//! note when each has everything. What a gateway serving one dataset to N
//! browsers at once must at least do, with no gateway work but the copies.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::hist;

use super::{copy_to_all, pair, write_chunks, RELAY_BUFFER_BYTES};

/// How long [`relay_fanout`] waits for its readers before giving up.
pub const RELAY_FANOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// What [`relay_fanout`] measured.
#[derive(Debug)]
pub struct RelayFanout {
    /// Reader sockets.
    pub readers: usize,
    /// Bytes each reader received (all of them: a short reader is an error).
    pub bytes_per_reader: u64,
    /// From the sender's first write until the last reader had everything.
    pub seconds: f64,
    /// Each reader's completion (first write → its last byte), µs.
    pub completion_us: hdrhistogram::Histogram<u64>,
}

impl RelayFanout {
    /// Aggregate delivered bytes per second: readers × bytes / seconds.
    pub fn aggregate_bytes_per_second(&self) -> f64 {
        self.readers as f64 * self.bytes_per_reader as f64 / self.seconds.max(1e-9)
    }
}

/// A plain TCP relay fanning `size` bytes (rounded up to whole
/// `frame_bytes` writes) out to `readers` sockets: one sender thread writing
/// the bytes once, one relay thread writing each read (up to
/// [`RELAY_BUFFER_BYTES`]) to every reader socket in turn (TCP_NODELAY), and
/// `reader_threads` threads reading their share of the sockets with epoll.
/// Every socket is connected before the sender starts, as browsers are
/// connected before they query.
///
/// Errors: socket errors of any thread (a thread that fails closes its
/// sockets, so the others end too), a reader that ended short, or readers
/// still waiting after [`RELAY_FANOUT_TIMEOUT`].
pub fn relay_fanout(
    size: u64,
    frame_bytes: usize,
    readers: usize,
    reader_threads: usize,
) -> std::io::Result<RelayFanout> {
    let frame_bytes = frame_bytes.max(1);
    let chunks = size.div_ceil(frame_bytes as u64);
    let total = chunks * frame_bytes as u64;
    let (sender, from) = pair()?;
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
    let started = Instant::now();
    let deadline = started + RELAY_FANOUT_TIMEOUT;
    let threads = reader_threads.clamp(1, readers.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let share = readers / threads + usize::from(t < readers % threads);
        let mine: Vec<TcpStream> = sockets.drain(..share).collect();
        handles.push(std::thread::spawn(move || bulk_reader(mine, total, started, deadline)));
    }
    // Ends with the sender's socket closed: the relay reads EOF and closes the readers'.
    let sent = write_chunks(sender, total, frame_bytes);
    let mut completion_us = hist::new_us();
    let mut last = Duration::ZERO;
    let mut errors = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(times)) => {
                for t in times {
                    last = last.max(t);
                    hist::record(&mut completion_us, crate::units::sat_u64(t.as_micros()));
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
        return Ok(RelayFanout { readers, bytes_per_reader: total, seconds: last.as_secs_f64(), completion_us });
    }
    let echo =
        |kind: ErrorKind| matches!(kind, ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe | ErrorKind::ConnectionReset);
    let kind = errors.iter().map(|(_, e)| e.kind()).find(|k| !echo(*k)).unwrap_or(errors[0].1.kind());
    let text: Vec<String> = errors.iter().map(|(who, e)| format!("{who}: {e}")).collect();
    Err(std::io::Error::new(kind, format!("relay bulk fan-out: {}", text.join("; "))))
}

/// One reader thread of [`relay_fanout`]: reads `sockets` with epoll until
/// each has `total` bytes; returns each one's time from `started` to its
/// last byte.
fn bulk_reader(
    sockets: Vec<TcpStream>,
    total: u64,
    started: Instant,
    deadline: Instant,
) -> std::io::Result<Vec<Duration>> {
    let mut poll = mio::Poll::new()?;
    let mut readers = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::TcpStream::from_std(socket);
        poll.registry().register(&mut socket, mio::Token(index), mio::Interest::READABLE)?;
        readers.push((socket, 0u64, (total == 0).then_some(Duration::ZERO)));
    }
    let mut open = readers.iter().filter(|(_, _, done)| done.is_none()).count();
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
    while open > 0 {
        let now = Instant::now();
        if now >= deadline {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                format!("{open} reader sockets still short of {total} bytes after {RELAY_FANOUT_TIMEOUT:?}"),
            ));
        }
        match poll.poll(&mut events, Some((deadline - now).min(Duration::from_millis(100)))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            let Some((socket, got, done)) = readers.get_mut(event.token().0) else { continue };
            while done.is_none() {
                match socket.read(&mut buf) {
                    Ok(0) => {
                        return Err(std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!("a reader socket ended after {got} of {total} bytes"),
                        ))
                    }
                    Ok(n) => {
                        *got += n as u64;
                        if *got >= total {
                            *done = Some(started.elapsed());
                            open -= 1;
                            poll.registry().deregister(socket)?;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(readers.into_iter().filter_map(|(_, _, done)| done).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_fanout_delivers_everything_to_every_reader() {
        // 1 MiB in 64 KiB writes to 8 readers on 2 epoll threads.
        let r = relay_fanout(1 << 20, 64 * 1024, 8, 2).expect("relay fan-out runs");
        assert_eq!((r.readers, r.bytes_per_reader), (8, 1 << 20));
        assert_eq!(r.completion_us.len(), 8, "one completion per reader");
        assert!(r.seconds > 0.0 && r.aggregate_bytes_per_second() > 0.0);
        // HDR values are bucketed (3 significant digits): within 1 %.
        let last_us = r.completion_us.max() as f64;
        assert!((last_us - r.seconds * 1e6).abs() <= r.seconds * 1e4 + 1.0, "the last reader sets the time");
    }

    #[test]
    fn relay_fanout_rounds_up_to_whole_writes_and_runs_without_readers() {
        let r = relay_fanout(100_000, 64 * 1024, 3, 4).expect("relay fan-out runs");
        assert_eq!(r.bytes_per_reader, 128 * 1024, "two whole 64 KiB writes");
        assert_eq!(r.completion_us.len(), 3);
        let none = relay_fanout(1 << 16, 1 << 14, 0, 2).expect("no readers");
        assert_eq!((none.readers, none.completion_us.len()), (0, 0));
    }
}
