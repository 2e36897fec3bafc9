//! An event from the Lambda Runtime API: an MSK / self-managed Kafka event
//! (our decoder) and an API Gateway request (lambda_http's, on our path).
//! lambda_http's conversion of a decoded request panics on some hosts and
//! paths (found here); the Lambda host catches that panic (`Unpanicking`),
//! and so does this target, with libFuzzer's abort-on-panic hook set aside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderflow_lambda::decode_event;

fuzz_target!(|body: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) {
        for received in decode_event(&event) {
            if let Ok(event) = &received.event {
                let _ = orderflow_pipeline::ingest::command_for(event);
            }
        }
    }
    if let Ok(request) = serde_json::from_slice::<lambda_http::request::LambdaRequest>(body) {
        let abort_on_panic = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let _ = std::panic::catch_unwind(|| lambda_http::Request::from(request));
        std::panic::set_hook(abort_on_panic);
    }
});
