//! How values are kept as text in the tables: times as RFC 3339 with
//! microseconds in UTC (so they sort as time), documents as JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_pipeline::StoreError;

pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}
