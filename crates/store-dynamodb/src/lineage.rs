//! Feed ranges over DynamoDB Streams shards: pure planning, no I/O.
//!
//! A stream's shards form a forest: a shard closes after a few hours (or
//! when its partition splits) and its child or children go on with the same
//! keys. Records of one key are in order within a shard, and a child's
//! records come after its parent's — so a range is a **lineage**: it starts
//! at a shard, reads it to its end, then goes on in its only child; when a
//! shard ends with several children, each child becomes a range of its own,
//! going on from the start of that child (the parent's range is done). No
//! child is read before its parent is finished, so every stream's events
//! stay in order.
//!
//! A range is named by the shard it started at; its position names the shard
//! it is in now and where in it ([`Position`]).

use std::collections::{HashMap, HashSet};

use orderflow_pipeline::ports::{FeedPosition, PlannedRange};
use orderflow_pipeline::StoreError;

/// Where a range's reading goes on, within the shard it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// From the shard's first record still held (24 hours back at most);
    /// events from before `since` (Unix milliseconds), if given, skipped.
    Start { since: Option<i64> },
    /// After the record with this sequence number; events from before
    /// `since` still skipped.
    After { sequence: String, since: Option<i64> },
    /// The shard is closed and was read to its end; its children go on.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub shard: String,
    pub at: At,
}

impl Position {
    pub fn start(shard: &str, since: Option<i64>) -> Position {
        Position { shard: shard.to_string(), at: At::Start { since } }
    }

    /// The position a continuation names, or the start of `range` when none.
    pub fn parse(range: &str, continuation: Option<&str>) -> Result<Position, StoreError> {
        let Some(text) = continuation else {
            return Ok(Position::start(range, None));
        };
        let corrupt = || StoreError::Corrupt(format!("not a DynamoDB Streams position: {text:?}"));
        let parts: Vec<&str> = text.split('/').collect();
        let since = |at: &[&str]| match at {
            [] => Ok(None),
            ["since", millis] => millis.parse().map(Some).map_err(|_| corrupt()),
            _ => Err(corrupt()),
        };
        let (shard, at) = match parts.as_slice() {
            [shard, "start", rest @ ..] => (shard, At::Start { since: since(rest)? }),
            [shard, "after", sequence, rest @ ..] if !sequence.is_empty() => {
                (shard, At::After { sequence: sequence.to_string(), since: since(rest)? })
            }
            [shard, "end"] => (shard, At::End),
            _ => return Err(corrupt()),
        };
        if shard.is_empty() {
            return Err(corrupt());
        }
        Ok(Position { shard: shard.to_string(), at })
    }

    pub fn since(&self) -> Option<i64> {
        match &self.at {
            At::Start { since } | At::After { since, .. } => *since,
            At::End => None,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = |since: &Option<i64>| since.map(|millis| format!("/since/{millis}")).unwrap_or_default();
        match &self.at {
            At::Start { since: s } => write!(f, "{}/start{}", self.shard, since(s)),
            At::After { sequence, since: s } => write!(f, "{}/after/{sequence}{}", self.shard, since(s)),
            At::End => write!(f, "{}/end", self.shard),
        }
    }
}

/// A shard as the stream describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub parent: Option<String>,
}

