//! Feed ranges that split and merge, written once for every adapter whose
//! change feed is partitioned by a key space (Cosmos DB's effective partition
//! keys, the in-memory store's hash space).
//!
//! A consumer keeps one lease per range it reads. When the store's physical
//! ranges change, the consumer's ranges become the common refinement of the
//! two: a range that split continues as its parts, each from the position of
//! the range it split from; a merge changes nothing (each former range keeps
//! being read, as a part of the merged one). So ranges only get finer, no
//! position ever moves back, and no event is read from the beginning again.

use std::fmt::Debug;

use crate::ports::{FeedPosition, PlannedRange};

/// `[min, max)` of a key space.
pub type Bounds<K> = (K, K);

/// The ranges to read: `physical` (the store's ranges now, disjoint) refined
/// by `held` (a consumer's ranges with their positions, disjoint). `label`
/// names a range as its leases know it.
pub fn refine<K: Ord + Clone + Debug>(
    physical: &[Bounds<K>],
    held: &[(Bounds<K>, FeedPosition)],
    label: impl Fn(&K, &K) -> String,
) -> Vec<PlannedRange> {
    let mut held: Vec<&(Bounds<K>, FeedPosition)> = held.iter().collect();
    held.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
    let mut planned = Vec::new();
    let fresh = |min: &K, max: &K| PlannedRange { range: label(min, max), continuation: None, split_from: None };
    for (min, max) in physical {
        let mut cursor = min.clone();
        for ((held_min, held_max), position) in held.iter().map(|h| (&h.0, &h.1)) {
            if held_max <= &cursor || held_min >= max {
                continue;
            }
            if held_min > &cursor {
                planned.push(fresh(&cursor, held_min));
                cursor = held_min.clone();
            }
            let end = std::cmp::min(max, held_max).clone();
            let range = label(&cursor, &end);
            let split_from = (range != position.range).then(|| position.range.clone());
            planned.push(PlannedRange { range, continuation: position.continuation.clone(), split_from });
            cursor = end;
        }
        if &cursor < max {
            planned.push(fresh(&cursor, max));
        }
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(min: &u32, max: &u32) -> String {
        format!("{min}-{max}")
    }

    fn held(min: u32, max: u32, at: &str) -> (Bounds<u32>, FeedPosition) {
        ((min, max), FeedPosition { range: label(&min, &max), continuation: Some(at.into()) })
    }

    fn plan(range: &str, at: Option<&str>, split_from: Option<&str>) -> PlannedRange {
        PlannedRange {
            range: range.into(),
            continuation: at.map(String::from),
            split_from: split_from.map(String::from),
        }
    }

    #[test]
    fn a_new_consumer_reads_each_physical_range_from_no_position() {
        let planned = refine(&[(0, 50), (50, 100)], &[], label);
        assert_eq!(planned, [plan("0-50", None, None), plan("50-100", None, None)]);
    }

    #[test]
    fn unchanged_ranges_keep_their_positions() {
        let planned = refine(&[(0, 50), (50, 100)], &[held(0, 50, "a"), held(50, 100, "b")], label);
        assert_eq!(planned, [plan("0-50", Some("a"), None), plan("50-100", Some("b"), None)]);
    }

    #[test]
    fn a_split_range_goes_on_as_its_parts_from_its_position() {
        let planned = refine(&[(0, 25), (25, 50), (50, 100)], &[held(0, 50, "a"), held(50, 100, "b")], label);
        assert_eq!(
            planned,
            [
                plan("0-25", Some("a"), Some("0-50")),
                plan("25-50", Some("a"), Some("0-50")),
                plan("50-100", Some("b"), None)
            ]
        );
    }

    #[test]
    fn a_merge_keeps_reading_the_former_ranges() {
        let planned = refine(&[(0, 100)], &[held(0, 50, "a"), held(50, 100, "b")], label);
        assert_eq!(planned, [plan("0-50", Some("a"), None), plan("50-100", Some("b"), None)]);
        // ... and a merged range split elsewhere refines both ways.
        let planned = refine(&[(0, 70), (70, 100)], &[held(0, 50, "a"), held(50, 100, "b")], label);
        assert_eq!(
            planned,
            [
                plan("0-50", Some("a"), None),
                plan("50-70", Some("b"), Some("50-100")),
                plan("70-100", Some("b"), Some("50-100"))
            ]
        );
    }

    #[test]
    fn what_no_held_range_covers_is_fresh() {
        let planned = refine(&[(0, 100)], &[held(20, 40, "a")], label);
        assert_eq!(planned, [plan("0-20", None, None), plan("20-40", Some("a"), None), plan("40-100", None, None)]);
    }
}
