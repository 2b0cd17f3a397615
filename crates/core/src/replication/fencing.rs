//! Which role a node may take, from what the other nodes say.
//!
//! An epoch is a primary's term: `replica promote` starts a new one. A node
//! never acts as primary on its own say-so after a restart: it asks every
//! enrolled node first. A newer epoch anywhere means this node was
//! replaced; an equal epoch held by another primary means two nodes were
//! promoted apart (split brain), which only an administrator can settle;
//! and a node that reaches nobody cannot know, so it keeps answering logins
//! but takes no administrative write until an administrator confirms it.
//! Sans-IO: the server asks the peers, this decides.

use super::wire::{Hello, Role};

/// One peer's answer to a hello, or none.
#[derive(Debug, Clone, Copy)]
pub enum PeerAnswer<'a> {
    Unreachable,
    Hello(&'a Hello),
}

/// Where a newer primary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewerPrimary {
    pub name: String,
    /// As the answering peer knows it (a replica names its primary's URL);
    /// `None` when only the enrolled node list can tell.
    pub url: Option<String>,
    pub epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDecision {
    /// No node knows a newer epoch, and one answered (or there is nobody to
    /// ask): this node's role stands.
    Confirmed,
    /// Nobody answered: answer logins, take no administrative write.
    Isolated,
    /// A newer primary exists: this node was replaced and follows it.
    Follow(NewerPrimary),
    /// Another node is primary at the same epoch.
    Conflict { name: String, epoch: i64 },
}

/// Decides from the peers' answers (`(peer name, answer)`, this node left
/// out) what a node named `me` at `my_epoch` may do.
pub fn decide(me: &str, my_epoch: i64, answers: &[(String, PeerAnswer<'_>)]) -> RoleDecision {
    let mut reached = 0usize;
    let mut newest: Option<NewerPrimary> = None;
    let mut conflict: Option<(String, i64)> = None;
    for (peer, answer) in answers {
        let PeerAnswer::Hello(h) = answer else { continue };
        reached += 1;
        // Whom this peer takes for the primary of its epoch.
        let candidate = match h.role {
            Role::Primary => Some(NewerPrimary { name: h.node.clone(), url: None, epoch: h.epoch }),
            Role::Replica => h.primary_name.clone().or_else(|| h.primary_url.clone()).map(|name| NewerPrimary {
                name,
                url: h.primary_url.clone(),
                epoch: h.epoch,
            }),
            Role::Standalone => None,
        };
        let Some(c) = candidate else { continue };
        if c.name == me {
            continue;
        }
        if c.epoch > my_epoch {
            if newest.as_ref().is_none_or(|n| c.epoch > n.epoch || (c.epoch == n.epoch && n.url.is_none())) {
                newest = Some(c);
            }
        } else if c.epoch == my_epoch && h.role == Role::Primary && peer != me {
            conflict = Some((c.name, c.epoch));
        }
    }
    if let Some(n) = newest {
        return RoleDecision::Follow(n);
    }
    if let Some((name, epoch)) = conflict {
        return RoleDecision::Conflict { name, epoch };
    }
    if reached == 0 && !answers.is_empty() {
        return RoleDecision::Isolated;
    }
    RoleDecision::Confirmed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: &str, role: Role, epoch: i64, primary: Option<&str>) -> Hello {
        Hello {
            node: node.into(),
            role,
            epoch,
            head: 0,
            schema_version: 8,
            key_id: "k".into(),
            previous_key_ids: vec![],
            time_ms: 0,
            primary_url: primary.map(|p| format!("https://{p}:8443")),
            primary_name: primary.map(String::from),
            fenced: None,
            protocol: 3,
            min_protocol: 3,
            schema_compatible_from: 8,
            version: String::new(),
        }
    }

    #[test]
    fn a_promoted_replica_replaces_the_old_primary() {
        let r1 = hello("r1", Role::Primary, 2, None);
        let r2 = hello("r2", Role::Replica, 1, Some("p"));
        let d = decide("p", 1, &[("r1".into(), PeerAnswer::Hello(&r1)), ("r2".into(), PeerAnswer::Hello(&r2))]);
        assert_eq!(d, RoleDecision::Follow(NewerPrimary { name: "r1".into(), url: None, epoch: 2 }));
    }

    #[test]
    fn a_replica_that_follows_the_newer_primary_names_it() {
        let r2 = hello("r2", Role::Replica, 2, Some("r1"));
        let d = decide("p", 1, &[("r1".into(), PeerAnswer::Unreachable), ("r2".into(), PeerAnswer::Hello(&r2))]);
        assert_eq!(
            d,
            RoleDecision::Follow(NewerPrimary { name: "r1".into(), url: Some("https://r1:8443".into()), epoch: 2 })
        );
    }

    #[test]
    fn replicas_of_this_node_confirm_it() {
        let r1 = hello("r1", Role::Replica, 1, Some("p"));
        let d = decide("p", 1, &[("r1".into(), PeerAnswer::Hello(&r1)), ("r2".into(), PeerAnswer::Unreachable)]);
        assert_eq!(d, RoleDecision::Confirmed);
    }

    #[test]
    fn nobody_reachable_is_isolated_and_nobody_enrolled_is_confirmed() {
        assert_eq!(decide("p", 1, &[("r1".into(), PeerAnswer::Unreachable)]), RoleDecision::Isolated);
        assert_eq!(decide("p", 1, &[]), RoleDecision::Confirmed);
    }

    #[test]
    fn two_primaries_at_one_epoch_conflict() {
        let q = hello("q", Role::Primary, 3, None);
        assert_eq!(
            decide("p", 3, &[("q".into(), PeerAnswer::Hello(&q))]),
            RoleDecision::Conflict { name: "q".into(), epoch: 3 }
        );
        // An older primary elsewhere is not a threat: it fences itself.
        let old = hello("q", Role::Primary, 2, None);
        assert_eq!(decide("p", 3, &[("q".into(), PeerAnswer::Hello(&old))]), RoleDecision::Confirmed);
    }
}