/// The shards' family tree.
pub struct Family<'a> {
    present: HashSet<&'a str>,
    parent: HashMap<&'a str, &'a str>,
    children: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Family<'a> {
    pub fn of(shards: &'a [Shard]) -> Family<'a> {
        let present = shards.iter().map(|s| s.id.as_str()).collect();
        let mut parent = HashMap::new();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for shard in shards {
            if let Some(p) = &shard.parent {
                parent.insert(shard.id.as_str(), p.as_str());
                children.entry(p.as_str()).or_default().push(shard.id.as_str());
            }
        }
        for list in children.values_mut() {
            list.sort_unstable();
        }
        Family { present, parent, children }
    }

    pub fn children(&self, shard: &str) -> &[&'a str] {
        self.children.get(shard).map_or(&[], Vec::as_slice)
    }

    /// Shards whose parent the stream no longer holds (or never had): where
    /// lineages begin.
    fn roots(&self) -> impl Iterator<Item = &'a str> + '_ {
        let mut roots: Vec<&str> = self
            .present
            .iter()
            .copied()
            .filter(|id| self.parent.get(id).is_none_or(|p| !self.present.contains(p)))
            .collect();
        roots.sort_unstable();
        roots.into_iter()
    }

    /// `shard`, its ancestors and its descendants.
    fn lineage(&self, shard: &'a str) -> Vec<&'a str> {
        let mut family = vec![shard];
        let mut up = shard;
        while let Some(parent) = self.parent.get(up) {
            family.push(parent);
            up = parent;
        }
        let mut down = vec![shard];
        while let Some(next) = down.pop() {
            for child in self.children(next) {
                family.push(child);
                down.push(child);
            }
        }
        family
    }
}

/// The ranges a consumer reads, given the shards now and the positions it
/// holds. A held range goes on where it is; one that ended with children is
/// read as those children, each from its start; a lineage no held range
/// covers is a new range — from the consumer's start when it holds nothing
/// yet, from the shard's start otherwise (a consumer that held positions and
/// finds a lineage it does not know lost track of it: it reads all the shard
/// still holds rather than skip it).
pub fn plan(shards: &[Shard], held: &[FeedPosition]) -> Result<Vec<PlannedRange>, StoreError> {
    let family = Family::of(shards);
    let mut planned = Vec::new();
    let mut covered: HashSet<&str> = HashSet::new();
    for position in held {
        let at = Position::parse(&position.range, position.continuation.as_deref())?;
        let Some(shard) = family.present.get(at.shard.as_str()).copied() else {
            // Trimmed away (a consumer stopped for more than 24 hours): its
            // descendants are roots now, and read from their start.
            tracing::warn!(range = position.range, shard = at.shard, "a feed position's shard is gone from the stream");
            continue;
        };
        covered.extend(family.lineage(shard));
        let children = family.children(shard);
        if at.at == At::End && !children.is_empty() {
            for child in children {
                let continuation = Some(Position::start(child, None).to_string());
                planned.push(PlannedRange {
                    range: child.to_string(),
                    continuation,
                    split_from: Some(position.range.clone()),
                });
            }
        } else {
            planned.push(PlannedRange {
                range: position.range.clone(),
                continuation: position.continuation.clone(),
                split_from: None,
            });
        }
    }
    for root in family.roots().filter(|root| !covered.contains(root)) {
        let continuation = (!held.is_empty()).then(|| Position::start(root, None).to_string());
        planned.push(PlannedRange { range: root.to_string(), continuation, split_from: None });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>) -> Shard {
        Shard { id: id.into(), parent: parent.map(String::from) }
    }

    fn held(range: &str, continuation: &str) -> FeedPosition {
        FeedPosition { range: range.into(), continuation: Some(continuation.into()) }
    }

    fn planned(range: &str, continuation: Option<&str>, split_from: Option<&str>) -> PlannedRange {
        PlannedRange {
            range: range.into(),
            continuation: continuation.map(String::from),
            split_from: split_from.map(String::from),
        }
    }

    #[test]
    fn positions_read_back_as_written() {
        for text in ["s-1/start", "s-1/start/since/1700000000123", "s-1/after/4900000000000000000001", "s-1/end"] {
            let position = Position::parse("s-0", Some(text)).expect(text);
            assert_eq!(position.to_string(), text);
        }
        assert_eq!(Position::parse("s-0", None).expect("none"), Position::start("s-0", None));
        for bad in ["", "s-1", "s-1/after/", "s-1/start/since/x", "/start", "s-1/end/more", "s-1/sideways"] {
            assert!(Position::parse("s-0", Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_new_consumer_reads_each_lineage_from_its_root() {
        // A rotated lineage (a → b) and one that split (c → d, e).
        let shards = [
            shard("a", None),
            shard("b", Some("a")),
            shard("c", Some("trimmed")),
            shard("d", Some("c")),
            shard("e", Some("c")),
        ];
        assert_eq!(plan(&shards, &[]).expect("plan"), [planned("a", None, None), planned("c", None, None)]);
    }

    #[test]
    fn a_held_range_goes_on_where_it_is_even_shards_later() {
        let shards = [shard("b", Some("a")), shard("c", Some("b"))];
        let plans = plan(&shards, &[held("a", "c/after/77")]).expect("plan");
        assert_eq!(plans, [planned("a", Some("c/after/77"), None)], "the lineage is covered by its range");
    }

    #[test]
    fn a_range_that_ended_in_a_split_is_read_as_its_children() {
        let shards = [shard("c", None), shard("d", Some("c")), shard("e", Some("c")), shard("f", Some("d"))];
        let plans = plan(&shards, &[held("c", "c/end")]).expect("plan");
        assert_eq!(plans, [planned("d", Some("d/start"), Some("c")), planned("e", Some("e/start"), Some("c"))]);
        // Once they are held, they go on; the parent is not planned again.
        let plans = plan(&shards, &[held("d", "f/after/9"), held("e", "e/after/3")]).expect("plan");
        assert_eq!(plans, [planned("d", Some("f/after/9"), None), planned("e", Some("e/after/3"), None)]);
    }

    #[test]
    fn an_ended_shard_without_children_yet_stays_put() {
        let shards = [shard("c", None)];
        assert_eq!(plan(&shards, &[held("c", "c/end")]).expect("plan"), [planned("c", Some("c/end"), None)]);
    }

    #[test]
    fn a_lineage_a_consumer_lost_is_read_from_what_the_stream_still_holds() {
        // The consumer was at "x", trimmed since; "y" (x's child) is a root now.
        let shards = [shard("y", Some("x")), shard("z", None)];
        let plans = plan(&shards, &[held("x", "x/after/5"), held("z", "z/after/8")]).expect("plan");
        assert_eq!(plans, [planned("z", Some("z/after/8"), None), planned("y", Some("y/start"), None)]);
    }
}
