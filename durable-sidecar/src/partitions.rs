//! Partitions: how the instances of one task hub are split between the replicas that serve
//! it. Every instance belongs to one partition, chosen by a stable hash of its id; every
//! entity (and every entity lock) belongs to partition 0, so critical sections that lock several
//! entities are granted by one engine. One replica at a time serves a partition.

/// How many partitions a PostgreSQL task hub has. Fixed: instances are assigned by it, so
/// changing it would move them (a later version may migrate).
pub(crate) const PARTITIONS: u32 = 8;

/// The partition an engine serves, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    pub(crate) index: u32,
    pub(crate) count: u32,
}

impl Partition {
    /// Whether this partition holds the instance or entity `id`.
    pub(crate) fn holds(self, id: &str) -> bool {
        partition_of(id, self.count) == self.index
    }
}

/// The partition holding instance or entity `id` (entities, `@name@key`, are all in 0).
///
/// FNV-1a over the id's bytes: stable across versions, platforms and processes, which the
/// `part` column in storage relies on.
pub(crate) fn partition_of(id: &str, count: u32) -> u32 {
    if id.starts_with('@') || count <= 1 {
        return 0;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % count
}

/// The partition of entity work (operations, lock requests and releases).
pub(crate) const ENTITY_PARTITION: u32 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_and_stay_put() {
        assert_eq!(partition_of("@counter@a", 8), 0);
        assert_eq!(partition_of("anything", 1), 0);
        // Fixed values: a change here would move stored instances to other partitions.
        assert_eq!(partition_of("order-1", 8), 5);
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            seen[partition_of(&format!("instance-{i}"), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }
}
