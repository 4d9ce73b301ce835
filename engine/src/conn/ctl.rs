//! A connection's kill switch ([`ConnCtl`], `or_killed!`) and the guard
//! that pulls it when a helper task ends ([`KillOnDrop`]).

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::task::Waker;

/// Kill switch of one connection: ends its in-flight read and write.
///
/// Every IO operation of a connection runs under `or_killed!`, which
/// stops waiting for it once the connection is killed; dropping the
/// operation makes monoio cancel it in the kernel (feature `async-cancel`)
/// and keep its buffer until the cancellation completes. A kill is final —
/// the connection is never read again — so the bytes a dropped read may have
/// taken are not needed (that loss is why a timeout must
/// not drop a read it goes on from). Unlike monoio's `Canceller`, this costs
/// no allocation per connection or per operation (memory per idle session).
#[derive(Default)]
pub struct ConnCtl {
    killed: Cell<bool>,
    ready: Cell<bool>,
    /// The task waiting on this connection's reads, and on its writes.
    wakers: [Cell<Option<Waker>>; 2],
}

/// Which of a connection's waiters an operation belongs to: a connection
/// has at most one task waiting on reads (its reader) and one on writes
/// (its writer) at a time.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// Reads (and the TLS handshake, before any other task exists).
    Read = 0,
    /// Writes and shutdown.
    Write = 1,
}

impl ConnCtl {
    /// A live connection's control.
    pub fn new() -> Rc<ConnCtl> {
        Rc::new(ConnCtl::default())
    }

    /// Remembers the task waiting on `side`, to wake it on kill.
    pub fn register(&self, side: Side, waker: &Waker) {
        self.waker(side).set(Some(waker.clone()));
    }

    /// Forgets the task waiting on `side` (its operation completed).
    pub fn deregister(&self, side: Side) {
        self.waker(side).set(None);
    }

    fn waker(&self, side: Side) -> &Cell<Option<Waker>> {
        let [read, write] = &self.wakers;
        match side {
            Side::Read => read,
            Side::Write => write,
        }
    }

    /// Ends every in-flight operation; later operations fail at once.
    pub fn kill(&self) {
        if self.killed.replace(true) {
            return;
        }
        for slot in &self.wakers {
            if let Some(waker) = slot.take() {
                waker.wake();
            }
        }
    }

    /// True after [`ConnCtl::kill`].
    pub fn killed(&self) -> bool {
        self.killed.get()
    }

    /// The handshake is done (upgrade answered; for a connector, registered):
    /// the handshake deadline no longer applies.
    pub fn mark_ready(&self) {
        self.ready.set(true);
    }

    /// True after [`ConnCtl::mark_ready`].
    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }
}

/// The error an operation ends with when its connection was killed.
pub fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed by the gateway")
}

/// `or_killed!(ctl, side, future)` awaits `future` unless the connection
/// `ctl` (a `&ConnCtl`) is or gets killed first: `Some(output)`, or `None`
/// once killed (the future is then dropped, which cancels its operation).
/// `side` says which waiter slot the calling task uses ([`Side`]). A macro
/// rather than a function so the operation's future is stored in the
/// caller's own state, not in one more nested future.
macro_rules! or_killed {
    ($ctl:expr, $side:expr, $future:expr) => {{
        let ctl: &$crate::conn::ConnCtl = $ctl;
        let side: $crate::conn::Side = $side;
        let mut future = ::std::pin::pin!($future);
        ::std::future::poll_fn(|cx| {
            if ctl.killed() {
                return ::std::task::Poll::Ready(None);
            }
            ctl.register(side, cx.waker());
            let output = ::std::task::ready!(::std::future::Future::poll(future.as_mut(), cx));
            ctl.deregister(side);
            ::std::task::Poll::Ready(Some(output))
        })
        .await
    }};
}
pub(crate) use or_killed;

/// Kills its connection when dropped, unless disarmed: held by a
/// connection's helper tasks (writer, command loop, heartbeat), so that one
/// of them ending — or being dropped after a panic — ends the whole
/// connection, never half of it.
pub struct KillOnDrop(Option<Rc<ConnCtl>>);

impl KillOnDrop {
    /// Arms the guard for `ctl`.
    pub fn new(ctl: Rc<ConnCtl>) -> KillOnDrop {
        KillOnDrop(Some(ctl))
    }

    /// The task ends normally and must not kill its connection.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(ctl) = self.0.take() {
            ctl.kill();
        }
    }
}
