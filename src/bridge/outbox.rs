//! The outgoing side of a bridge as a plain state machine: which rows of
//! `bridge_queue` to read next, which to send, and what each
//! acknowledgement from the remote settles. The bridge's task does the I/O
//! it asks for (page reads, deletes, the QoS 2 release mark, the packets).
//!
//! SQLite is the queue: a page of rows above `cursor` is read, sent as far
//! as the in-flight window allows, and a row is deleted only when the
//! remote acknowledged it (PUBACK, or PUBCOMP for QoS 2). Every (re)connect
//! starts again from the oldest row, so what was in flight when the link
//! went down goes out again, marked DUP.
//!
//! A row's packet identifier is derived from its id, so it is the same on
//! every resend, also after a restart of brook: a QoS 2 remote that got the
//! PUBLISH before recognises the resend and does not deliver it twice.

use std::collections::{HashMap, VecDeque};

use crate::store::bridge::{Page, QueuedRow};

/// Rows read from SQLite at a time, and the payload bytes a page may hold.
pub(super) const PAGE_ROWS: usize = 256;
pub(super) const PAGE_BYTES: usize = 4 << 20;

/// The packet identifier of a row: stable across resends and restarts.
pub(super) fn pkid_of(id: i64) -> u16 {
    ((id - 1).rem_euclid(65_535) + 1) as u16
}

/// Where a sent QoS 1/2 row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// PUBLISH sent, waiting for PUBACK / PUBREC.
    Sent,
    /// QoS 2: PUBREC came; the `released` mark is being committed, then
    /// PUBREL goes out.
    Releasing,
    /// QoS 2: PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// A row in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Inflight {
    pub id: i64,
    pub qos: u8,
    pub stage: Stage,
}

/// What to send next.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Next {
    /// A PUBLISH at `qos` (the row's, capped by what the remote allows);
    /// at QoS 0 the row is settled once written.
    Publish {
        row: QueuedRow,
        qos: u8,
        pkid: u16,
        dup: bool,
    },
    /// A PUBREL for a QoS 2 row the remote already has.
    PubRel { pkid: u16 },
}

/// What an acknowledgement from the remote settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Done with this row: delete it. `refused` when the remote gave a
    /// reason code of 0x80 or more (MQTT 5): it will never take it.
    Delete { id: i64, refused: Option<u8> },
    /// QoS 2: commit the `released` mark of this row, then send PUBREL.
    Release { id: i64, pkid: u16 },
    /// A repeated PUBREC: send PUBREL again.
    PubRelAgain { pkid: u16 },
    /// Nothing (an identifier we do not know, or a duplicate).
    Nothing,
}

/// The out side of one bridge.
pub(super) struct Outbox {
    connected: bool,
    /// Counts connections, so that a page read for an earlier one is not
    /// taken for the current one.
    epoch: u64,
    /// The highest row id read during this connection.
    cursor: i64,
    /// Rows read and not yet sent, in id order (one page at most).
    buffer: VecDeque<QueuedRow>,
    /// Rows above `cursor` may exist.
    more: bool,
    /// Messages that arrived for the queue, counted, so that a page that
    /// comes back short clears `more` only when none arrived meanwhile.
    arrivals: u64,
    /// A page read is out, issued when `arrivals` had this value.
    reading: Option<u64>,
    inflight: HashMap<u16, Inflight>,
    /// Unacknowledged QoS 1/2 messages allowed on the link.
    window: usize,
    /// The highest QoS the remote takes (MQTT 5 Maximum QoS).
    max_qos: u8,
    /// Rows up to this id may have been sent before: resent with DUP.
    sent_upto: i64,
}

