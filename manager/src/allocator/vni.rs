//! VXLAN network identifiers: one per overlay network, unique in the cluster.

use std::collections::BTreeSet;

/// The first VNI handed out (Docker's overlay driver starts at 4096 too, leaving the low
/// range to other VXLAN users on the hosts).
pub const FIRST: u32 = 4096;
/// The largest VNI VXLAN can carry (24 bits).
pub const LAST: u32 = (1 << 24) - 1;

/// The VNIs in use.
#[derive(Debug, Default, Clone)]
pub struct Vnis {
    used: BTreeSet<u32>,
}

impl Vnis {
    /// Marks `vni` as taken; false if it was already taken (or is zero).
    pub fn reserve(&mut self, vni: u32) -> bool {
        vni != 0 && self.used.insert(vni)
    }

    /// Takes the lowest free VNI from [`FIRST`] on, or `None` if all are taken.
    pub fn allocate(&mut self) -> Option<u32> {
        let mut candidate = FIRST;
        for &used in self.used.range(FIRST..) {
            if used != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate <= LAST).then(|| {
            self.used.insert(candidate);
            candidate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_from_4096() {
        let mut v = Vnis::default();
        assert_eq!(v.allocate(), Some(4096));
        assert!(v.reserve(4098));
        assert!(!v.reserve(4098));
        assert!(!v.reserve(0));
        assert!(
            v.reserve(10),
            "VNIs below the range taken elsewhere do not matter"
        );
        assert_eq!(v.allocate(), Some(4097));
        assert_eq!(v.allocate(), Some(4099));
    }
}
