//! What the connection code reads from and writes to: the two halves of a
//! plain TCP connection (`ws://`, zero-copy) or of a TLS session
//! ([`crate::conn::tls`], `wss://`, which encrypts and therefore copies).
//!
//! The operations do not know about cancellation: callers run each one
//! under `conn::or_killed!`, which stops waiting once the
//! connection is killed (a kill is final; see [`crate::conn::ConnCtl`]).
//! The engine's code is generic over these traits, so the plain path is
//! compiled on its own and pays nothing for TLS.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBuf, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::conn::writev::WriteBatch;

/// The read side of a connection.
#[allow(async_fn_in_trait)] // single-threaded runtime: futures are never sent
pub trait ConnRead {
    /// Reads once into `slice`, a buffer's spare room from its length up to
    /// where the read may end (`buf.slice_mut(buf.len()..end)`), appending
    /// to the buffer; `Ok(0)` at end of stream. The plain socket returns
    /// monoio's read future itself: no wrapper future, which would hold the
    /// buffer twice for as long as an idle session's read is pending (ARCHITECTURE.md, "Memory per idle session").
    fn read_into(&mut self, slice: SliceMut<BytesMut>) -> impl Future<Output = BufResult<usize, SliceMut<BytesMut>>>;
}

/// The write side of a connection.
#[allow(async_fn_in_trait)] // single-threaded runtime: futures are never sent
pub trait ConnWrite {
    /// Writes part or all of `batch` (one `writev`'s worth) and returns how
    /// many of its remaining bytes were taken.
    async fn write_batch(&mut self, batch: WriteBatch) -> (io::Result<usize>, WriteBatch);

    /// Writes all of `bytes` (HTTP responses before the upgrade).
    async fn write_bytes(&mut self, bytes: Bytes) -> io::Result<()>;

    /// Ends the stream cleanly (TLS `close_notify`, then TCP FIN).
    async fn shutdown(&mut self) -> io::Result<()>;
}

impl ConnRead for OwnedReadHalf<TcpStream> {
    fn read_into(&mut self, slice: SliceMut<BytesMut>) -> impl Future<Output = BufResult<usize, SliceMut<BytesMut>>> {
        self.read(slice)
    }
}

/// Writes all of `buf` with plain `write`s, however many partial writes it
/// takes, and gives the buffer back (so a caller can reuse it).
pub(crate) async fn write_all_plain<W: AsyncWriteRent, B: IoBuf>(writer: &mut W, mut buf: B) -> (io::Result<()>, B) {
    let mut offset = 0;
    while offset < buf.bytes_init() {
        let (result, slice) = writer.write(buf.slice(offset..)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => offset += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

macro_rules! plain_write {
    ($ty:ty) => {
        impl ConnWrite for $ty {
            async fn write_batch(&mut self, batch: WriteBatch) -> (io::Result<usize>, WriteBatch) {
                self.writev(batch).await
            }

            async fn write_bytes(&mut self, bytes: Bytes) -> io::Result<()> {
                write_all_plain(self, bytes).await.0
            }

            async fn shutdown(&mut self) -> io::Result<()> {
                AsyncWriteRent::shutdown(self).await
            }
        }
    };
}

plain_write!(OwnedWriteHalf<TcpStream>);
plain_write!(TcpStream);
