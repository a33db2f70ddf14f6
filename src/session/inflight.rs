//! The messages we sent a client and it has not acknowledged: the outgoing
//! window of QoS 1/2 deliveries, their packet ids, and the QoS 2 ones that
//! got PUBREC and wait for PUBCOMP.
//!
//! At most `max` are outstanding (`[mqtt] max_inflight`; MQTT 5's Receive
//! Maximum of the client will lower it per connection). Packet ids are taken
//! in turn, skipping those in use.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;

use crate::router::queue::Delivery;

/// What a PUBREC is.
#[derive(Debug)]
pub(crate) enum PubRec {
    /// For a message in flight: it is delivered; send PUBREL.
    First(Delivery),
    /// Again, for one already released: send PUBREL again.
    Again,
    /// For nothing we sent: ignore it.
    Unknown,
}

/// The outgoing window of one connection.
#[derive(Debug)]
pub(crate) struct Inflight {
    max: usize,
    next_pkid: u16,
    /// Sent and awaiting PUBACK (QoS 1) or PUBREC (QoS 2), by packet id.
    /// The keys are ids we chose, so a fast hasher is safe (SipHash was 5 %
    /// of a QoS 1 fan-out profile).
    sent: HashMap<u16, Delivery, RandomState>,
    /// QoS 2 packet ids that got PUBREC and await PUBCOMP.
    released: HashSet<u16, RandomState>,
}

impl Inflight {
    pub(crate) fn new(max: usize) -> Inflight {
        Inflight {
            max: max.clamp(1, usize::from(u16::MAX)),
            next_pkid: 1,
            sent: HashMap::default(),
            released: HashSet::default(),
        }
    }

    /// Whether another QoS 1/2 message may be sent.
    pub(crate) fn has_room(&self) -> bool {
        self.sent.len() + self.released.len() < self.max
    }

    /// Takes a packet id for `d` and keeps it until acknowledged; the
    /// caller checked [`Inflight::has_room`] (so a free id exists). Returns
    /// the id and the kept delivery (to encode, then mark as sent).
    pub(crate) fn send(&mut self, d: Delivery) -> (u16, &mut Delivery) {
        let pkid = loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.sent.contains_key(&pkid) && !self.released.contains(&pkid) {
                break pkid;
            }
        };
        (pkid, self.sent.entry(pkid).or_insert(d))
    }

    /// PUBACK: the QoS 1 message it acknowledges, if it was ours.
    pub(crate) fn puback(&mut self, pkid: u16) -> Option<Delivery> {
        self.sent.remove(&pkid)
    }

    /// PUBREC of a QoS 2 message.
    pub(crate) fn pubrec(&mut self, pkid: u16) -> PubRec {
        match self.sent.remove(&pkid) {
            Some(d) => {
                self.released.insert(pkid);
                PubRec::First(d)
            }
            None if self.released.contains(&pkid) => PubRec::Again,
            None => PubRec::Unknown,
        }
    }

    /// PUBCOMP: the QoS 2 exchange is over.
    pub(crate) fn pubcomp(&mut self, pkid: u16) {
        self.released.remove(&pkid);
    }

    /// A QoS 2 packet id released by an earlier connection of the session
    /// (PUBREL is sent again).
    pub(crate) fn resume_released(&mut self, pkid: u16) {
        self.released.insert(pkid);
    }

    /// The messages sent and not acknowledged (to be sent again with DUP on
    /// the next connection), and the released QoS 2 packet ids.
    pub(crate) fn unacknowledged(
        &self,
    ) -> (
        impl Iterator<Item = &Delivery>,
        impl Iterator<Item = u16> + '_,
    ) {
        (self.sent.values(), self.released.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seq: i64) -> Delivery {
        Delivery {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: 1,
            retain: false,
            seq,
            dup: false,
            properties: None,
            expires_at: None,
            sub_ids: None,
        }
    }

    #[test]
    fn the_window_bounds_qos1_and_qos2_alike() {
        let mut w = Inflight::new(2);
        let a = w.send(d(1)).0;
        let b = w.send(d(2)).0;
        assert_eq!((a, b), (1, 2));
        assert!(!w.has_room());
        assert_eq!(w.puback(a).map(|x| x.seq), Some(1));
        assert!(w.has_room());
        assert!(w.puback(a).is_none(), "a second PUBACK for the same id");
        // PUBREC moves it to released: it still takes room until PUBCOMP.
        assert!(matches!(w.pubrec(b), PubRec::First(x) if x.seq == 2));
        assert!(matches!(w.pubrec(b), PubRec::Again));
        w.send(d(3));
        assert!(!w.has_room());
        w.pubcomp(b);
        assert!(w.has_room());
        assert!(matches!(w.pubrec(999), PubRec::Unknown));
    }

    #[test]
    fn packet_ids_wrap_and_skip_those_in_use() {
        let mut w = Inflight::new(10);
        w.next_pkid = u16::MAX;
        assert_eq!(w.send(d(1)).0, u16::MAX);
        assert_eq!(w.send(d(2)).0, 1, "0 is never a packet id");
        w.resume_released(2);
        assert_eq!(w.send(d(3)).0, 3, "2 is released and awaits PUBCOMP");
        let (sent, released) = w.unacknowledged();
        let mut seqs: Vec<i64> = sent.map(|x| x.seq).collect();
        seqs.sort();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(released.collect::<Vec<_>>(), vec![2]);
    }
}
