//! Topic trees: the subscription index ([`SubTrie`], topic name to the
//! clients whose filters match it) and the index of active topic names
//! ([`NameTrie`], filter to the topic names it matches), so that the work of
//! a publish, a SUBSCRIBE or an UNSUBSCRIBE is proportional to what matches,
//! never to everything there is.
//!
//! Both are one [`Tree`]: nodes in an arena, one node per level, children by
//! the level's text. `+` and `#` are plain keys in the subscription tree
//! (topic names never contain them). Nothing here recurses: a client may send
//! a filter of 32,768 levels, and every walk keeps its own stack on the heap,
//! and dropping a tree frees a flat vector.
//!
//! Matching follows the specification: `+` matches one level, `#` the parent
//! level and everything below, and a topic starting with `$` is not matched
//! by a filter whose first level is a wildcard.

use std::collections::HashMap;
use std::sync::Arc;

/// A node's place in the arena.
type NodeId = u32;

/// The root: the level before the first.
const ROOT: NodeId = 0;

/// Children kept in a vector up to this many (a short scan beats hashing),
/// in a map beyond.
const FEW_CHILDREN: usize = 8;

/// A node's children by level text. The map is boxed so that every node
/// (most have a few children or none) stays small.
enum Children {
    Few(Vec<(Box<str>, NodeId)>),
    // Boxed on purpose: the extra allocation is for the rare wide node.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, NodeId>>),
}

