//! Which versions may run in one cluster (issue 19, rolling upgrades).
//!
//! Two numbers matter between nodes. The **replication protocol** (what the
//! messages look like): each build speaks a range, and two nodes speak the
//! highest version both know. The **database schema**: each migration is
//! either *expanding* (it only adds what older builds ignore: a nullable or
//! defaulted column, a table) or *contracting* (it removes or changes what
//! an older build still uses). A database therefore records, besides its
//! version, the oldest schema a build may have to use it
//! (`compatible_from`); expanding migrations leave that number where it
//! was, so version N and N+1 run side by side: on one PostgreSQL database,
//! or as primary and replica in either order. Removal waits a release,
//! until no supported build uses the thing removed.

/// One build's replication protocol range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolRange {
    pub min: u32,
    pub max: u32,
}

impl ProtocolRange {
    /// A peer that announced only one version (`min` 0: a build that did not
    /// say) speaks just that one.
    pub fn announced(min: u32, max: u32) -> ProtocolRange {
        ProtocolRange { min: if min == 0 { max } else { min.min(max) }, max }
    }

    /// The version two nodes speak: the higher of what both know.
    pub fn negotiate(self, peer: ProtocolRange) -> Result<u32, String> {
        let speak = self.max.min(peer.max);
        if speak < self.min.max(peer.min) {
            return Err(format!(
                "replication protocols do not overlap: this node speaks {}..={} and the peer {}..={}; \
                 upgrade the older node first (one release at a time)",
                self.min, self.max, peer.min, peer.max
            ));
        }
        Ok(speak)
    }

    pub fn contains(self, v: u32) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

/// A schema as a build or a database knows it: its version, and the oldest
/// schema version a build may have and still use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaWindow {
    pub version: i64,
    pub compatible_from: i64,
}

impl SchemaWindow {
    /// A peer that did not say (`compatible_from` 0) is compatible with its
    /// own version only.
    pub fn announced(version: i64, compatible_from: i64) -> SchemaWindow {
        SchemaWindow {
            version,
            compatible_from: if compatible_from <= 0 { version } else { compatible_from.min(version) },
        }
    }

    /// Whether a build with schema `build` may use a database (or follow a
    /// primary) with this schema: a newer one only inside its window.
    pub fn usable_by(self, build: i64) -> bool {
        build >= self.compatible_from
    }

    /// Whether a replica whose build has schema `replica` may apply a
    /// primary's rows (`self`): each side must be inside the other's window,
    /// since the older side ignores what the newer one added and the newer
    /// side fills in defaults for what the older one never sends.
    pub fn replicates_with(self, replica: SchemaWindow) -> Result<(), String> {
        if self.usable_by(replica.version) && replica.usable_by(self.version) {
            return Ok(());
        }
        let (older, newer) = if self.version < replica.version { (self, replica) } else { (replica, self) };
        Err(format!(
            "database schemas {} and {} are too far apart (schema {} works with builds from schema {} on): \
             upgrade one release at a time",
            older.version, newer.version, newer.version, newer.compatible_from
        ))
    }
}

/// The version string nodes show each other: the release and its schema.
pub fn describe_build(release: &str, schema: i64, protocol: u32) -> String {
    format!("{release} (schema {schema}, protocol {protocol})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_speak_the_highest_protocol_both_know() {
        let old = ProtocolRange { min: 3, max: 3 };
        let new = ProtocolRange { min: 3, max: 4 };
        assert_eq!(old.negotiate(new), Ok(3));
        assert_eq!(new.negotiate(old), Ok(3));
        assert_eq!(new.negotiate(new), Ok(4));
        let newest = ProtocolRange { min: 4, max: 5 };
        assert_eq!(new.negotiate(newest), Ok(4));
        let err = old.negotiate(newest).unwrap_err();
        assert!(err.contains("3..=3") && err.contains("4..=5"), "{err}");
    }

    #[test]
    fn a_peer_that_did_not_say_speaks_only_its_version() {
        let r = ProtocolRange::announced(0, 2);
        assert_eq!(r, ProtocolRange { min: 2, max: 2 });
        assert!(ProtocolRange { min: 3, max: 4 }.negotiate(r).is_err());
        // A minimum above the maximum is read as the maximum.
        assert_eq!(ProtocolRange::announced(9, 4), ProtocolRange { min: 4, max: 4 });
    }

    #[test]
    fn one_release_apart_replicates_both_ways() {
        let n = SchemaWindow::announced(8, 8);
        let n1 = SchemaWindow::announced(9, 8);
        assert!(n1.replicates_with(n).is_ok(), "new primary, old replica");
        assert!(n.replicates_with(n1).is_ok(), "old primary, new replica");
        assert!(n1.usable_by(8) && n1.usable_by(9) && !n1.usable_by(7));
    }

    #[test]
    fn a_contracting_migration_closes_the_window() {
        let n = SchemaWindow::announced(8, 8);
        let contracted = SchemaWindow::announced(10, 9);
        let err = contracted.replicates_with(n).unwrap_err();
        assert!(err.contains("8 and 10"), "{err}");
        assert!(n.replicates_with(contracted).is_err());
        // Two releases apart even with expanding migrations only: the older
        // build's window does not reach the newer schema.
        let old = SchemaWindow::announced(7, 7);
        let n1 = SchemaWindow::announced(9, 8);
        assert!(n1.replicates_with(old).is_err());
    }

    #[test]
    fn a_schema_that_did_not_say_is_compatible_with_itself_only() {
        assert_eq!(SchemaWindow::announced(8, 0), SchemaWindow { version: 8, compatible_from: 8 });
        assert_eq!(SchemaWindow::announced(8, 12), SchemaWindow { version: 8, compatible_from: 8 });
        assert!(!SchemaWindow::announced(8, 0).usable_by(7));
    }
}
