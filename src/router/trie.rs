//! The subscription index: a trie by topic level, so that finding who
//! subscribes to a topic costs the topic's depth (times the wildcards on the
//! way), not a scan of every filter.
//!
//! Each node holds the clients whose filter ends there, with their granted
//! QoS. Matching follows the specification: `+` matches one level, `#` the
//! parent level and everything below, and a topic starting with `$` is not
//! matched by a filter whose first level is a wildcard.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
struct Node {
    /// Children by literal level.
    children: HashMap<Box<str>, Node>,
    /// The `+` child.
    plus: Option<Box<Node>>,
    /// Clients whose filter ends with `#` right below this node.
    hash: HashMap<Arc<str>, u8>,
    /// Clients whose filter ends exactly at this node.
    here: HashMap<Arc<str>, u8>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

#[derive(Default)]
pub struct SubTrie {
    root: Node,
    /// How many (client, filter) pairs are indexed; for metrics.
    len: usize,
}

impl SubTrie {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or updates `client`'s subscription to `filter` (a valid filter).
    pub fn insert(&mut self, filter: &str, client: &Arc<str>, qos: u8) {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                if node.hash.insert(client.clone(), qos).is_none() {
                    self.len += 1;
                }
                return;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Default::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        if node.here.insert(client.clone(), qos).is_none() {
            self.len += 1;
        }
    }

    /// Removes `client`'s subscription to `filter`; true when there was one.
    pub fn remove(&mut self, filter: &str, client: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_in(&mut self.root, &levels, client);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Whether any filter matches `topic`; allocates nothing (a check on
    /// every publish).
    pub fn any_match(&self, topic: &str) -> bool {
        let mut levels = [""; 32];
        let mut n = 0;
        for level in topic.split('/') {
            if n == levels.len() {
                // Deeper than any sane topic: take the allocating path.
                return !self.matches(topic).is_empty();
            }
            levels[n] = level;
            n += 1;
        }
        any_in(&self.root, &levels[..n], topic.starts_with('$'))
    }

    /// Every client subscribed to `topic`, with the highest QoS among its
    /// matching filters (one copy per message, at the highest QoS).
    pub fn matches(&self, topic: &str) -> HashMap<Arc<str>, u8> {
        let mut out = HashMap::new();
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        match_in(&self.root, &levels, dollar, &mut out);
        out
    }
}

fn merge(out: &mut HashMap<Arc<str>, u8>, from: &HashMap<Arc<str>, u8>) {
    for (client, &qos) in from {
        let e = out.entry(client.clone()).or_insert(qos);
        if *e < qos {
            *e = qos;
        }
    }
}

fn match_in(node: &Node, levels: &[&str], first_is_dollar: bool, out: &mut HashMap<Arc<str>, u8>) {
    // `#` matches the parent level too ("a/#" matches "a"), but not at the
    // root of a `$` topic.
    if !first_is_dollar {
        merge(out, &node.hash);
    }
    let Some((level, rest)) = levels.split_first() else {
        merge(out, &node.here);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        match_in(child, rest, false, out);
    }
    if !first_is_dollar {
        if let Some(plus) = &node.plus {
            match_in(plus, rest, false, out);
        }
    }
}

fn any_in(node: &Node, levels: &[&str], first_is_dollar: bool) -> bool {
    if !first_is_dollar && !node.hash.is_empty() {
        return true;
    }
    let Some((level, rest)) = levels.split_first() else {
        return !node.here.is_empty();
    };
    if node
        .children
        .get(*level)
        .is_some_and(|c| any_in(c, rest, false))
    {
        return true;
    }
    !first_is_dollar && node.plus.as_deref().is_some_and(|p| any_in(p, rest, false))
}

fn remove_in(node: &mut Node, levels: &[&str], client: &str) -> bool {
    match levels {
        [] => node.here.remove(client).is_some(),
        ["#"] => node.hash.remove(client).is_some(),
        [level, rest @ ..] => {
            let (removed, empty) = if *level == "+" {
                match node.plus.as_deref_mut() {
                    Some(child) => (remove_in(child, rest, client), child.is_empty()),
                    None => return false,
                }
            } else {
                match node.children.get_mut(*level) {
                    Some(child) => (remove_in(child, rest, client), child.is_empty()),
                    None => return false,
                }
            };
            if empty {
                if *level == "+" {
                    node.plus = None;
                } else {
                    node.children.remove(*level);
                }
            }
            removed
        }
    }
}

/// Whether `filter` matches `topic` (both valid); the same rules as the trie.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `inner` can match is also matched by `outer` (both
/// filters); used by the ACL to judge a SUBSCRIBE.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(t: &SubTrie, topic: &str) -> Vec<(String, u8)> {
        let mut v: Vec<_> = t
            .matches(topic)
            .into_iter()
            .map(|(c, q)| (c.to_string(), q))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn wildcards_match_as_the_specification_says() {
        let mut t = SubTrie::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let c: Arc<str> = "c".into();
        t.insert("sport/tennis/+", &a, 0);
        t.insert("sport/#", &b, 1);
        t.insert("#", &c, 2);
        assert_eq!(
            clients(&t, "sport/tennis/player1"),
            vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 2)]
        );
        assert_eq!(clients(&t, "sport"), vec![("b".into(), 1), ("c".into(), 2)]);
        assert_eq!(
            clients(&t, "sport/tennis"),
            vec![("b".into(), 1), ("c".into(), 2)]
        );
        assert_eq!(
            clients(&t, "sport/tennis/player1/ranking"),
            vec![("b".into(), 1), ("c".into(), 2)]
        );
        assert_eq!(clients(&t, "$SYS/broker/uptime"), vec![]);
        for topic in ["sport/tennis/player1", "sport", "a/b/c", "$SYS/x", "", "/"] {
            assert_eq!(t.any_match(topic), !t.matches(topic).is_empty(), "{topic}");
        }
        let mut literal = SubTrie::default();
        literal.insert("a/b", &a, 0);
        assert!(literal.any_match("a/b"));
        assert!(!literal.any_match("a"));
        assert!(!literal.any_match("a/b/c"));
    }