impl Outbox {
    /// `sent_upto`: the highest row id at start (anything older may have
    /// gone out before a restart).
    pub(super) fn new(sent_upto: i64) -> Outbox {
        Outbox {
            connected: false,
            epoch: 0,
            cursor: 0,
            buffer: VecDeque::new(),
            more: true,
            arrivals: 0,
            reading: None,
            inflight: HashMap::new(),
            window: 1,
            max_qos: 2,
            sent_upto,
        }
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(super) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The highest row id read so far in this connection; a trim must not
    /// touch rows at or below it (they may be on their way).
    pub(super) fn cursor(&self) -> i64 {
        if self.connected {
            self.cursor
        } else {
            0
        }
    }

    /// A QoS 1/2 message was added to the queue.
    pub(super) fn arrived(&mut self) {
        self.arrivals += 1;
        self.more = true;
    }

    /// Rows may have appeared that no arrival announced (a slow-consumer
    /// reset of the subscriber queue).
    pub(super) fn maybe_more(&mut self) {
        self.more = true;
    }

    /// `queued` rows are in the table (the bridge's count): when that is
    /// more than what was read and not yet settled, rows came in that no
    /// page saw (an insert that waited for room in a full write queue was
    /// committed after the page read that should have seen it): read again.
    pub(super) fn recheck(&mut self, queued: i64) {
        let held = (self.inflight.len() + self.buffer.len()) as i64;
        if self.connected && !self.more && self.reading.is_none() && queued > held {
            self.more = true;
        }
    }

    /// The link is up (CONNACK, and SUBACK when there are `in` entries).
    pub(super) fn connect(&mut self, window: usize, max_qos: u8) {
        self.epoch += 1;
        self.connected = true;
        self.cursor = 0;
        self.buffer.clear();
        self.more = true;
        self.reading = None;
        self.inflight.clear();
        self.window = window.max(1);
        self.max_qos = max_qos.min(2);
    }

    /// The link is down: what was read or in flight is read again next time.
    pub(super) fn disconnect(&mut self) {
        self.epoch += 1;
        self.connected = false;
        self.buffer.clear();
        self.reading = None;
        self.inflight.clear();
    }

    /// The page to read now, if any: `(after, epoch)`.
    pub(super) fn want_page(&mut self) -> Option<(i64, u64)> {
        if !self.connected || !self.buffer.is_empty() || !self.more || self.reading.is_some() {
            return None;
        }
        self.reading = Some(self.arrivals);
        Some((self.cursor, self.epoch))
    }

    /// A page read came back (`Err`: it failed; it is tried again later).
    pub(super) fn page(&mut self, epoch: u64, page: Result<Page, ()>) {
        if epoch != self.epoch {
            return;
        }
        let Some(issued) = self.reading.take() else {
            return;
        };
        let Ok(page) = page else {
            return;
        };
        if page.exhausted && issued == self.arrivals {
            self.more = false;
        }
        if let Some(last) = page.rows.last() {
            self.cursor = last.id;
        }
        self.buffer.extend(page.rows);
    }

    /// The next packet to send, as far as the window allows.
    pub(super) fn next(&mut self) -> Option<Next> {
        if !self.connected || self.inflight.len() >= self.window {
            return None;
        }
        let front = self.buffer.front()?;
        let pkid = pkid_of(front.id);
        if self.inflight.contains_key(&pkid) {
            // A row 65,535 ids older still waits for its acknowledgement:
            // this one waits for the identifier.
            return None;
        }
        let row = self.buffer.pop_front()?;
        if row.released && row.qos == 2 {
            self.inflight.insert(
                pkid,
                Inflight {
                    id: row.id,
                    qos: 2,
                    stage: Stage::Released,
                },
            );
            return Some(Next::PubRel { pkid });
        }
        let qos = row.qos.min(self.max_qos);
        let dup = row.id <= self.sent_upto && qos > 0;
        self.sent_upto = self.sent_upto.max(row.id);
        if qos > 0 {
            self.inflight.insert(
                pkid,
                Inflight {
                    id: row.id,
                    qos,
                    stage: Stage::Sent,
                },
            );
        }
        Some(Next::Publish {
            row,
            qos,
            pkid: if qos > 0 { pkid } else { 0 },
            dup,
        })
    }

    /// Forgets a row just handed out by [`Outbox::next`] that could not be
    /// sent after all (the caller drops it).
    pub(super) fn abandon(&mut self, pkid: u16) {
        self.inflight.remove(&pkid);
    }

    /// PUBACK (with its MQTT 5 reason code).
    pub(super) fn puback(&mut self, pkid: u16, code: u8) -> Settled {
        match self.inflight.get(&pkid) {
            Some(f) if f.qos == 1 && f.stage == Stage::Sent => {
                let id = f.id;
                self.inflight.remove(&pkid);
                Settled::Delete {
                    id,
                    refused: (code >= 0x80).then_some(code),
                }
            }
            _ => Settled::Nothing,
        }
    }

    /// PUBREC (with its MQTT 5 reason code).
    pub(super) fn pubrec(&mut self, pkid: u16, code: u8) -> Settled {
        let Some(f) = self.inflight.get_mut(&pkid) else {
            return Settled::Nothing;
        };
        if f.qos != 2 {
            return Settled::Nothing;
        }
        match f.stage {
            Stage::Sent if code >= 0x80 => {
                let id = f.id;
                self.inflight.remove(&pkid);
                Settled::Delete {
                    id,
                    refused: Some(code),
                }
            }
            Stage::Sent => {
                f.stage = Stage::Releasing;
                Settled::Release { id: f.id, pkid }
            }
            Stage::Releasing => Settled::Nothing,
            Stage::Released => Settled::PubRelAgain { pkid },
        }
    }

    /// The `released` mark of a row is committed: PUBREL may go (true),
    /// unless the link changed meanwhile (the next connection reads the
    /// row with its mark and sends PUBREL then).
    pub(super) fn released(&mut self, epoch: u64, pkid: u16) -> bool {
        if epoch != self.epoch {
            return false;
        }
        match self.inflight.get_mut(&pkid) {
            Some(f) if f.stage == Stage::Releasing => {
                f.stage = Stage::Released;
                true
            }
            _ => false,
        }
    }

    /// PUBCOMP.
    pub(super) fn pubcomp(&mut self, pkid: u16) -> Settled {
        match self.inflight.get(&pkid) {
            Some(f) if f.stage == Stage::Released => {
                let id = f.id;
                self.inflight.remove(&pkid);
                Settled::Delete { id, refused: None }
            }
            _ => Settled::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn row(id: i64, qos: u8) -> QueuedRow {
        QueuedRow {
            id,
            topic: format!("t/{id}"),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            released: false,
        }
    }

    fn page(rows: Vec<QueuedRow>, exhausted: bool) -> Result<Page, ()> {
        Ok(Page { rows, exhausted })
    }

    fn sent_ids(o: &mut Outbox) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Some(n) = o.next() {
            match n {
                Next::Publish { row, .. } => ids.push(row.id),
                Next::PubRel { .. } => ids.push(-1),
            }
        }
        ids
    }

    #[test]
    fn packet_ids_are_derived_and_wrap() {
        assert_eq!(pkid_of(1), 1);
        assert_eq!(pkid_of(65_535), 65_535);
        assert_eq!(pkid_of(65_536), 1);
        assert_eq!(pkid_of(131_071), 1);
    }

    #[test]
    fn reads_pages_only_while_connected_and_sends_within_the_window() {
        let mut o = Outbox::new(0);
        assert_eq!(o.want_page(), None, "not connected");
        o.connect(2, 2);
        let (after, epoch) = o.want_page().expect("a page");
        assert_eq!(after, 0);
        assert_eq!(o.want_page(), None, "one read at a time");
        o.page(epoch, page(vec![row(3, 1), row(5, 1), row(9, 1)], true));
        assert_eq!(sent_ids(&mut o), [3, 5], "the window is 2");
        assert_eq!(
            o.puback(pkid_of(3), 0),
            Settled::Delete {
                id: 3,
                refused: None
            }
        );
        assert_eq!(
            o.puback(pkid_of(3), 0),
            Settled::Nothing,
            "a repeated PUBACK"
        );
        assert_eq!(sent_ids(&mut o), [9]);
        assert_eq!(o.want_page(), None, "the queue was read to its end");
        o.arrived();
        assert_eq!(o.want_page(), Some((9, epoch)));
    }

    #[test]
    fn a_short_page_does_not_end_reading_when_something_arrived_meanwhile() {
        let mut o = Outbox::new(0);
        o.connect(10, 2);
        let (_, epoch) = o.want_page().expect("a page");
        o.arrived();
        o.page(epoch, page(vec![row(1, 1)], true));
        assert_eq!(sent_ids(&mut o), [1]);
        assert_eq!(o.want_page(), Some((1, epoch)), "read again");
    }

    #[test]
    fn a_row_committed_after_its_page_was_read_is_found_on_a_recheck() {
        let mut o = Outbox::new(0);
        o.connect(10, 2);
        let (_, epoch) = o.want_page().expect("a page");
        o.page(epoch, page(vec![], true));
        assert_eq!(o.want_page(), None);
        o.recheck(0);
        assert_eq!(o.want_page(), None, "nothing unread");
        o.recheck(1);
        assert_eq!(o.want_page(), Some((0, epoch)));
    }

    #[test]
    fn a_reconnect_resends_from_the_oldest_with_dup_and_drops_stale_pages() {
        let mut o = Outbox::new(0);
        o.connect(10, 2);
        let (_, epoch) = o.want_page().expect("a page");
        o.page(epoch, page(vec![row(1, 1), row(2, 1)], true));
        assert!(matches!(o.next(), Some(Next::Publish { dup: false, .. })));
        let (_, stale) = {
            o.arrived();
            o.next();
            o.want_page().expect("a page")
        };
        o.disconnect();
        o.page(stale, page(vec![row(7, 1)], true));
        assert_eq!(o.next(), None);
        o.connect(10, 2);
        let (after, epoch) = o.want_page().expect("a page");
        assert_eq!(after, 0, "from the oldest row again");
        o.page(epoch, page(vec![row(1, 1), row(2, 1), row(7, 1)], true));
        let dups: Vec<bool> = std::iter::from_fn(|| o.next())
            .map(|n| matches!(n, Next::Publish { dup: true, .. }))
            .collect();
        assert_eq!(dups, [true, true, false]);
    }

    #[test]
    fn qos2_goes_through_release_and_a_released_row_only_gets_pubrel() {
        let mut o = Outbox::new(0);
        o.connect(10, 2);
        let (_, epoch) = o.want_page().expect("a page");
        let mut released = row(4, 2);
        released.released = true;
        o.page(epoch, page(vec![row(2, 2), released], true));
        assert!(matches!(
            o.next(),
            Some(Next::Publish {
                qos: 2,
                pkid: 2,
                ..
            })
        ));
        assert_eq!(o.next(), Some(Next::PubRel { pkid: 4 }));
        assert_eq!(o.pubcomp(2), Settled::Nothing, "PUBCOMP before PUBREC");
        assert_eq!(o.pubrec(2, 0), Settled::Release { id: 2, pkid: 2 });
        assert_eq!(o.pubrec(2, 0), Settled::Nothing, "still committing");
        assert!(!o.released(epoch + 1, 2), "another connection's commit");
        assert!(o.released(epoch, 2));
        assert_eq!(o.pubrec(2, 0), Settled::PubRelAgain { pkid: 2 });
        assert_eq!(
            o.pubcomp(2),
            Settled::Delete {
                id: 2,
                refused: None
            }
        );
        assert_eq!(
            o.pubcomp(4),
            Settled::Delete {
                id: 4,
                refused: None
            }
        );
        assert_eq!(o.inflight(), 0);
    }

    #[test]
    fn refusals_and_the_remotes_maximum_qos() {
        let mut o = Outbox::new(0);
        o.connect(10, 1);
        let (_, epoch) = o.want_page().expect("a page");
        o.page(epoch, page(vec![row(1, 2), row(2, 1)], true));
        assert!(
            matches!(o.next(), Some(Next::Publish { qos: 1, .. })),
            "QoS 2 capped at 1"
        );
        o.next();
        assert_eq!(
            o.puback(1, 0x87),
            Settled::Delete {
                id: 1,
                refused: Some(0x87)
            }
        );
        o.connect(10, 0);
        let (_, epoch) = o.want_page().expect("a page");
        o.page(epoch, page(vec![row(2, 1)], true));
        assert!(matches!(
            o.next(),
            Some(Next::Publish {
                qos: 0,
                pkid: 0,
                ..
            })
        ));
        assert_eq!(o.inflight(), 0, "QoS 0 is settled when written");
    }

    #[test]
    fn a_packet_id_still_in_use_holds_the_row_back() {
        let mut o = Outbox::new(0);
        o.connect(10, 2);
        let (_, epoch) = o.want_page().expect("a page");
        o.page(epoch, page(vec![row(1, 1), row(65_536, 1)], true));
        assert_eq!(sent_ids(&mut o), [1]);
        o.puback(1, 0);
        assert_eq!(sent_ids(&mut o), [65_536]);
    }
}
