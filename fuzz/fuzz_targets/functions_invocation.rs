//! A request body from the Azure Functions host: the invocation envelope,
//! then every binding's value as a Kafka batch and as a change-feed batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderflow_functions::documents::decode_events;
use orderflow_functions::invocation::InvocationRequest;
use orderflow_functions::kafka_data::decode_records;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = InvocationRequest::parse(body) else { return };
    let _ = request.retry_count();
    for value in request.data.values() {
        let _ = decode_records(value);
        let _ = decode_events(value);
    }
});
