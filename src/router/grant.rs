//! What a client is given on a topic: the merge of every subscription of its
//! that matches the topic (MQTT 5 §3.3.4: one copy per client, at the highest
//! QoS, carrying every matching subscription identifier).
//!
//! A [`Sub`] is one subscription as the index holds it; a [`Grant`] is what
//! a topic actor keeps per client and applies to each publish without
//! looking at the index again.

use std::collections::HashMap;
use std::sync::Arc;

use super::trie::SubTrie;
use crate::protocol::SubscriptionOptions;

/// One subscription: its options (retain handling only matters when it is
/// made) and its MQTT 5 subscription identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Sub {
    pub(crate) options: SubscriptionOptions,
    pub(crate) id: Option<u32>,
}

impl Sub {
    /// A 3.1.1 subscription: just its QoS.
    pub(crate) fn qos(qos: u8) -> Sub {
        Sub {
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            id: None,
        }
    }

    /// The options as the MQTT 5 options byte (§3.8.3.1), how they are stored.
    pub(crate) fn options_byte(&self) -> u8 {
        let o = &self.options;
        o.qos
            | u8::from(o.no_local) << 2
            | u8::from(o.retain_as_published) << 3
            | (o.retain_handling & 0b11) << 4
    }

    /// The options from a stored options byte (reserved bits ignored, QoS
    /// above 2 read as 2).
    pub(crate) fn from_stored(options: u8, id: Option<u32>) -> Sub {
        Sub {
            options: SubscriptionOptions {
                qos: (options & 0b11).min(2),
                no_local: options & 0b100 != 0,
                retain_as_published: options & 0b1000 != 0,
                retain_handling: (options >> 4) & 0b11,
            },
            id: id.filter(|&i| i > 0),
        }
    }
}

/// The merge of some of a client's matching subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reach {
    /// The highest granted QoS among them.
    pub(crate) qos: u8,
    /// Whether any of them keeps the retain flag as published.
    pub(crate) retain_as_published: bool,
    /// Their subscription identifiers, ascending; None when they have none
    /// (every 3.1.1 subscription), so a delivery clones nothing.
    pub(crate) ids: Option<Arc<[u32]>>,
}

/// What a client gets of a publish on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Over all its matching subscriptions: what it gets of others' publishes.
    pub(crate) all: Reach,
    /// Over those without No Local: what it gets of its own (None: nothing).
    pub(crate) own: Option<Reach>,
}

impl Grant {
    /// What a publish from `own` (the publisher is this client) reaches it with.
    pub(crate) fn reach(&self, own: bool) -> Option<&Reach> {
        if own {
            self.own.as_ref()
        } else {
            Some(&self.all)
        }
    }
}

/// Merges subscriptions into a [`Grant`].
#[derive(Default)]
struct Merge {
    all: Option<(u8, bool, Vec<u32>)>,
    own: Option<(u8, bool, Vec<u32>)>,
}

fn add(to: &mut Option<(u8, bool, Vec<u32>)>, s: &Sub) {
    let e = to.get_or_insert((0, false, Vec::new()));
    e.0 = e.0.max(s.options.qos);
    e.1 |= s.options.retain_as_published;
    if let Some(id) = s.id {
        e.2.push(id);
    }
}

fn reach((qos, retain_as_published, mut ids): (u8, bool, Vec<u32>)) -> Reach {
    ids.sort_unstable();
    ids.dedup();
    Reach {
        qos,
        retain_as_published,
        ids: (!ids.is_empty()).then(|| ids.into()),
    }
}

impl Merge {
    fn add(&mut self, s: &Sub) {
        add(&mut self.all, s);
        if !s.options.no_local {
            add(&mut self.own, s);
        }
    }

    fn finish(self) -> Option<Grant> {
        Some(Grant {
            all: reach(self.all?),
            own: self.own.map(reach),
        })
    }
}

/// What `client` gets on `topic`, from its subscriptions matching it.
pub(crate) fn grant_of(trie: &SubTrie<Sub>, topic: &str, client: &str) -> Option<Grant> {
    let mut m = Merge::default();
    trie.each_of(topic, client, |s| m.add(&s));
    m.finish()
}

/// What every client subscribed to `topic` gets there.
pub(crate) fn matches(trie: &SubTrie<Sub>, topic: &str) -> HashMap<Arc<str>, Grant> {
    let mut merges: HashMap<Arc<str>, Merge> = HashMap::new();
    trie.each_match(topic, |client, s| {
        merges.entry(client.clone()).or_default().add(&s);
    });
    merges
        .into_iter()
        .filter_map(|(c, m)| Some((c, m.finish()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(qos: u8, no_local: bool, rap: bool, id: Option<u32>) -> Sub {
        Sub {
            options: SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: rap,
                retain_handling: 0,
            },
            id,
        }
    }

    #[test]
    fn overlapping_subscriptions_merge_into_one_grant_with_every_identifier() {
        let mut t: SubTrie<Sub> = SubTrie::default();
        let c: Arc<str> = "c".into();
        t.insert("a/+", &c, sub(1, false, false, Some(7)));
        t.insert("a/#", &c, sub(2, true, true, Some(3)));
        t.insert("b", &c, sub(0, false, false, Some(9)));
        let g = grant_of(&t, "a/x", "c").unwrap();
        assert_eq!(g.all.qos, 2);
        assert!(g.all.retain_as_published);
        assert_eq!(g.all.ids.as_deref(), Some(&[3, 7][..]));
        // Its own publishes reach it only through the subscription without No Local.
        let own = g.own.unwrap();
        assert_eq!((own.qos, own.retain_as_published), (1, false));
        assert_eq!(own.ids.as_deref(), Some(&[7][..]));
        assert_eq!(
            matches(&t, "a/x").get("c"),
            grant_of(&t, "a/x", "c").as_ref()
        );
        assert!(grant_of(&t, "z", "c").is_none());
    }

    #[test]
    fn only_no_local_subscriptions_give_nothing_of_ones_own() {
        let mut t: SubTrie<Sub> = SubTrie::default();
        let c: Arc<str> = "c".into();
        t.insert("a", &c, sub(1, true, false, None));
        let g = grant_of(&t, "a", "c").unwrap();
        assert!(g.own.is_none());
        assert!(g.reach(true).is_none());
        assert_eq!(g.reach(false).map(|r| r.qos), Some(1));
        assert!(g.all.ids.is_none());
    }

    #[test]
    fn options_byte_round_trips() {
        for s in [
            sub(2, true, true, Some(5)),
            sub(0, false, false, None),
            Sub::qos(1),
        ] {
            let mut s2 = s;
            s2.options.retain_handling = 2;
            assert_eq!(Sub::from_stored(s2.options_byte(), s2.id), s2);
        }
        assert_eq!(Sub::from_stored(0xFF, Some(0)).options.qos, 2);
        assert_eq!(Sub::from_stored(0, Some(0)).id, None);
    }
}
