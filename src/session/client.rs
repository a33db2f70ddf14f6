//! What the protocol version makes of one connection: the limits an MQTT 5
//! client announced in its CONNECT (and that the broker must keep to), and
//! the topic aliases of both directions. A 3.1/3.1.1 client has the
//! defaults: no limits of its own, no aliases, no reason codes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::ConnectProperties;

/// Topic names the alias maps keep counting uses of, before they start over.
const COUNTED_TOPICS: usize = 1024;

/// The client side of a connection.
#[derive(Debug)]
pub(crate) struct Client {
    /// 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub(crate) level: u8,
    /// The largest packet the client accepts (MQTT 5 Maximum Packet Size).
    pub(crate) max_packet_size: Option<u32>,
    /// Whether reason strings and user properties may be sent on packets
    /// other than CONNACK, DISCONNECT and PUBLISH (Request Problem Information).
    pub(crate) problem_information: bool,
    /// The client's aliases for the topics it publishes to.
    pub(crate) aliases_in: AliasesIn,
    /// Ours, for the topics it is sent.
    pub(crate) aliases_out: AliasesOut,
}

impl Client {
    /// A 3.1/3.1.1 client.
    pub(crate) fn v3(level: u8) -> Client {
        Client {
            level,
            max_packet_size: None,
            problem_information: false,
            aliases_in: AliasesIn::new(0),
            aliases_out: AliasesOut::new(0),
        }
    }

    /// An MQTT 5 client, from its CONNECT properties; `alias_max` is the
    /// broker's Topic Alias Maximum.
    pub(crate) fn v5(p: &ConnectProperties, alias_max: u16) -> Client {
        Client {
            level: 5,
            max_packet_size: p.maximum_packet_size,
            problem_information: p.request_problem_information.unwrap_or(true),
            aliases_in: AliasesIn::new(alias_max),
            aliases_out: AliasesOut::new(p.topic_alias_maximum.unwrap_or(0)),
        }
    }

    pub(crate) fn v5_or_later(&self) -> bool {
        self.level >= 5
    }

    /// A reason string for an acknowledgement, when the client wants them.
    pub(crate) fn reason(&self, why: &str) -> Option<String> {
        (self.v5_or_later() && self.problem_information).then(|| why.to_string())
    }
}

/// Why an incoming topic alias is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasError {
    /// 0 or above our Topic Alias Maximum: DISCONNECT 0x94.
    Invalid,
    /// An empty topic with an alias that names none yet: DISCONNECT 0x82.
    Unknown,
}

/// The client's topic aliases (MQTT 5 §3.3.2.3.4), at most `max` of them.
#[derive(Debug)]
pub(crate) struct AliasesIn {
    max: u16,
    /// Boxed and made on the first alias: most clients use none, and an
    /// empty map inline would still take 48 bytes of every connection.
    #[allow(clippy::box_collection)]
    topics: Option<Box<HashMap<u16, Arc<str>>>>,
}

impl AliasesIn {
    pub(crate) fn new(max: u16) -> AliasesIn {
        AliasesIn { max, topics: None }
    }

    /// The topic of a PUBLISH: its own, remembered under its alias if it
    /// has one, or the one its alias names.
    pub(crate) fn resolve(
        &mut self,
        topic: Arc<str>,
        alias: Option<u16>,
    ) -> Result<Arc<str>, AliasError> {
        let Some(alias) = alias else {
            return Ok(topic);
        };
        if alias == 0 || alias > self.max {
            return Err(AliasError::Invalid);
        }
        if topic.is_empty() {
            return self
                .topics
                .as_ref()
                .and_then(|t| t.get(&alias).cloned())
                .ok_or(AliasError::Unknown);
        }
        self.topics
            .get_or_insert_with(Default::default)
            .insert(alias, topic.clone());
        Ok(topic)
    }
}

/// How a PUBLISH to the client names its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasUse {
    /// By name only.
    Name,
    /// By name, and the alias is set to it from now on.
    Set(u16),
    /// By alias only (the topic is sent empty).
    Alias(u16),
}

/// Our topic aliases towards the client: given to the topics it is sent
/// most, within its Topic Alias Maximum. A topic gets a free alias on its
/// first send; once none is free, a topic sent more often than the least
/// used aliased topic takes that one's alias.
#[derive(Debug)]
pub(crate) struct AliasesOut {
    max: u16,
    /// Boxed and made on the first send that may use an alias: most
    /// clients allow none.
    maps: Option<Box<OutMaps>>,
}

#[derive(Debug, Default)]
struct OutMaps {
    /// Alias to (topic, sends since it got the alias); index = alias - 1.
    slots: Vec<(Arc<str>, u64)>,
    by_topic: HashMap<Arc<str>, u16>,
    /// Sends of topics without an alias (bounded; starts over when full).
    counts: HashMap<Arc<str>, u64>,
}

