//! What a connection sends, on its way to the socket: the bounded queue to
//! the writer task, and the control packets that found it full.
//!
//! The writer task gathers whatever is queued into one write. A client that
//! does not read fills the queue; then deliveries stop (they wait in the
//! subscriber's queue, where flow control holds publishers back) and so does
//! reading, but a control packet the session owes (PUBACK, PINGRESP, ...) is
//! never lost: it waits in `overflow`, which only the packets of requests
//! already read can fill, and goes first once there is room.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::mpsc;

/// What came of queueing a packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// On its way to the writer.
    Sent,
    /// Kept until the writer has room: wait for it ([`Outbound::room`]).
    Held,
    /// The writer is gone (the socket closed).
    Closed,
}

/// The sending side of one connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    writer: mpsc::Sender<Bytes>,
    /// Control packets that found the writer queue full, in order.
    overflow: VecDeque<Bytes>,
}

impl Outbound {
    pub(crate) fn new(writer: mpsc::Sender<Bytes>) -> Outbound {
        Outbound {
            writer,
            overflow: VecDeque::new(),
        }
    }

    /// Whether a delivery (a PUBLISH) may be queued now.
    pub(crate) fn has_room(&self) -> bool {
        self.overflow.is_empty() && self.writer.capacity() > 0
    }

    /// Queues a control packet: never dropped, kept when the writer is full.
    pub(crate) fn control(&mut self, packet: Bytes) -> Queued {
        if !self.overflow.is_empty() {
            self.overflow.push_back(packet);
            return Queued::Held;
        }
        match self.writer.try_send(packet) {
            Ok(()) => Queued::Sent,
            Err(mpsc::error::TrySendError::Full(packet)) => {
                self.overflow.push_back(packet);
                Queued::Held
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Queued::Closed,
        }
    }

    /// Queues a delivery; the caller checked [`Outbound::has_room`].
    pub(crate) fn delivery(&mut self, packet: Bytes) -> Queued {
        match self.writer.try_send(packet) {
            Ok(()) => Queued::Sent,
            Err(mpsc::error::TrySendError::Full(packet)) => {
                // Only when has_room was not asked: keep order all the same.
                self.overflow.push_back(packet);
                Queued::Held
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Queued::Closed,
        }
    }

    /// Resolves when the writer has room for one more packet (false: it is gone).
    pub(crate) fn room(&self) -> impl std::future::Future<Output = bool> + 'static {
        let writer = self.writer.clone();
        async move { writer.reserve().await.is_ok() }
    }

    /// Moves held packets to the writer as far as it has room: `Sent` when
    /// none is left held.
    pub(crate) fn flush(&mut self) -> Queued {
        while let Some(packet) = self.overflow.pop_front() {
            match self.writer.try_send(packet) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(packet)) => {
                    self.overflow.push_front(packet);
                    return Queued::Held;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Queued::Closed,
            }
        }
        Queued::Sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn p(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn control_packets_wait_when_the_writer_is_full_and_keep_their_order() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut out = Outbound::new(tx);
        assert_eq!(out.delivery(p(1)), Queued::Sent);
        assert!(out.has_room());
        assert_eq!(out.control(p(2)), Queued::Sent);
        assert!(!out.has_room());
        assert_eq!(out.control(p(3)), Queued::Held);
        assert_eq!(
            out.control(p(4)),
            Queued::Held,
            "behind the held one, not around it"
        );
        assert_eq!(rx.try_recv().ok(), Some(p(1)));
        assert!(!out.has_room(), "held packets go before any delivery");
        assert_eq!(out.flush(), Queued::Held, "room for one of the two");
        assert_eq!(rx.try_recv().ok(), Some(p(2)));
        assert_eq!(out.flush(), Queued::Sent);
        assert_eq!(rx.try_recv().ok(), Some(p(3)));
        assert_eq!(rx.try_recv().ok(), Some(p(4)));
        assert!(out.has_room());
    }

    #[test]
    fn room_resolves_once_the_writer_takes_a_packet_and_closed_is_told() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut out = Outbound::new(tx);
        out.delivery(p(1));
        let room = out.room();
        let mut room = Box::pin(room);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(room.as_mut().poll(&mut cx).is_pending());
        rx.try_recv().ok();
        assert_eq!(room.as_mut().poll(&mut cx), std::task::Poll::Ready(true));
        drop(rx);
        assert_eq!(out.control(p(2)), Queued::Closed);
    }
}
