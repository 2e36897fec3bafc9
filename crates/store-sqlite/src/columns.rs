//! How values are kept in the tables: times as RFC 3339 text with
//! microseconds in UTC (so they sort as time), documents as JSON, the age of
//! keys as Unix seconds.

use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_pipeline::StoreError;

pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

/// Now, as the age of an idempotency record or key claim: Unix seconds with
/// their microseconds, so that the age indexes grow at one end (with whole
/// seconds, each second's records went in key order, spread over ~20 pages
/// a commit). Compared with whole seconds, as the records of earlier
/// versions are.
pub(crate) fn key_age_now() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}
