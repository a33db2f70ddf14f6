//! A gate on the socket's read side: while any reason to hold back is set, the
//! session reads no further packets (the flow-control guarantee: "their sockets are read no
//! further"), yet keeps handling its mailbox: a takeover, a revocation or a
//! slow-consumer kick still gets through. (`Context::wait` would stop those too.)

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::Stream;

/// Reasons to stop reading, as bits.
pub(crate) const WINDOW_FULL: u8 = 1;
pub(crate) const WRITER_FULL: u8 = 2;
pub(crate) const CONNECTING: u8 = 4;
pub(crate) const CLOSING: u8 = 8;

#[derive(Default)]
struct Inner {
    held: u8,
    waker: Option<Waker>,
}

/// Shared between the session and its read stream (same thread: `Rc`).
#[derive(Clone, Default)]
pub(crate) struct Gate(Rc<RefCell<Inner>>);

impl Gate {
    /// Holds for exactly these reasons (none: reading goes on). The session
    /// derives them from its phase and its windows after every change.
    pub(crate) fn set(&self, reasons: u8) {
        let mut g = self.0.borrow_mut();
        let before = g.held;
        g.held = reasons;
        if before != 0 && reasons == 0 {
            if let Some(w) = g.waker.take() {
                w.wake();
            }
        }
    }
}

/// A stream that yields nothing while its gate is held.
pub(crate) struct Gated<S> {
    pub(crate) inner: S,
    pub(crate) gate: Gate,
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        {
            let mut g = self.gate.0.borrow_mut();
            if g.held != 0 {
                g.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
