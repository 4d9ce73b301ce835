//! TLS on the gateway's listener (`tls.cert`, `tls.key`): rustls 0.23 with
//! the `ring` provider, driven sans-IO over the worker's own (io_uring or epoll)
//! reads and writes, so timeouts and kills end TLS sessions exactly like
//! plain ones (monoio-rustls's `writev` writes one iovec at a time).
//!
//! The certificate lives in a [`CertStore`] that every new handshake asks;
//! [`CertStore::reload`] (SIGHUP in `volley gateway`) swaps it without
//! touching open sessions. A reload that fails keeps the old certificate.
//!
//! TLS encrypts, hence copies: zero-copy forwarding holds for `ws://`; a
//! `wss://` session costs one encryption pass per subscriber.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::BufResult;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use crate::conn::transport::{write_all_plain, ConnRead, ConnWrite};
use crate::conn::writev::WriteBatch;

/// Ciphertext read buffer of one TLS session: one whole record (16 KiB of
/// plaintext plus the record overhead) per read.
pub const TLS_READ_CHUNK_BYTES: usize = 17 * 1024 + 512;
/// Encrypted bytes one TLS session queues before writing them out; a
/// larger buffer means fewer, larger socket writes.
pub const TLS_SEND_BUFFER_BYTES: usize = 256 * 1024;

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{what} {path}: {message}")]
    File {
        /// `tls.cert` or `tls.key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The key does not fit the certificate, or rustls refused the pair.
    #[error("tls: {0}")]
    Rustls(String),
}

