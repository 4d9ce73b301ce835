//! The harness's own capacity: the simulated connector's frame writer
//! feeding the browser parser directly, no gateway.

use std::io::{Read, Write};
use std::time::Instant;

use crate::wire::{self, Event, Parser, HEADER_BYTES, OP_BINARY};

use super::{pair, RELAY_BUFFER_BYTES};

/// The harness's own capacity: the connector's batched, patched frame
/// writes (`frame_bytes` payload) into one loopback socket read by the
/// browser parser. Returns (frames/s, payload GB/s).
pub fn harness_capacity(frame_bytes: usize, frames: u64) -> std::io::Result<(f64, f64)> {
    let (mut a, mut b) = pair()?;
    let reader = std::thread::spawn(move || {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
        let mut count = 0u64;
        while let Ok(n) = b.read(&mut buf) {
            if n == 0 {
                break;
            }
            // A server frame looks like a client frame without mask: strip it below.
            parser.feed(&buf[..n], |e| {
                if let Event::Binary { .. } = e {
                    count += 1;
                }
            });
        }
        count
    });
    // Server-style (unmasked) frames so the browser parser accepts them; the
    // writer's work (patch + write) is the same as the connector's.
    let mut one = wire::client_frame_header(OP_BINARY, HEADER_BYTES + frame_bytes);
    one[1] &= 0x7F;
    one.truncate(one.len() - 4);
    let frame_len = one.len() + HEADER_BYTES + frame_bytes;
    one.resize(frame_len, 5);
    let per_batch = (64 * 1024 / frame_len).clamp(1, 256);
    let mut batch = one.repeat(per_batch);
    let start = Instant::now();
    let mut seq = 0u64;
    while seq < frames {
        let n = per_batch.min(usize::try_from(frames - seq).unwrap_or(per_batch));
        let now = wire::now_nanos();
        for k in 0..n {
            let at = k * frame_len + frame_len - frame_bytes - HEADER_BYTES;
            batch[at + 8..at + 16].copy_from_slice(&(seq + k as u64).to_le_bytes());
            if frame_bytes >= 16 {
                batch[at + 16..at + 24].copy_from_slice(&now.to_le_bytes());
            }
        }
        a.write_all(&batch[..n * frame_len])?;
        seq += n as u64;
    }
    drop(a);
    let got = reader.join().unwrap_or(0);
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    Ok((got as f64 / elapsed, got as f64 * frame_bytes as f64 / elapsed / 1e9))
}
