//! The publishes a client sent us, from read to acknowledged: the in-order
//! acknowledgement window and the QoS 2 packet ids awaiting PUBREL.
//!
//! Each QoS 1/2 publish is answered (PUBACK/PUBREC) in the order it was read,
//! once its topic has queued it and committed what must be durable; a later
//! one that finished first waits for the earlier ones. At most `window`
//! publishes are outstanding: past that the session reads no further (MQTT
//! 5's Receive Maximum bounds the same thing from the client's side).

use std::collections::{HashSet, VecDeque};

/// A publish handed on and waiting for its answer: its place in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// What a publish's answer turned out to be, in the order they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Send PUBACK (QoS 1) or PUBREC (QoS 2) for this packet id, with this
    /// MQTT 5 reason code (0 = success); nothing for QoS 0.
    Ack { qos: u8, pkid: u16, reason: u8 },
    /// It could not be stored: no acknowledgement, the connection closes
    /// (the client sends it again).
    Failed,
}

/// What to do with an incoming QoS 2 publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qos2 {
    /// A new packet id: deliver it.
    New,
    /// Sent again before its PUBREL, already answered: PUBREC again, no delivery.
    Answered,
    /// Sent again while the first copy is still on its way: no delivery,
    /// and the PUBREC comes when the first copy's does.
    Pending,
}

#[derive(Debug)]
struct Slot {
    qos: u8,
    pkid: u16,
    /// Set when its topic answered: the reason code of its acknowledgement,
    /// or `Err` when something durable was not committed.
    done: Option<Result<u8, ()>>,
}

/// The incoming side of one connection.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    window: usize,
    /// Outstanding publishes in read order; the first has ticket `first`.
    slots: VecDeque<Slot>,
    first: u64,
    /// How many of `slots` are QoS 1.
    qos1: usize,
    /// QoS 2 packet ids received and not yet released by PUBREL (kept with
    /// a persistent session across connections).
    qos2: HashSet<u16>,
}

impl Incoming {
    pub(crate) fn new(window: usize, qos2: HashSet<u16>) -> Incoming {
        Incoming {
            window: window.max(1),
            slots: VecDeque::new(),
            first: 0,
            qos1: 0,
            qos2,
        }
    }

    /// Whether the window is full: read no further publishes.
    pub(crate) fn is_full(&self) -> bool {
        self.slots.len() >= self.window
    }

    /// How many publishes are outstanding.
    pub(crate) fn outstanding(&self) -> usize {
        self.slots.len()
    }

    /// QoS 1 and 2 publishes not completed yet (no PUBACK, or no PUBCOMP):
    /// what MQTT 5's Receive Maximum bounds (§4.9).
    pub(crate) fn unacknowledged(&self) -> usize {
        self.qos1 + self.qos2.len()
    }

    /// Classifies a QoS 2 publish by its packet id (and remembers a new one).
    pub(crate) fn qos2(&mut self, pkid: u16) -> Qos2 {
        if self.qos2.insert(pkid) {
            return Qos2::New;
        }
        if self.slots.iter().any(|s| s.qos == 2 && s.pkid == pkid) {
            Qos2::Pending
        } else {
            Qos2::Answered
        }
    }

    /// Whether a QoS 2 packet id is held (received, no PUBREL yet).
    pub(crate) fn has_qos2(&self, pkid: u16) -> bool {
        self.qos2.contains(&pkid)
    }

    /// Remembers a QoS 2 packet id that is answered at once (a dropped publish).
    pub(crate) fn answered_qos2(&mut self, pkid: u16) {
        self.qos2.insert(pkid);
    }

    /// PUBREL: the QoS 2 packet id may be used again.
    pub(crate) fn release(&mut self, pkid: u16) {
        self.qos2.remove(&pkid);
    }

