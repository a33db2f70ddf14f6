//! The `[[acl]]` rules of config.toml, narrowed to one client at CONNECT:
//! the rules whose `who` fits the client, with `%d` (device name) and `%c`
//! (client id) filled in. First matching rule wins; none matching allows.
//!
//! A substitution can never widen a rule: a rule with `%c` does not apply to
//! a client whose id contains `+`, `#` or `/`, and one with `%d` not to a
//! device whose name does (nor to an anonymous client), as in Mosquitto.
//!
//! A PUBLISH matches a rule when the rule's filter matches its topic. For
//! SUBSCRIBE, a filter is refused only when every topic it can match is
//! denied: some `deny` rule covers the whole filter and no earlier `allow`
//! rule could match any of its topics. A filter that merely overlaps a deny
//! rule is granted, and [`ClientAcl::can_receive`] then decides each topic
//! delivered through it (the router caches that per topic and client), so a
//! denied topic is never delivered. `docs/acl.md` has examples.

use crate::config::{Access, AclAction, AclRule, Who};
use crate::store::devices::Tag;

use super::trie::{filter_covers, filter_matches};

/// One rule as it applies to one client.
#[derive(Debug, PartialEq, Eq)]
struct ClientRule {
    filter: String,
    allow: bool,
    publish: bool,
    subscribe: bool,
}

/// The rules that apply to one connected client.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientAcl {
    rules: Vec<ClientRule>,
    /// Whether any rule concerns subscriptions; when none does, every
    /// delivery is allowed without a look at the rules.
    any_subscribe: bool,
}

/// Whether `value` may stand for `%c`/`%d` in a filter: it must stay one
/// literal level.
fn substitutable(value: &str) -> bool {
    !value.contains(['+', '#', '/'])
}

impl ClientAcl {
    /// `device` is the authenticated device's name and tags; None = anonymous.
    pub(crate) fn for_client(
        rules: &[AclRule],
        device: Option<(&str, &[Tag])>,
        client_id: &str,
    ) -> ClientAcl {
        let applies = |who: &Who| match (who, device) {
            (Who::Any, _) => true,
            (Who::Anonymous, None) => true,
            (Who::Device(n), Some((name, _))) => n == name,
            (Who::Tag(k, v), Some((_, tags))) => tags.iter().any(|t| &t.key == k && &t.value == v),
            _ => false,
        };
        let name = device.map(|(n, _)| n).filter(|n| substitutable(n));
        let client_ok = substitutable(client_id);
        let rules: Vec<ClientRule> = rules
            .iter()
            .filter(|r| applies(&r.who))
            .filter_map(|r| {
                let mut filter = r.topic.clone();
                if filter.contains("%d") {
                    filter = filter.replace("%d", name?);
                }
                if filter.contains("%c") {
                    if !client_ok {
                        return None;
                    }
                    filter = filter.replace("%c", client_id);
                }
                Some(ClientRule {
                    filter,
                    allow: r.access == Access::Allow,
                    publish: r.actions.contains(&AclAction::Publish),
                    subscribe: r.actions.contains(&AclAction::Subscribe),
                })
            })
            .collect();
        let any_subscribe = rules.iter().any(|r| r.subscribe);
        ClientAcl {
            rules,
            any_subscribe,
        }
    }

    /// The rules for bridge `name`: those for `"*"` and `"bridge:NAME"`, with
    /// `%d` and `%c` both standing for `bridge:NAME`.
    pub(crate) fn for_bridge(rules: &[AclRule], name: &str) -> ClientAcl {
        let id = format!("{}{name}", super::BRIDGE_CLIENT_PREFIX);
        let rules = rules
            .iter()
            .filter(|r| match &r.who {
                Who::Any => true,
                Who::Bridge(n) => n == name,
                _ => false,
            })
            .map(|r| ClientRule {
                // `bridge:NAME` holds no `+`, `#` or `/` (names are checked
                // in config.rs): it stays one literal level.
                filter: r.topic.replace("%d", &id).replace("%c", &id),
                allow: r.access == Access::Allow,
                publish: r.actions.contains(&AclAction::Publish),
                subscribe: r.actions.contains(&AclAction::Subscribe),
            })
            .collect::<Vec<_>>();
        let any_subscribe = rules.iter().any(|r| r.subscribe);
        ClientAcl {
            rules,
            any_subscribe,
        }
    }

