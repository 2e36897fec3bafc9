//! A Kafka record as the ingestion topics receive it (headers and value, in
//! binary or structured content mode) → CloudEvent → the command it stands
//! for. Nothing may panic; an event that decodes must also map or be refused.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use orderflow_pipeline::cloudevents::{from_message, to_message};
use orderflow_pipeline::ingest::command_for;

#[derive(Arbitrary, Debug)]
struct Record {
    headers: Vec<(String, Vec<u8>)>,
    value: Vec<u8>,
}

fuzz_target!(|record: Record| {
    let Ok(event) = from_message(&record.headers, &record.value) else { return };
    let _ = command_for(&event);
    // What we publish of an event must read back as the same event.
    let message = to_message("t", None, &event);
    let again = from_message(&message.headers, &message.value);
    assert_eq!(again.as_ref().ok(), Some(&event), "{message:?}");
});