    /// A publish handed on to its topic; answered in this order.
    pub(crate) fn push(&mut self, qos: u8, pkid: u16) -> Ticket {
        let ticket = Ticket(self.first + self.slots.len() as u64);
        if qos == 1 {
            self.qos1 += 1;
        }
        self.slots.push_back(Slot {
            qos,
            pkid,
            done: None,
        });
        ticket
    }

    /// The topic answered for `ticket`: `Ok(reason code)`, or `Err` when
    /// it was not stored.
    pub(crate) fn complete(&mut self, ticket: Ticket, ok: Result<u8, ()>) {
        let Some(i) = ticket.0.checked_sub(self.first) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.done = Some(ok);
        }
    }

    /// The next answer that is due, in read order.
    pub(crate) fn next_ready(&mut self) -> Option<Answer> {
        let done = self.slots.front()?.done?;
        let slot = self.slots.pop_front()?;
        self.first += 1;
        if slot.qos == 1 {
            self.qos1 -= 1;
        }
        Some(match done {
            Ok(reason) => Answer::Ack {
                qos: slot.qos,
                pkid: slot.pkid,
                reason,
            },
            Err(()) => Answer::Failed,
        })
    }

    /// The QoS 2 packet ids to hand on to the next connection.
    pub(crate) fn take_qos2(&mut self) -> HashSet<u16> {
        std::mem::take(&mut self.qos2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_out_in_read_order_whatever_order_topics_answer_in() {
        let mut w = Incoming::new(8, HashSet::new());
        let a = w.push(1, 10);
        assert_eq!(w.unacknowledged(), 1);
        let b = w.push(0, 0);
        let c = w.push(2, 12);
        w.complete(c, Ok(0));
        assert_eq!(w.next_ready(), None, "the first is not answered yet");
        w.complete(a, Ok(0));
        assert_eq!(
            w.next_ready(),
            Some(Answer::Ack {
                qos: 1,
                pkid: 10,
                reason: 0
            })
        );
        assert_eq!(w.next_ready(), None);
        w.complete(b, Ok(0x10));
        assert_eq!(
            w.next_ready(),
            Some(Answer::Ack {
                qos: 0,
                pkid: 0,
                reason: 0x10
            })
        );
        assert_eq!(
            w.next_ready(),
            Some(Answer::Ack {
                qos: 2,
                pkid: 12,
                reason: 0
            })
        );
        assert_eq!(w.outstanding(), 0);
        assert_eq!(w.unacknowledged(), 0);
        // Tickets keep counting after the window has turned over.
        let d = w.push(1, 13);
        w.complete(d, Err(()));
        assert_eq!(w.next_ready(), Some(Answer::Failed));
    }

    #[test]
    fn the_window_fills_and_frees() {
        let mut w = Incoming::new(2, HashSet::new());
        let a = w.push(1, 1);
        assert!(!w.is_full());
        w.push(1, 2);
        assert!(w.is_full());
        w.complete(a, Ok(0));
        assert!(w.next_ready().is_some());
        assert!(!w.is_full());
    }

    #[test]
    fn a_qos2_packet_id_is_delivered_once_until_pubrel() {
        let mut w = Incoming::new(8, HashSet::from([7]));
        assert_eq!(
            w.qos2(7),
            Qos2::Answered,
            "carried over from the last connection"
        );
        assert_eq!(w.qos2(8), Qos2::New);
        let t = w.push(2, 8);
        assert_eq!(w.qos2(8), Qos2::Pending);
        w.complete(t, Ok(0));
        assert_eq!(
            w.next_ready(),
            Some(Answer::Ack {
                qos: 2,
                pkid: 8,
                reason: 0
            })
        );
        assert_eq!(w.qos2(8), Qos2::Answered);
        w.release(8);
        assert_eq!(w.qos2(8), Qos2::New);
        w.answered_qos2(9);
        assert_eq!(w.qos2(9), Qos2::Answered);
        assert_eq!(w.take_qos2(), HashSet::from([7, 8, 9]));
    }
}
