//! How a topic crosses a bridge: `out` entries turn a local topic into a
//! remote one (the local prefix taken off, the remote prefix put on), `in`
//! entries the other way. The first entry whose filter matches decides.

use crate::config::TopicMap;
use crate::router::acl::filters_intersect;
use crate::router::trie::filter_matches;

/// The longest topic MQTT can carry (a two-byte length).
const MAX_TOPIC: usize = u16::MAX as usize;

/// A bridge's `out` and `in` entries.
pub(super) struct Routes {
    out: Vec<TopicMap>,
    inbound: Vec<TopicMap>,
}

impl Routes {
    pub(super) fn new(out: Vec<TopicMap>, inbound: Vec<TopicMap>) -> Routes {
        Routes { out, inbound }
    }

    /// The remote topic and the QoS cap for a local topic going out; None
    /// when no `out` entry maps it.
    pub(super) fn outgoing(&self, local: &str) -> Option<(String, u8)> {
        map(
            &self.out,
            local,
            |m| &m.local_prefix,
            |m| &m.remote_prefix,
            TopicMap::local_filter,
        )
    }

    /// The local topic and the QoS cap for a remote topic coming in; None
    /// when no `in` entry maps it (the remote sent what we did not ask
    /// for), or when the result would be a `$` topic, which only brook
    /// itself publishes.
    pub(super) fn incoming(&self, remote: &str) -> Option<(String, u8)> {
        map(
            &self.inbound,
            remote,
            |m| &m.remote_prefix,
            |m| &m.local_prefix,
            TopicMap::remote_filter,
        )
        .filter(|(local, _)| !local.starts_with('$'))
    }

    /// The local filters to subscribe to, with their QoS.
    pub(super) fn local_subscriptions(&self) -> Vec<(String, u8)> {
        self.out.iter().map(|m| (m.local_filter(), m.qos)).collect()
    }

    /// The remote filters to subscribe to, with their QoS.
    pub(super) fn remote_subscriptions(&self) -> Vec<(String, u8)> {
        self.inbound
            .iter()
            .map(|m| (m.remote_filter(), m.qos))
            .collect()
    }

    /// Whether something this bridge publishes on the remote could come
    /// back to it through its own `in` subscriptions.
    pub(super) fn may_echo(&self) -> bool {
        self.out.iter().any(|o| {
            self.inbound
                .iter()
                .any(|i| filters_intersect(&o.remote_filter(), &i.remote_filter()))
        })
    }
}

fn map(
    entries: &[TopicMap],
    topic: &str,
    from_prefix: impl Fn(&TopicMap) -> &String,
    to_prefix: impl Fn(&TopicMap) -> &String,
    filter: impl Fn(&TopicMap) -> String,
) -> Option<(String, u8)> {
    for m in entries {
        if !filter_matches(&filter(m), topic) {
            continue;
        }
        // `a/#` also matches `a`: with the prefix `a/` there is then
        // nothing left to map, and the next entry may do better.
        let Some(rest) = topic.strip_prefix(from_prefix(m).as_str()) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let mapped = format!("{}{rest}", to_prefix(m));
        if mapped.len() > MAX_TOPIC {
            continue;
        }
        return Some((mapped, m.qos));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(filter: &str, qos: u8, local: &str, remote: &str) -> TopicMap {
        TopicMap {
            filter: filter.into(),
            qos,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    #[test]
    fn prefixes_are_swapped_both_ways() {
        let r = Routes::new(
            vec![entry("sensors/#", 1, "", "site-a/")],
            vec![entry("cmd/#", 2, "remote/", "site-a/")],
        );
        assert_eq!(
            r.outgoing("sensors/t1"),
            Some(("site-a/sensors/t1".into(), 1))
        );
        assert_eq!(r.outgoing("other/t1"), None);
        assert_eq!(
            r.incoming("site-a/cmd/open"),
            Some(("remote/cmd/open".into(), 2))
        );
        assert_eq!(r.incoming("site-b/cmd/open"), None);
        assert_eq!(r.local_subscriptions(), vec![("sensors/#".to_string(), 1)]);
        assert_eq!(
            r.remote_subscriptions(),
            vec![("site-a/cmd/#".to_string(), 2)]
        );
        assert!(!r.may_echo());
    }

    #[test]
    fn the_first_matching_entry_wins_and_a_bare_prefix_maps_nothing() {
        let r = Routes::new(
            vec![entry("#", 0, "a/", "x/"), entry("a", 1, "", "y/")],
            vec![entry("#", 1, "$SYS/", "")],
        );
        assert_eq!(r.outgoing("a/b"), Some(("x/b".into(), 0)));
        assert_eq!(r.outgoing("a"), Some(("y/a".into(), 1)));
        assert_eq!(r.incoming("anything"), None, "never into $ topics");
    }

    #[test]
    fn a_mirror_may_echo() {
        let r = Routes::new(vec![entry("#", 1, "", "")], vec![entry("cmd/#", 1, "", "")]);
        assert!(r.may_echo());
    }
}
