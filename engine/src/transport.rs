//! What the connection code reads from and writes to: the two halves of a
//! plain TCP connection (`ws://`, zero-copy) or of a TLS session
//! ([`crate::tls`], `wss://`, which encrypts and therefore copies).
//!
//! Every operation takes the connection's [`CancelHandle`]: a timeout or a
//! kill cancels the in-flight io_uring operation instead of dropping it
//! (dropping an in-flight read loses the bytes it read — FIELD-NOTES.md).
//! The engine's code is generic over these traits, so the plain path is
//! compiled on its own and pays nothing for TLS.

use std::io;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{CancelHandle, CancelableAsyncReadRent, CancelableAsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};
use monoio::net::TcpStream;

use crate::writev::WriteBatch;

/// The read side of a connection.
#[allow(async_fn_in_trait)] // single-threaded runtime: futures are never sent
pub trait ConnRead {
    /// Reads once, appending to `buf` up to `end` (`buf.len() < end <=
    /// buf.capacity()`); `Ok(0)` at end of stream.
    async fn read_into(&mut self, buf: BytesMut, end: usize, cancel: CancelHandle) -> (io::Result<usize>, BytesMut);
}

/// The write side of a connection.
#[allow(async_fn_in_trait)] // single-threaded runtime: futures are never sent
pub trait ConnWrite {
    /// Writes part or all of `batch` (one `writev`'s worth) and returns how
    /// many of its remaining bytes were taken.
    async fn write_batch(&mut self, batch: WriteBatch, cancel: CancelHandle) -> (io::Result<usize>, WriteBatch);

    /// Writes all of `bytes` (HTTP responses before the upgrade).
    async fn write_bytes(&mut self, bytes: Bytes, cancel: CancelHandle) -> io::Result<()>;

    /// Ends the stream cleanly (TLS `close_notify`, then TCP FIN).
    async fn shutdown(&mut self, cancel: CancelHandle) -> io::Result<()>;
}

impl ConnRead for OwnedReadHalf<TcpStream> {
    async fn read_into(&mut self, buf: BytesMut, end: usize, cancel: CancelHandle) -> (io::Result<usize>, BytesMut) {
        let start = buf.len();
        let (result, slice) = self.cancelable_read(buf.slice_mut(start..end), cancel).await;
        (result, slice.into_inner())
    }
}

/// Writes all of `buf` with plain `write`s, however many partial writes it
/// takes, and gives the buffer back (so a caller can reuse it).
pub(crate) async fn write_all_plain<W: CancelableAsyncWriteRent, B: IoBuf>(
    writer: &mut W,
    mut buf: B,
    cancel: CancelHandle,
) -> (io::Result<()>, B) {
    let mut offset = 0;
    while offset < buf.bytes_init() {
        let (result, slice) = writer.cancelable_write(buf.slice(offset..), cancel.clone()).await;
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
            async fn write_batch(
                &mut self,
                batch: WriteBatch,
                cancel: CancelHandle,
            ) -> (io::Result<usize>, WriteBatch) {
                self.cancelable_writev(batch, cancel).await
            }

            async fn write_bytes(&mut self, bytes: Bytes, cancel: CancelHandle) -> io::Result<()> {
                write_all_plain(self, bytes, cancel).await.0
            }

            async fn shutdown(&mut self, cancel: CancelHandle) -> io::Result<()> {
                self.cancelable_shutdown(cancel).await
            }
        }
    };
}

plain_write!(OwnedWriteHalf<TcpStream>);
plain_write!(TcpStream);
