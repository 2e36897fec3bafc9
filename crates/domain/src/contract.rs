//! Events are the storage contract. Every event ever recorded is read again —
//! by commands, the change feed, a replay, the history API — for as long as
//! its stream lives, so an event type's shape never changes in place: each
//! type carries a schema version, written with the event, and a change of
//! shape adds a version and an **upcast** that turns data of the version
//! before into the new shape. Reads bring every stored version up to the
//! current one, one upcast at a time.
//!
//! To change an event's shape (rename, retype, drop or add a field):
//! 1. change the variant in the domain;
//! 2. add an [`Upcast`] `{event_type, from: n, up}` to the kind's
//!    [`EventContract`] (the version becomes n + 1);
//! 3. add a sample of the new version to the golden file
//!    (`crates/domain/golden/`), keeping every older one: the contract tests
//!    bring each older sample up and decode it, and fail when a shape changed
//!    without a new version.

use serde_json::Value;

/// One step in the life of an event type's shape: data written at version
/// `from` becomes data of version `from + 1`.
pub struct Upcast {
    pub event_type: &'static str,
    pub from: u32,
    pub up: fn(Value) -> Result<Value, String>,
}

/// The versions of one stream kind's event types.
pub struct EventContract {
    /// Every upcast ever needed, for each type in order of `from` (1, 2, …).
    pub upcasts: &'static [Upcast],
}

/// An event's data in the shape this build reads, or why it is not.
#[derive(Debug, Clone, PartialEq)]
pub enum Upcasted {
    /// In the current shape (brought up from an older one if it was).
    Current(Value),
    /// Written by a newer build, at a version this one does not know.
    Newer { version: u32, known: u32 },
}

impl EventContract {
    /// The version `event_type` is written at now: 1 until its shape first changes.
    pub fn version(&self, event_type: &str) -> u32 {
        let changes = self.upcasts.iter().filter(|u| u.event_type == event_type).count();
        1 + u32::try_from(changes).unwrap_or(u32::MAX - 1)
    }

    /// `data`, stored at `version`, in the current shape of `event_type`.
    pub fn upcast(&self, event_type: &str, version: u32, data: Value) -> Result<Upcasted, String> {
        let known = self.version(event_type);
        if version > known {
            return Ok(Upcasted::Newer { version, known });
        }
        let mut data = data;
        for from in version.max(1)..known {
            let step = self
                .upcasts
                .iter()
                .find(|u| u.event_type == event_type && u.from == from)
                .ok_or_else(|| format!("no upcast of {event_type} from version {from}"))?;
            data = (step.up)(data).map_err(|e| format!("{event_type} version {from}: {e}"))?;
        }
        Ok(Upcasted::Current(data))
    }

    /// Each type's upcasts run from version 1 without a gap (a contract test).
    pub fn check(&self) -> Result<(), String> {
        for upcast in self.upcasts {
            for from in 1..upcast.from {
                if !self.upcasts.iter().any(|u| u.event_type == upcast.event_type && u.from == from) {
                    return Err(format!(
                        "{} has an upcast from {} but none from {from}",
                        upcast.event_type, upcast.from
                    ));
                }
            }
            if self.upcasts.iter().filter(|u| u.event_type == upcast.event_type && u.from == upcast.from).count() > 1 {
                return Err(format!("{} has two upcasts from {}", upcast.event_type, upcast.from));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A type renamed `qty` to `quantity` (version 2), then made `reason` required (3).
    const CHANGED: EventContract = EventContract {
        upcasts: &[
            Upcast {
                event_type: "Counted",
                from: 2,
                up: |mut data| {
                    data["reason"] = data.get("reason").filter(|r| !r.is_null()).cloned().unwrap_or(json!("unknown"));
                    Ok(data)
                },
            },
            Upcast {
                event_type: "Counted",
                from: 1,
                up: |mut data| {
                    let quantity = data.as_object_mut().and_then(|o| o.remove("qty")).ok_or("no qty")?;
                    data["quantity"] = quantity;
                    Ok(data)
                },
            },
        ],
    };

    #[test]
    fn every_older_shape_comes_up_one_version_at_a_time() {
        assert_eq!(CHANGED.version("Counted"), 3);
        assert_eq!(CHANGED.version("Other"), 1);
        assert_eq!(
            CHANGED.upcast("Counted", 1, json!({"qty": 2})),
            Ok(Upcasted::Current(json!({"quantity": 2, "reason": "unknown"})))
        );
        assert_eq!(
            CHANGED.upcast("Counted", 2, json!({"quantity": 2, "reason": "x"})),
            Ok(Upcasted::Current(json!({"quantity": 2, "reason": "x"})))
        );
        let current = json!({"quantity": 2, "reason": "x", "qty": "left alone"});
        assert_eq!(CHANGED.upcast("Counted", 3, current.clone()), Ok(Upcasted::Current(current)));
        assert_eq!(CHANGED.upcast("Counted", 4, json!({})), Ok(Upcasted::Newer { version: 4, known: 3 }));
        assert!(CHANGED.upcast("Counted", 1, json!({"quantity": 2})).unwrap_err().contains("version 1: no qty"));
        assert_eq!(CHANGED.check(), Ok(()));
    }

    #[test]
    fn a_gap_in_the_upcasts_is_found() {
        let gap = EventContract { upcasts: &[Upcast { event_type: "Counted", from: 2, up: Ok }] };
        assert!(gap.check().is_err());
        assert!(gap.upcast("Counted", 1, json!({})).is_err());
    }
}