impl AliasesOut {
    pub(crate) fn new(max: u16) -> AliasesOut {
        AliasesOut { max, maps: None }
    }

    /// How the next PUBLISH on `topic` names it.
    pub(crate) fn choose(&mut self, topic: &Arc<str>) -> AliasUse {
        if self.max == 0 || topic.is_empty() {
            return AliasUse::Name;
        }
        let max = self.max;
        self.maps
            .get_or_insert_with(Default::default)
            .choose(max, topic)
    }

    /// Forgets what `choose` just decided for `topic` (the PUBLISH was not
    /// sent after all: larger than the client's maximum packet size).
    pub(crate) fn undo(&mut self, topic: &Arc<str>, used: AliasUse) {
        if let Some(m) = self.maps.as_mut() {
            m.undo(topic, used);
        }
    }
}

impl OutMaps {
    fn choose(&mut self, max: u16, topic: &Arc<str>) -> AliasUse {
        if let Some(&alias) = self.by_topic.get(topic) {
            if let Some(slot) = self.slots.get_mut(usize::from(alias) - 1) {
                slot.1 += 1;
            }
            return AliasUse::Alias(alias);
        }
        if self.slots.len() < usize::from(max) {
            self.slots.push((topic.clone(), 1));
            let alias = self.slots.len() as u16;
            self.by_topic.insert(topic.clone(), alias);
            return AliasUse::Set(alias);
        }
        if self.counts.len() >= COUNTED_TOPICS && !self.counts.contains_key(topic) {
            self.counts.clear();
        }
        let count = {
            let c = self.counts.entry(topic.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let Some((i, least)) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, uses))| *uses)
            .map(|(i, (_, uses))| (i, *uses))
        else {
            return AliasUse::Name;
        };
        if count <= least {
            return AliasUse::Name;
        }
        let alias = i as u16 + 1;
        let (old, _) = std::mem::replace(&mut self.slots[i], (topic.clone(), count));
        self.by_topic.remove(&old);
        self.counts.remove(topic);
        self.by_topic.insert(topic.clone(), alias);
        AliasUse::Set(alias)
    }

    fn undo(&mut self, topic: &Arc<str>, used: AliasUse) {
        if let AliasUse::Set(alias) = used {
            self.by_topic.remove(topic);
            if let Some(slot) = self.slots.get_mut(usize::from(alias) - 1) {
                // The client does not know this alias: nothing may use it
                // until it is set again.
                slot.1 = 0;
                slot.0 = Arc::from("");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_aliases_are_bounded_and_checked() {
        let mut a = AliasesIn::new(2);
        let t: Arc<str> = "a/b".into();
        assert_eq!(a.resolve(t.clone(), None), Ok(t.clone()));
        assert_eq!(a.resolve("".into(), Some(1)), Err(AliasError::Unknown));
        assert_eq!(a.resolve(t.clone(), Some(1)), Ok(t.clone()));
        assert_eq!(a.resolve("".into(), Some(1)), Ok(t.clone()));
        assert_eq!(a.resolve(t.clone(), Some(0)), Err(AliasError::Invalid));
        assert_eq!(a.resolve(t.clone(), Some(3)), Err(AliasError::Invalid));
        // Redefined.
        assert_eq!(a.resolve("c".into(), Some(1)), Ok("c".into()));
        assert_eq!(a.resolve("".into(), Some(1)), Ok("c".into()));
        assert_eq!(
            AliasesIn::new(0).resolve(t, Some(1)),
            Err(AliasError::Invalid)
        );
    }

    #[test]
    fn outgoing_aliases_go_to_the_most_sent_topics() {
        let mut a = AliasesOut::new(2);
        let (x, y, z): (Arc<str>, Arc<str>, Arc<str>) = ("x".into(), "y".into(), "z".into());
        assert_eq!(a.choose(&x), AliasUse::Set(1));
        assert_eq!(a.choose(&x), AliasUse::Alias(1));
        assert_eq!(a.choose(&x), AliasUse::Alias(1));
        assert_eq!(a.choose(&y), AliasUse::Set(2));
        // Full: z is sent by name until it is sent more than y (1 send).
        assert_eq!(a.choose(&z), AliasUse::Name);
        assert_eq!(a.choose(&z), AliasUse::Set(2));
        assert_eq!(a.choose(&z), AliasUse::Alias(2));
        assert_eq!(a.choose(&y), AliasUse::Name);
        assert_eq!(a.choose(&x), AliasUse::Alias(1));
        assert_eq!(AliasesOut::new(0).choose(&x), AliasUse::Name);
    }

    #[test]
    fn an_alias_not_sent_is_not_used() {
        let mut a = AliasesOut::new(1);
        let x: Arc<str> = "x".into();
        let used = a.choose(&x);
        assert_eq!(used, AliasUse::Set(1));
        a.undo(&x, used);
        assert_eq!(a.choose(&x), AliasUse::Set(1));
    }
}
