//! The golden files (`crates/domain/golden/`) hold a sample of every event
//! type at every version ever stored. Each one must still be read; each one
//! at its type's current version must be written back byte for byte, so a
//! shape that changes without a new version fails here, not in production.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::contract::Upcasted;
use crate::inventory::{Inventory, InventoryEvent};
use crate::order::{Order, OrderEvent};
use crate::Aggregate;

#[derive(Deserialize)]
struct Sample {
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    data: Value,
}

fn check<A: Aggregate>(file: &str, event_types: &[&str]) -> Vec<String> {
    let path = format!("{}/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let samples: Vec<Sample> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut failures: Vec<String> = A::EVENTS.check().err().into_iter().collect();
    for event_type in event_types {
        for version in 1..=A::EVENTS.version(event_type) {
            if !samples.iter().any(|s| s.event_type == *event_type && s.version == version) {
                failures.push(format!("{file}: add a sample of {event_type} version {version} (keep the older ones)"));
            }
        }
    }
    for sample in &samples {
        let (event_type, version) = (sample.event_type.as_str(), sample.version);
        if !event_types.contains(&event_type) {
            failures.push(format!("{file}: {event_type} is no event type of {}", A::CATEGORY));
            continue;
        }
        let data = match A::EVENTS.upcast(event_type, version, sample.data.clone()) {
            Ok(Upcasted::Current(data)) => data,
            Ok(Upcasted::Newer { known, .. }) => {
                failures.push(format!("{file}: {event_type} version {version} is newer than its contract ({known})"));
                continue;
            }
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let event = match serde_json::from_value::<A::Event>(json!({"type": event_type, "data": data})) {
            Ok(event) => event,
            Err(e) => {
                failures.push(format!("{file}: {event_type} version {version} no longer reads ({e}): add an upcast"));
                continue;
            }
        };
        let written = serde_json::to_value(&event).map(|v| v["data"].clone()).unwrap_or_default();
        if version == A::EVENTS.version(event_type) && written != sample.data {
            failures.push(format!(
                "{file}: {event_type} is now written as {written}, not as its version {version} sample: \
                 a new shape needs a new version (an upcast from {version} and a sample of {})",
                version + 1
            ));
        }
    }
    failures
}

#[test]
fn every_stored_shape_of_every_event_still_reads() {
    use strum::VariantNames as _;
    let mut failures = check::<Order>("order-events.json", OrderEvent::VARIANTS);
    failures.extend(check::<Inventory>("inventory-events.json", InventoryEvent::VARIANTS));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