    pub(crate) fn can_publish(&self, topic: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.publish && filter_matches(&r.filter, topic))
            .is_none_or(|r| r.allow)
    }

    /// Whether a SUBSCRIBE to `filter` is granted: refused only when no
    /// topic it matches could be delivered.
    pub(crate) fn can_subscribe(&self, filter: &str) -> bool {
        for r in self.rules.iter().filter(|r| r.subscribe) {
            if r.allow {
                if filters_intersect(&r.filter, filter) {
                    return true;
                }
            } else if filter_covers(&r.filter, filter) {
                return false;
            }
        }
        true
    }

    /// Whether a message on `topic` may be delivered to this client.
    pub(crate) fn can_receive(&self, topic: &str) -> bool {
        if !self.any_subscribe {
            return true;
        }
        self.rules
            .iter()
            .find(|r| r.subscribe && filter_matches(&r.filter, topic))
            .is_none_or(|r| r.allow)
    }
}

/// Whether some topic matches both filters.
pub(crate) fn filters_intersect(a: &str, b: &str) -> bool {
    // A filter whose first level is a wildcard matches no `$` topic.
    let wild_first = |f: &str| f.starts_with('+') || f.starts_with('#');
    if (a.starts_with('$') && wild_first(b)) || (b.starts_with('$') && wild_first(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(who: Who, topic: &str, allow: bool, actions: &[AclAction]) -> AclRule {
        AclRule {
            who,
            topic: topic.into(),
            access: if allow { Access::Allow } else { Access::Deny },
            actions: actions.to_vec(),
            line: 1,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_none_allows() {
        let rules = vec![
            rule(
                Who::Any,
                "devices/%d/#",
                true,
                &[AclAction::Publish, AclAction::Subscribe],
            ),
            rule(
                Who::Any,
                "devices/#",
                false,
                &[AclAction::Publish, AclAction::Subscribe],
            ),
            rule(Who::Any, "secret/#", false, &[AclAction::Subscribe]),
        ];
        let tags = vec![];
        let acl = ClientAcl::for_client(&rules, Some(("d1", &tags)), "c1");
        assert!(acl.can_publish("devices/d1/temp"));
        assert!(!acl.can_publish("devices/d2/temp"));
        assert!(acl.can_publish("other"));
        assert!(acl.can_subscribe("devices/d1/+"));
        // Overlaps d1's allowed namespace: granted, filtered per delivery.
        assert!(acl.can_subscribe("devices/+/temp"));
        assert!(acl.can_receive("devices/d1/temp"));
        assert!(!acl.can_receive("devices/d2/temp"));
        assert!(!acl.can_subscribe("devices/d2/#"));
        assert!(!acl.can_subscribe("secret/x"));
        assert!(!acl.can_subscribe("secret/#"));
        assert!(acl.can_subscribe("#"));
        assert!(!acl.can_receive("secret/x"));
        assert!(acl.can_receive("other"));
        assert!(acl.can_publish("secret/x"));
    }

    #[test]
    fn who_selects_rules() {
        let rules = vec![
            rule(Who::Anonymous, "#", false, &[AclAction::Publish]),
            rule(
                Who::Tag("role".into(), "ro".into()),
                "#",
                false,
                &[AclAction::Publish],
            ),
        ];
        let anon = ClientAcl::for_client(&rules, None, "c");
        assert!(!anon.can_publish("a"));
        let ro = vec![Tag {
            key: "role".into(),
            value: "ro".into(),
        }];
        assert!(!ClientAcl::for_client(&rules, Some(("d", &ro)), "c").can_publish("a"));
        assert!(ClientAcl::for_client(&rules, Some(("d", &[])), "c").can_publish("a"));
    }

    #[test]
    fn bridge_rules_apply_to_their_bridge_only() {
        let rules = vec![
            rule(
                Who::Bridge("cloud".into()),
                "cmd/secret",
                false,
                &[AclAction::Publish],
            ),
            rule(
                Who::Device("cloud".into()),
                "#",
                false,
                &[AclAction::Publish],
            ),
            rule(Who::Any, "%c/#", false, &[AclAction::Subscribe]),
        ];
        let cloud = ClientAcl::for_bridge(&rules, "cloud");
        assert!(!cloud.can_publish("cmd/secret"));
        assert!(cloud.can_publish("cmd/open"));
        assert!(!cloud.can_subscribe("bridge:cloud/x"));
        assert!(ClientAcl::for_bridge(&rules, "other").can_publish("cmd/secret"));
        let tags = vec![];
        let device = ClientAcl::for_client(&rules, Some(("cloud", &tags)), "c");
        assert!(
            !device.can_publish("cmd/open"),
            "device rules are not bridge rules"
        );
    }

    #[test]
    fn wildcards_in_client_ids_and_names_never_widen_a_rule() {
        let both = [AclAction::Publish, AclAction::Subscribe];
        let rules = vec![
            rule(Who::Any, "clients/%c/#", true, &both),
            rule(Who::Any, "devices/%d/#", true, &both),
            rule(Who::Any, "clients/#", false, &both),
            rule(Who::Any, "devices/#", false, &both),
        ];
        for id in ["+", "#", "a/b", "x+"] {
            let acl = ClientAcl::for_client(&rules, Some(("d1", &[])), id);
            assert!(!acl.can_subscribe("clients/victim/#"), "{id}");
            assert!(!acl.can_receive("clients/victim/x"), "{id}");
            assert!(!acl.can_publish("clients/victim/x"), "{id}");
        }
        for name in ["+", "#", "a/b"] {
            let acl = ClientAcl::for_client(&rules, Some((name, &[])), "c");
            assert!(!acl.can_subscribe("devices/victim/#"), "{name}");
            assert!(!acl.can_publish("devices/victim/x"), "{name}");
        }
        let anon = ClientAcl::for_client(&rules, None, "c");
        assert!(!anon.can_publish("devices/x/y"));
        let fine = ClientAcl::for_client(&rules, Some(("d1", &[])), "c1");
        assert!(fine.can_subscribe("clients/c1/#"));
        assert!(fine.can_publish("devices/d1/t"));
        assert!(!fine.can_publish("devices/d2/t"));
    }

    #[test]
    fn a_wildcard_overlapping_a_deny_rule_is_granted_and_filtered() {
        let rules = vec![rule(
            Who::Any,
            "test/nosubscribe",
            false,
            &[AclAction::Subscribe],
        )];
        let acl = ClientAcl::for_client(&rules, Some(("d", &[])), "c");
        assert!(acl.can_subscribe("#"));
        assert!(acl.can_subscribe("+/+"));
        assert!(acl.can_subscribe("test/+"));
        assert!(!acl.can_subscribe("test/nosubscribe"));
        assert!(!acl.can_receive("test/nosubscribe"));
        assert!(acl.can_receive("test/other"));
        // An earlier allow wins for what it matches.
        let rules = vec![
            rule(Who::Any, "a/b", true, &[AclAction::Subscribe]),
            rule(Who::Any, "a/#", false, &[AclAction::Subscribe]),
        ];
        let acl = ClientAcl::for_client(&rules, Some(("d", &[])), "c");
        assert!(acl.can_subscribe("a/+"));
        assert!(acl.can_receive("a/b"));
        assert!(!acl.can_receive("a/c"));
        assert!(!acl.can_subscribe("a/c/#"));
    }

    #[test]
    fn intersections() {
        assert!(filters_intersect("secret/#", "#"));
        assert!(filters_intersect("a/+/c", "a/b/+"));
        assert!(!filters_intersect("a/b", "a/c"));
        assert!(!filters_intersect("$SYS/#", "#"));
        assert!(filters_intersect("$SYS/#", "$SYS/x"));
    }
}
