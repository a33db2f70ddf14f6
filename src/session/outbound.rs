//! What a connection sends, on its way to the socket: the bounded queue to
//! the writer, and the control packets that found it full.
//!
//! The writer gathers whatever is queued into one write. It is a task that
//! exists only while there is something to write: it takes the socket's
//! write half when the first packet is queued, writes until the queue is
//! empty, then gives the write half back and ends, so an idle connection
//! holds neither a task nor a queue block, only an empty queue.
//!
//! A client that does not read fills the queue; then deliveries stop (they
//! wait in the subscriber's queue, where flow control holds publishers back)
//! and so does reading, but a control packet the session owes (PUBACK,
//! PINGRESP, ...) is never lost: it waits in `overflow`, which only the
//! packets of requests already read can fill, and goes first once there is
//! room.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::AbortHandle;

/// How much the writer gathers into one write: enough to batch a burst of
/// small packets into few syscalls.
const WRITE_BUFFER: usize = 16 * 1024;

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

/// The socket's write half, whatever the transport.
type Sink = Box<dyn AsyncWrite + Unpin>;

/// What the session and its writer share (one thread: `Rc`).
struct Shared {
    /// Packets queued and not yet taken by the writer; at most `cap`.
    queue: VecDeque<Bytes>,
    cap: usize,
    /// The write half while no writer task has it.
    io: Option<Sink>,
    /// The running writer task, if there is one.
    task: Option<AbortHandle>,
    /// The session waits for room in the queue.
    room: Option<Waker>,
    /// A write failed: the socket is gone.
    closed: bool,
    /// The session ended: the writer writes what is queued, then shuts the
    /// socket down.
    ended: bool,
}

impl Shared {
    fn wake_room(&mut self) {
        if let Some(w) = self.room.take() {
            w.wake();
        }
    }
}

enum Refused {
    Full(Bytes),
    Closed,
}

/// The sending side of one connection.
pub(crate) struct Outbound {
    shared: Rc<RefCell<Shared>>,
    /// Control packets that found the writer queue full, in order.
    overflow: VecDeque<Bytes>,
}