/// The certificate every new handshake uses; swappable.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").field("cert", &self.cert_path).field("key", &self.key_path).finish()
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let file_error = |what, path: &Path, message: String| TlsError::File { what, path: path.to_owned(), message };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| file_error("tls.cert", cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error("tls.cert", cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error("tls.cert", cert_path, "no CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error("tls.key", key_path, e.to_string()))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| file_error("tls.key", key_path, format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::Rustls(format!("tls.key does not match tls.cert: {e}")))?;
    Ok(certified)
}

impl CertStore {
    /// Loads the pair once; a bad pair refuses to start.
    pub fn open(cert_path: &Path, key_path: &Path) -> Result<CertStore, TlsError> {
        let current = load(cert_path, key_path)?;
        Ok(CertStore {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Reads both files again; new handshakes use the new pair, open
    /// sessions keep theirs. On error the old pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.cert_path, &self.key_path)?;
        *self.current.write() = Arc::new(fresh);
        Ok(())
    }

    /// The leaf certificate now served (DER); always `Some`, as `load`
    /// refuses a file without a certificate.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.read().cert.first().cloned()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// Server-side TLS for the listener.
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
}

impl TlsAcceptor {
    /// Builds the rustls configuration around the certificate pair.
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
        let store = Arc::new(CertStore::open(cert_path, key_path)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor { config: Arc::new(config), store })
    }

    /// The certificate store (for reloads).
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Runs the handshake on an accepted connection and returns its halves.
    /// The caller bounds it in time (it runs under `or_killed!`).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<(TlsReadHalf, TlsWriteHalf)> {
        let mut session = ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        session.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
        let session = Rc::new(RefCell::new(session));
        let (read, write) = stream.into_split();
        let mut reader = TlsReadHalf { tcp: read, session: session.clone(), cipher: Vec::new(), start: 0, eof: false };
        let mut writer = TlsWriteHalf { tcp: write, session, out: Vec::new() };
        loop {
            writer.flush().await?;
            if !reader.session.borrow().is_handshaking() {
                return Ok((reader, writer));
            }
            if let Err(e) = reader.feed().await {
                // A protocol error queued an alert: tell the peer why.
                let _ = writer.flush().await;
                return Err(e);
            }
            if reader.eof && reader.session.borrow().is_handshaking() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed during the TLS handshake"));
            }
        }
    }
}

/// Read half of a TLS session.
pub struct TlsReadHalf {
    tcp: OwnedReadHalf<TcpStream>,
    session: Rc<RefCell<ServerConnection>>,
    /// Ciphertext read from the socket; `cipher[start..]` is not yet fed to rustls.
    cipher: Vec<u8>,
    start: usize,
    eof: bool,
}

impl TlsReadHalf {
    /// Feeds rustls more ciphertext, reading from the socket when none is
    /// pending, and decrypts what it can.
    async fn feed(&mut self) -> io::Result<()> {
        if self.start >= self.cipher.len() {
            if self.eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut buf = std::mem::take(&mut self.cipher);
            buf.clear();
            if buf.capacity() < TLS_READ_CHUNK_BYTES {
                buf.reserve_exact(TLS_READ_CHUNK_BYTES);
            }
            let (result, buf) = self.tcp.read(buf).await;
            self.cipher = buf;
            self.start = 0;
            if result? == 0 {
                self.eof = true;
                let mut session = self.session.borrow_mut();
                session.read_tls(&mut io::empty())?;
                session.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return Ok(());
            }
        }
        let mut session = self.session.borrow_mut();
        // `start` only grows by what rustls took from this tail, and the
        // refill above runs once it reaches the end, so the tail is non-empty.
        let mut pending = self.cipher.get(self.start..).unwrap_or_default();
        let taken = session.read_tls(&mut pending)?;
        self.start += taken;
        session.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(())
    }
}

impl ConnRead for TlsReadHalf {
    async fn read_into(&mut self, slice: SliceMut<BytesMut>) -> BufResult<usize, SliceMut<BytesMut>> {
        let (start, end) = (slice.begin(), slice.end());
        let mut buf = slice.into_inner();
        let (result, buf) = loop {
            {
                let mut session = self.session.borrow_mut();
                let mut reader = session.reader();
                let copied = match reader.fill_buf() {
                    Ok(chunk) => {
                        // Empty: the peer sent close_notify.
                        let room = end.saturating_sub(buf.len());
                        let part = chunk.get(..room).unwrap_or(chunk);
                        buf.extend_from_slice(part);
                        part.len()
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => usize::MAX,
                    // A TCP close without close_notify ends the stream too.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                    Err(e) => break (Err(e), buf),
                };
                if copied != usize::MAX {
                    reader.consume(copied);
                    break (Ok(copied), buf);
                }
            }
            if let Err(e) = self.feed().await {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    break (Ok(0), buf);
                }
                break (Err(e), buf);
            }
        };
        (result, buf.slice_mut(start..end))
    }
}

/// Write half of a TLS session.
pub struct TlsWriteHalf {
    tcp: OwnedWriteHalf<TcpStream>,
    session: Rc<RefCell<ServerConnection>>,
    /// Encrypted bytes on their way to the socket (reused).
    out: Vec<u8>,
}

impl TlsWriteHalf {
    /// Writes out everything rustls has queued (records, alerts, tickets).
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            {
                let mut session = self.session.borrow_mut();
                while session.wants_write() {
                    session.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                self.out = out;
                return Ok(());
            }
            let (result, out) = write_all_plain(&mut self.tcp, out).await;
            self.out = out;
            result?;
        }
    }

    /// Hands plaintext to rustls (up to its send buffer) and writes it out.
    async fn write_plain(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        self.flush().await?;
        let taken = {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
            self.session.borrow_mut().writer().write_vectored(&slices)?
        };
        self.flush().await?;
        Ok(taken)
    }
}

impl ConnWrite for TlsWriteHalf {
    async fn write_batch(&mut self, batch: WriteBatch) -> (io::Result<usize>, WriteBatch) {
        let result = {
            let parts = batch.remaining_parts();
            self.write_plain(&parts).await
        };
        (result, batch)
    }

    async fn write_bytes(&mut self, bytes: Bytes) -> io::Result<()> {
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            match self.write_plain(&[rest]).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => rest = rest.get(n..).unwrap_or_default(),
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush().await?;
        ConnWrite::shutdown(&mut self.tcp).await
    }
}
