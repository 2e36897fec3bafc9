//! The custom-handler invocation envelope: what the Functions host POSTs to
//! `/<FunctionName>` and what it expects back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"Data": {binding: value}, "Metadata": {...}}`.
#[derive(Debug, Default, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<InvocationRequest, String> {
        serde_json::from_slice(body).map_err(|e| format!("not an invocation request: {e}"))
    }

    /// How many times the host has retried this invocation (its retry policy's
    /// `RetryContext`), for the logs.
    pub fn retry_count(&self) -> u64 {
        let context = self.metadata.get("RetryContext").and_then(|c| decode_json(c, Value::is_object));
        context.and_then(|c| c.get("RetryCount").and_then(Value::as_u64)).unwrap_or(0)
    }
}

/// `{"Outputs": {binding: value}, "Logs": [...], "ReturnValue": ...}`.
#[derive(Debug, Default, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

/// Undoes the host's encodings: a value arrives as itself, or as the text of
/// its JSON serialization, sometimes twice over. While `value` is a string
/// that parses as JSON, parse again, until `wanted` holds (or it cannot).
pub fn decode_json(value: &Value, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
    let mut current = value.clone();
    // Each round strips one layer of quotes; real payloads have at most two.
    for _ in 0..4 {
        if wanted(&current) {
            return Some(current);
        }
        let Value::String(text) = &current else { return None };
        current = serde_json::from_str(text).ok()?;
    }
    wanted(&current).then_some(current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_once_twice_or_not_encoded_values() {
        let array = json!([{"a": 1}]);
        let once = Value::String(array.to_string());
        let twice = Value::String(once.to_string());
        for value in [&array, &once, &twice] {
            assert_eq!(decode_json(value, Value::is_array), Some(array.clone()), "{value}");
        }
        assert_eq!(decode_json(&json!("not json"), Value::is_array), None);
        assert_eq!(decode_json(&json!(42), Value::is_array), None);
    }

    #[test]
    fn reads_the_retry_count() {
        let request = InvocationRequest::parse(br#"{"Data":{},"Metadata":{"RetryContext":{"RetryCount":2}}}"#);
        assert_eq!(request.map(|r| r.retry_count()), Ok(2));
        assert!(InvocationRequest::parse(b"[1]").is_err());
    }
}