    #[test]
    fn overlapping_filters_give_the_highest_qos_once() {
        let mut t = SubTrie::default();
        let a: Arc<str> = "a".into();
        t.insert("a/+", &a, 1);
        t.insert("a/#", &a, 2);
        assert_eq!(clients(&t, "a/b"), vec![("a".into(), 2)]);
        assert!(t.remove("a/#", "a"));
        assert_eq!(clients(&t, "a/b"), vec![("a".into(), 1)]);
        assert!(t.remove("a/+", "a"));
        assert!(t.root.is_empty());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        let mut t = SubTrie::default();
        let a: Arc<str> = "a".into();
        t.insert("$SYS/#", &a, 0);
        t.insert("+/broker/#", &a, 1);
        assert_eq!(clients(&t, "$SYS/broker/uptime"), vec![("a".into(), 0)]);
        assert!(filter_matches("$SYS/#", "$SYS/x"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("+/x", "$SYS/x"));
    }

    #[test]
    fn empty_levels_are_levels() {
        let mut t = SubTrie::default();
        let a: Arc<str> = "a".into();
        t.insert("/+", &a, 0);
        assert_eq!(clients(&t, "/x"), vec![("a".into(), 0)]);
        assert_eq!(clients(&t, "x"), vec![]);
        assert!(filter_matches("+/+", "/x"));
    }

    #[test]
    fn coverage_of_filters() {
        assert!(filter_covers("secret/#", "secret/x"));
        assert!(filter_covers("secret/#", "secret/+/y"));
        assert!(filter_covers("a/+", "a/b"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(!filter_covers("secret/#", "#"));
        assert!(filter_covers("#", "anything/#"));
    }
}
