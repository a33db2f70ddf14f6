//! The `[[acl]]` rules of config.toml, narrowed to one client at CONNECT:
//! the rules whose `who` fits the client, with `%d` (device name) and `%c`
//! (client id) filled in. First matching rule wins; none matching allows.
//!
//! A PUBLISH matches a rule when the rule's filter matches its topic. A
//! SUBSCRIBE filter matches an `allow` rule when the rule covers every topic
//! the filter can match, and a `deny` rule when the two can match a topic in
//! common, so `#` is refused where `secret/#` is denied.

use crate::config::{Access, AclAction, AclRule, Who};
use crate::store::devices::Tag;

use super::trie::{filter_covers, filter_matches};

/// One rule as it applies to one client.
struct ClientRule {
    filter: String,
    allow: bool,
    publish: bool,
    subscribe: bool,
}

/// The rules that apply to one connected client.
pub struct ClientAcl {
    rules: Vec<ClientRule>,
}

impl ClientAcl {
    /// `device` is the authenticated device's name and tags; None = anonymous.
    pub fn for_client(
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
        let name = device.map(|(n, _)| n).unwrap_or("");
        let rules = rules
            .iter()
            .filter(|r| applies(&r.who))
            .map(|r| ClientRule {
                filter: r.topic.replace("%d", name).replace("%c", client_id),
                allow: r.access == Access::Allow,
                publish: r.actions.contains(&AclAction::Publish),
                subscribe: r.actions.contains(&AclAction::Subscribe),
            })
            .collect();
        ClientAcl { rules }
    }

    /// The rules for bridge `name`: those for `"*"` and `"bridge:NAME"`, with
    /// `%d` and `%c` both standing for `bridge:NAME`.
    pub fn for_bridge(rules: &[AclRule], name: &str) -> ClientAcl {
        let id = format!("{}{name}", super::BRIDGE_CLIENT_PREFIX);
        let rules = rules
            .iter()
            .filter(|r| match &r.who {
                Who::Any => true,
                Who::Bridge(n) => n == name,
                _ => false,
            })
            .map(|r| ClientRule {
                filter: r.topic.replace("%d", &id).replace("%c", &id),
                allow: r.access == Access::Allow,
                publish: r.actions.contains(&AclAction::Publish),
                subscribe: r.actions.contains(&AclAction::Subscribe),
            })
            .collect();
        ClientAcl { rules }
    }

    pub fn can_publish(&self, topic: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.publish && filter_matches(&r.filter, topic))
            .is_none_or(|r| r.allow)
    }

    pub fn can_subscribe(&self, filter: &str) -> bool {
        self.rules
            .iter()
            .find(|r| {
                r.subscribe
                    && if r.allow {
                        filter_covers(&r.filter, filter)
                    } else {
                        filters_intersect(&r.filter, filter)
                    }
            })
            .is_none_or(|r| r.allow)
    }
}

/// Whether some topic matches both filters.
pub fn filters_intersect(a: &str, b: &str) -> bool {
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
        assert!(!acl.can_subscribe("devices/+/temp"));
        assert!(!acl.can_subscribe("secret/x"));
        assert!(!acl.can_subscribe("#"));
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
    fn intersections() {
        assert!(filters_intersect("secret/#", "#"));
        assert!(filters_intersect("a/+/c", "a/b/+"));
        assert!(!filters_intersect("a/b", "a/c"));
        assert!(!filters_intersect("$SYS/#", "#"));
        assert!(filters_intersect("$SYS/#", "$SYS/x"));
    }
}