impl Outbound {
    /// The sending side of `io`, queueing at most `cap` packets.
    pub(crate) fn new<W: AsyncWrite + Unpin + 'static>(io: W, cap: usize) -> Outbound {
        Outbound {
            shared: Rc::new(RefCell::new(Shared {
                queue: VecDeque::new(),
                cap: cap.max(1),
                io: Some(Box::new(io)),
                task: None,
                room: None,
                closed: false,
                ended: false,
            })),
            overflow: VecDeque::new(),
        }
    }

    /// Queues a packet, starting the writer if it is not running.
    fn push(&self, packet: Bytes) -> Result<(), Refused> {
        let mut s = self.shared.borrow_mut();
        if s.closed {
            return Err(Refused::Closed);
        }
        if s.queue.len() >= s.cap {
            return Err(Refused::Full(packet));
        }
        s.queue.push_back(packet);
        if let Some(io) = s.io.take() {
            let task = actix::spawn(write_out(self.shared.clone(), io));
            s.task = Some(task.abort_handle());
        }
        Ok(())
    }

    /// Whether a delivery (a PUBLISH) may be queued now.
    pub(crate) fn has_room(&self) -> bool {
        let s = self.shared.borrow();
        self.overflow.is_empty() && s.queue.len() < s.cap
    }

    /// Queues a control packet: never dropped, kept when the writer is full.
    pub(crate) fn control(&mut self, packet: Bytes) -> Queued {
        if !self.overflow.is_empty() {
            self.overflow.push_back(packet);
            return Queued::Held;
        }
        match self.push(packet) {
            Ok(()) => Queued::Sent,
            Err(Refused::Full(packet)) => {
                self.overflow.push_back(packet);
                Queued::Held
            }
            Err(Refused::Closed) => Queued::Closed,
        }
    }

    /// Queues a delivery; the caller checked [`Outbound::has_room`].
    pub(crate) fn delivery(&mut self, packet: Bytes) -> Queued {
        match self.push(packet) {
            Ok(()) => Queued::Sent,
            Err(Refused::Full(packet)) => {
                // Only when has_room was not asked: keep order all the same.
                self.overflow.push_back(packet);
                Queued::Held
            }
            Err(Refused::Closed) => Queued::Closed,
        }
    }

    /// Resolves when the writer has room for one more packet (false: it is gone).
    pub(crate) fn room(&self) -> impl std::future::Future<Output = bool> + 'static {
        let shared = self.shared.clone();
        futures::future::poll_fn(move |cx| {
            let mut s = shared.borrow_mut();
            if s.closed {
                Poll::Ready(false)
            } else if s.queue.len() < s.cap {
                Poll::Ready(true)
            } else {
                s.room = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// Moves held packets to the writer as far as it has room: `Sent` when
    /// none is left held.
    pub(crate) fn flush(&mut self) -> Queued {
        while let Some(packet) = self.overflow.pop_front() {
            match self.push(packet) {
                Ok(()) => {}
                Err(Refused::Full(packet)) => {
                    self.overflow.push_front(packet);
                    return Queued::Held;
                }
                Err(Refused::Closed) => return Queued::Closed,
            }
        }
        Queued::Sent
    }

    /// The session ended: what is queued is still written, then the socket
    /// is shut down; a writer still at it after `grace` is stopped (a
    /// client that does not read).
    pub(crate) fn end(&mut self, grace: Duration) {
        let mut s = self.shared.borrow_mut();
        s.ended = true;
        // What waited for room (the DISCONNECT that says why, most often)
        // goes last, within the same grace: past the queue's cap, but only
        // the answers to requests already read are ever held.
        if !s.closed {
            s.queue.extend(self.overflow.drain(..));
        }
        if let Some(io) = s.io.take() {
            if s.queue.is_empty() {
                actix::spawn(async move {
                    let mut io = io;
                    let _ = tokio::time::timeout(grace, io.shutdown()).await;
                });
            } else {
                let task = actix::spawn(write_out(self.shared.clone(), io)).abort_handle();
                s.task = Some(task.clone());
                actix::spawn(async move {
                    tokio::time::sleep(grace).await;
                    task.abort();
                });
            }
        } else if let Some(task) = s.task.clone() {
            actix::spawn(async move {
                tokio::time::sleep(grace).await;
                task.abort();
            });
        }
    }
}

/// The writer: writes what is queued, gathered into one buffer when there
/// is more than one packet, until the queue is empty; then it gives the
/// write half back and ends (or, when the session has ended, shuts it down).
async fn write_out(shared: Rc<RefCell<Shared>>, mut io: Sink) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let first = {
            let mut s = shared.borrow_mut();
            let Some(first) = s.queue.pop_front() else {
                // Nothing is kept for the next burst.
                s.queue = VecDeque::new();
                s.task = None;
                if s.ended {
                    break;
                }
                s.io = Some(io);
                return;
            };
            if !s.queue.is_empty() {
                buf.extend_from_slice(&first);
                while buf.len() < WRITE_BUFFER {
                    match s.queue.pop_front() {
                        Some(more) => buf.extend_from_slice(&more),
                        None => break,
                    }
                }
            }
            s.wake_room();
            first
        };
        // One packet alone (the common case of an idle device's ping): no copy.
        let data: &[u8] = if buf.is_empty() { &first } else { &buf };
        let written = io.write_all(data).await;
        let written = match written {
            Ok(()) => io.flush().await,
            Err(e) => Err(e),
        };
        if written.is_err() {
            let mut s = shared.borrow_mut();
            s.closed = true;
            s.queue = VecDeque::new();
            s.task = None;
            s.wake_room();
            return;
        }
        buf.clear();
        if shared.borrow().queue.is_empty() {
            buf = Vec::new();
        }
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use tokio::io::AsyncReadExt;

    fn p(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    /// Runs `f` on a local set, as a session's arbiter does.
    fn local<F: Future<Output = ()>>(f: F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    #[test]
    fn control_packets_wait_when_the_writer_is_full_and_keep_their_order() {
        local(async {
            let (client, mut server) = tokio::io::duplex(1024);
            let mut out = Outbound::new(client, 2);
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
            assert!(!out.has_room(), "held packets go before any delivery");
            assert!(out.room().await, "the writer takes the queue");
            assert_eq!(out.flush(), Queued::Sent);
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(got, [1, 2, 3, 4]);
            assert!(out.has_room());
        });
    }

    #[test]
    fn the_writer_exists_only_while_something_is_queued() {
        local(async {
            let (client, mut server) = tokio::io::duplex(1024);
            let mut out = Outbound::new(client, 4);
            assert!(out.shared.borrow().io.is_some(), "idle: no writer task");
            out.control(p(7));
            assert!(out.shared.borrow().task.is_some());
            let mut got = [0u8; 1];
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(got, [7]);
            // The writer gives the write half back once the queue is empty.
            while out.shared.borrow().io.is_none() {
                tokio::task::yield_now().await;
            }
            {
                let s = out.shared.borrow();
                assert!(s.task.is_none());
                assert_eq!(s.queue.capacity(), 0, "no queue block kept");
            }
            out.control(p(8));
            out.end(Duration::from_secs(5));
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.expect("read");
            assert_eq!(rest, [8], "queued before the end, written, then shut down");
        });
    }

    #[test]
    fn packets_held_for_room_are_written_after_the_end_too() {
        local(async {
            let (client, mut server) = tokio::io::duplex(1024);
            let mut out = Outbound::new(client, 1);
            assert_eq!(out.delivery(p(1)), Queued::Sent);
            assert_eq!(out.control(p(2)), Queued::Held, "the queue is full");
            out.end(Duration::from_secs(5));
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.expect("read");
            assert_eq!(rest, [1, 2], "the held packet went last, then the shutdown");
        });
    }

    #[test]
    fn room_resolves_once_the_writer_takes_a_packet_and_closed_is_told() {
        local(async {
            // A socket buffer of one byte.
            let (client, server) = tokio::io::duplex(1);
            let mut out = Outbound::new(client, 1);
            assert_eq!(out.delivery(p(1)), Queued::Sent);
            assert!(!out.has_room());
            assert!(out.room().await, "the writer took it");
            // Not written: the socket buffer is full and nobody reads.
            assert_eq!(out.delivery(p(2)), Queued::Sent);
            drop(server);
            while !out.shared.borrow().closed {
                tokio::task::yield_now().await;
            }
            assert!(!out.room().await);
            assert_eq!(out.control(p(3)), Queued::Closed);
        });
    }
}