impl Children {
    fn get(&self, key: &str) -> Option<NodeId> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| &**k == key).map(|(_, id)| *id),
            Children::Many(m) => m.get(key).copied(),
        }
    }

    fn insert(&mut self, key: &str, id: NodeId) {
        match self {
            Children::Few(v) if v.len() < FEW_CHILDREN => v.push((key.into(), id)),
            Children::Few(v) => {
                let mut m: HashMap<Box<str>, NodeId> = v.drain(..).collect();
                m.insert(key.into(), id);
                *self = Children::Many(Box::new(m));
            }
            Children::Many(m) => {
                m.insert(key.into(), id);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        match self {
            Children::Few(v) => v.retain(|(k, _)| &**k != key),
            Children::Many(m) => {
                m.remove(key);
                if m.is_empty() {
                    *self = Children::Few(Vec::new());
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    /// Calls `f` with each child's key and id.
    fn each(&self, mut f: impl FnMut(&str, NodeId)) {
        match self {
            Children::Few(v) => v.iter().for_each(|(k, id)| f(k, *id)),
            Children::Many(m) => m.iter().for_each(|(k, id)| f(k, *id)),
        }
    }
}

struct Node<T> {
    parent: NodeId,
    children: Children,
    value: T,
}

/// A tree of topic levels with a `T` at every node; nodes live in one vector
/// and are reused once freed.
struct Tree<T> {
    nodes: Vec<Option<Node<T>>>,
    free: Vec<NodeId>,
}

impl<T: Default> Default for Tree<T> {
    fn default() -> Self {
        Tree {
            nodes: vec![Some(Node {
                parent: ROOT,
                children: Children::Few(Vec::new()),
                value: T::default(),
            })],
            free: Vec::new(),
        }
    }
}

impl<T: Default> Tree<T> {
    fn node(&self, id: NodeId) -> &Node<T> {
        match &self.nodes[id as usize] {
            Some(n) => n,
            // Ids come only from the tree's own links, which never point at a
            // freed slot (a node is unlinked before it is freed).
            None => unreachable!("a link to a freed trie node"),
        }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<T> {
        match &mut self.nodes[id as usize] {
            Some(n) => n,
            None => unreachable!("a link to a freed trie node"),
        }
    }

    fn child(&self, id: NodeId, key: &str) -> Option<NodeId> {
        self.node(id).children.get(key)
    }

    /// The node at the end of `levels`, if the tree has it.
    fn find<'a>(&self, levels: impl Iterator<Item = &'a str>) -> Option<NodeId> {
        let mut id = ROOT;
        for level in levels {
            id = self.child(id, level)?;
        }
        Some(id)
    }

    /// The node at the end of `levels`, created with its parents as needed.
    fn find_or_insert<'a>(&mut self, levels: impl Iterator<Item = &'a str>) -> NodeId {
        let mut id = ROOT;
        for level in levels {
            id = match self.child(id, level) {
                Some(c) => c,
                None => {
                    let node = Node {
                        parent: id,
                        children: Children::Few(Vec::new()),
                        value: T::default(),
                    };
                    let c = match self.free.pop() {
                        Some(c) => {
                            self.nodes[c as usize] = Some(node);
                            c
                        }
                        None => {
                            self.nodes.push(Some(node));
                            (self.nodes.len() - 1) as NodeId
                        }
                    };
                    self.node_mut(id).children.insert(level, c);
                    c
                }
            };
        }
        id
    }

    /// Frees `id` and then each parent in turn while it has no children and
    /// `empty` says its value holds nothing. `path` is the text of the levels
    /// from the root to `id`, which name each node in its parent.
    fn prune(&mut self, mut id: NodeId, path: &str, empty: impl Fn(&T) -> bool) {
        let mut path = path;
        while id != ROOT {
            let n = self.node(id);
            if !n.children.is_empty() || !empty(&n.value) {
                return;
            }
            let parent = n.parent;
            let key = match path.rfind('/') {
                Some(i) => {
                    let key = &path[i + 1..];
                    path = &path[..i];
                    key
                }
                None => std::mem::take(&mut path),
            };
            self.node_mut(parent).children.remove(key);
            self.nodes[id as usize] = None;
            self.free.push(id);
            id = parent;
        }
    }

    /// Whether only the root is left.
    #[cfg(test)]
    fn is_bare(&self) -> bool {
        self.node(ROOT).children.is_empty()
    }
}

/// A walk's stack: a few entries inline, so the common walk allocates
/// nothing, and the heap beyond.
struct Stack<T: Copy> {
    inline: [Option<T>; 16],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy> Stack<T> {
    fn new() -> Self {
        Stack {
            inline: [None; 16],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, v: T) {
        if self.len < self.inline.len() {
            self.inline[self.len] = Some(v);
            self.len += 1;
        } else {
            self.spill.push(v);
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(v) = self.spill.pop() {
            return Some(v);
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.inline[self.len].take()
    }
}

/// The level of `text` that starts at byte `at`, and where the next starts
/// (`None` after the last level).
fn level_at(text: &str, at: usize) -> (&str, Option<usize>) {
    match text[at..].find('/') {
        Some(i) => (&text[at..at + i], Some(at + i + 1)),
        None => (&text[at..], None),
    }
}

/// The subscription index: every (client, filter) with its value (the
/// granted QoS, or for the router the subscription's options).
pub(crate) struct SubTrie<V = u8> {
    /// At each node, the clients whose filter ends there.
    tree: Tree<HashMap<Arc<str>, V>>,
    /// How many (client, filter) pairs are indexed; for metrics.
    len: usize,
}

impl<V> Default for SubTrie<V> {
    fn default() -> Self {
        SubTrie {
            tree: Tree::default(),
            len: 0,
        }
    }
}

impl<V: Copy> SubTrie<V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or updates `client`'s subscription to `filter` (a valid filter).
    pub(crate) fn insert(&mut self, filter: &str, client: &Arc<str>, value: V) {
        let id = self.tree.find_or_insert(filter.split('/'));
        if self
            .tree
            .node_mut(id)
            .value
            .insert(client.clone(), value)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Removes `client`'s subscription to `filter`; true when there was one.
    pub(crate) fn remove(&mut self, filter: &str, client: &str) -> bool {
        let Some(id) = self.tree.find(filter.split('/')) else {
            return false;
        };
        if self.tree.node_mut(id).value.remove(client).is_none() {
            return false;
        }
        self.len -= 1;
        self.tree.prune(id, filter, |clients| clients.is_empty());
        true
    }

    /// Calls `f` with the clients of every node whose filter matches `topic`
    /// until `f` returns false.
    fn walk(&self, topic: &str, mut f: impl FnMut(&HashMap<Arc<str>, V>) -> bool) {
        let dollar = topic.starts_with('$');
        let mut stack: Stack<(NodeId, Option<usize>)> = Stack::new();
        stack.push((ROOT, Some(0)));
        while let Some((id, at)) = stack.pop() {
            // `+` and `#` match no `$` topic at the first level.
            let wild = !(dollar && id == ROOT);
            if wild {
                // `#` matches the rest, also when nothing is left ("a/#" matches "a").
                if let Some(h) = self.tree.child(id, "#") {
                    if !f(&self.tree.node(h).value) {
                        return;
                    }
                }
            }
            let Some(at) = at else {
                if !f(&self.tree.node(id).value) {
                    return;
                }
                continue;
            };
            let (level, next) = level_at(topic, at);
            if let Some(c) = self.tree.child(id, level) {
                stack.push((c, next));
            }
            if wild && level != "+" {
                if let Some(c) = self.tree.child(id, "+") {
                    stack.push((c, next));
                }
            }
        }
    }

    /// Whether any filter matches `topic`; allocates nothing for topics of
    /// ordinary depth (a check on every publish).
    pub(crate) fn any_match(&self, topic: &str) -> bool {
        let mut found = false;
        self.walk(topic, |clients| {
            found = !clients.is_empty();
            !found
        });
        found
    }

    /// Calls `f` with every (client, value) whose filter matches `topic`;
    /// a client with several matching filters comes once per filter.
    pub(crate) fn each_match(&self, topic: &str, mut f: impl FnMut(&Arc<str>, V)) {
        self.walk(topic, |clients| {
            for (client, &v) in clients {
                f(client, v);
            }
            true
        });
    }

    /// Calls `f` with the value of each of `client`'s filters matching
    /// `topic`; costs the matching nodes, not the client's filters.
    pub(crate) fn each_of(&self, topic: &str, client: &str, mut f: impl FnMut(V)) {
        self.walk(topic, |clients| {
            if let Some(&v) = clients.get(client) {
                f(v);
            }
            true
        });
    }
}

impl SubTrie<u8> {
    /// Every client subscribed to `topic`, with the highest QoS among its
    /// matching filters (one copy per message, at the highest QoS).
    pub(crate) fn matches(&self, topic: &str) -> HashMap<Arc<str>, u8> {
        let mut out: HashMap<Arc<str>, u8> = HashMap::new();
        self.each_match(topic, |client, qos| {
            let e = out.entry(client.clone()).or_insert(qos);
            *e = (*e).max(qos);
        });
        out
    }

    /// The highest QoS `client` holds among its filters matching `topic`.
    pub(crate) fn grant_of(&self, topic: &str, client: &str) -> Option<u8> {
        let mut best: Option<u8> = None;
        self.each_of(topic, client, |q| best = Some(best.map_or(q, |b| b.max(q))));
        best
    }
}

/// The index of topic names: which of them a filter matches.
#[derive(Default)]
pub(crate) struct NameTrie {
    /// At the node of each indexed name, the name itself.
    tree: Tree<Option<Arc<str>>>,
    len: usize,
}

impl NameTrie {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Indexes a topic name (a valid name, no wildcards).
    pub(crate) fn insert(&mut self, name: &Arc<str>) {
        let id = self.tree.find_or_insert(name.split('/'));
        let slot = &mut self.tree.node_mut(id).value;
        if slot.is_none() {
            self.len += 1;
        }
        *slot = Some(name.clone());
    }

    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let Some(id) = self.tree.find(name.split('/')) else {
            return false;
        };
        if self.tree.node_mut(id).value.take().is_none() {
            return false;
        }
        self.len -= 1;
        self.tree.prune(id, name, |v| v.is_none());
        true
    }

    /// Calls `f` with every indexed name that `filter` matches.
    pub(crate) fn for_each_match(&self, filter: &str, mut f: impl FnMut(&Arc<str>)) {
        let mut stack: Stack<(NodeId, Option<usize>)> = Stack::new();
        stack.push((ROOT, Some(0)));
        while let Some((id, at)) = stack.pop() {
            let Some(at) = at else {
                if let Some(name) = &self.tree.node(id).value {
                    f(name);
                }
                continue;
            };
            let (level, next) = level_at(filter, at);
            match level {
                "#" => self.each_below(id, &mut f),
                "+" => self.tree.node(id).children.each(|key, c| {
                    if !(id == ROOT && key.starts_with('$')) {
                        stack.push((c, next));
                    }
                }),
                _ => {
                    if let Some(c) = self.tree.child(id, level) {
                        stack.push((c, next));
                    }
                }
            }
        }
    }

    /// Every name at `top` and below it (what `#` matches from there); at
    /// the root, not the `$` topics.
    fn each_below(&self, top: NodeId, f: &mut dyn FnMut(&Arc<str>)) {
        let mut stack: Stack<NodeId> = Stack::new();
        stack.push(top);
        while let Some(id) = stack.pop() {
            let n = self.tree.node(id);
            if let Some(name) = &n.value {
                f(name);
            }
            n.children.each(|key, c| {
                if !(id == ROOT && key.starts_with('$')) {
                    stack.push(c);
                }
            });
        }
    }

    /// Whether the tree holds nothing (only its root node).
    #[cfg(test)]
    pub(crate) fn is_bare(&self) -> bool {
        self.tree.is_bare()
    }
}

/// Whether `filter` matches `topic` (both valid); the same rules as the trie.
pub(crate) fn filter_matches(filter: &str, topic: &str) -> bool {
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
pub(crate) fn filter_covers(outer: &str, inner: &str) -> bool {
    // A filter starting with a wildcard matches no `$` topic, which `inner`
    // may match when it starts with `$`.
    let wild_first = |f: &str| f.starts_with('+') || f.starts_with('#');
    if wild_first(outer) && inner.starts_with('$') {
        return false;
    }
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

    fn names(t: &NameTrie, filter: &str) -> Vec<String> {
        let mut v = Vec::new();
        t.for_each_match(filter, |n| v.push(n.to_string()));
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
        assert_eq!(t.grant_of("a/b", "a"), Some(2));
        assert!(t.remove("a/#", "a"));
        assert_eq!(clients(&t, "a/b"), vec![("a".into(), 1)]);
        assert_eq!(t.grant_of("a/b", "a"), Some(1));
        assert_eq!(t.grant_of("a", "a"), None);
        assert!(t.remove("a/+", "a"));
        assert!(t.tree.is_bare());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        let mut t = SubTrie::default();
        let a: Arc<str> = "a".into();
        t.insert("$SYS/#", &a, 0);
        t.insert("+/broker/#", &a, 1);
        assert_eq!(clients(&t, "$SYS/broker/uptime"), vec![("a".into(), 0)]);
        assert_eq!(clients(&t, "$SYS"), vec![("a".into(), 0)]);
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
        t.insert("a/", &a, 1);
        assert_eq!(clients(&t, "a/"), vec![("a".into(), 1)]);
        assert_eq!(clients(&t, "a"), vec![]);
    }

    #[test]
    fn a_filter_of_32768_levels_goes_in_and_out_without_recursion() {
        // 65,535 bytes: the longest filter MQTT can carry.
        let deep = vec!["a"; 32768].join("/");
        assert_eq!(deep.len(), 65535);
        let mut t = SubTrie::default();
        let a: Arc<str> = "a".into();
        t.insert(&deep, &a, 1);
        t.insert(&format!("{}/#", &deep[..deep.len() - 2]), &a, 0);
        assert_eq!(clients(&t, &deep), vec![("a".into(), 1)]);
        assert!(t.any_match(&deep));
        assert!(t.remove(&deep, "a"));
        assert!(t.remove(&format!("{}/#", &deep[..deep.len() - 2]), "a"));
        assert!(t.tree.is_bare());
        let mut n = NameTrie::default();
        let name: Arc<str> = deep.clone().into();
        n.insert(&name);
        assert_eq!(names(&n, "#").len(), 1);
        assert_eq!(names(&n, &deep).len(), 1);
        assert!(n.remove(&deep));
        assert!(n.is_bare());
        // Dropping a deep tree is flat too.
        let mut t = SubTrie::default();
        t.insert(&deep, &a, 1);
        drop(t);
    }

    #[test]
    fn names_matched_by_a_filter() {
        let mut n = NameTrie::default();
        for name in [
            "a", "a/b", "a/b/c", "a/c", "b", "$SYS/x", "$SYS", "/x", "", "a/",
        ] {
            n.insert(&Arc::from(name));
        }
        assert_eq!(names(&n, "a/#"), vec!["a", "a/", "a/b", "a/b/c", "a/c"]);
        assert_eq!(names(&n, "a/+"), vec!["a/", "a/b", "a/c"]);
        assert_eq!(names(&n, "+"), vec!["", "a", "b"]);
        assert_eq!(names(&n, "#").len(), 8);
        assert_eq!(names(&n, "$SYS/#"), vec!["$SYS", "$SYS/x"]);
        assert_eq!(names(&n, "+/x"), vec!["/x"]);
        assert_eq!(names(&n, "a/b/c"), vec!["a/b/c"]);
        assert!(n.remove("a/b"));
        assert_eq!(names(&n, "a/#"), vec!["a", "a/", "a/b/c", "a/c"]);
        assert!(!n.remove("a/b"));
        assert_eq!(n.len(), 9);
        // Many children switch to a map and back.
        for i in 0..100 {
            n.insert(&Arc::from(format!("many/{i}")));
        }
        assert_eq!(names(&n, "many/+").len(), 100);
        for i in 0..100 {
            assert!(n.remove(&format!("many/{i}")));
        }
        assert!(names(&n, "many/#").is_empty());
    }

    #[test]
    fn coverage_of_filters() {
        assert!(filter_covers("secret/#", "secret/x"));
        assert!(filter_covers("secret/#", "secret/+/y"));
        assert!(filter_covers("a/+", "a/b"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(!filter_covers("secret/#", "#"));
        assert!(filter_covers("#", "anything/#"));
        assert!(!filter_covers("#", "$SYS/#"));
        assert!(filter_covers("$SYS/#", "$SYS/x"));
    }
}
