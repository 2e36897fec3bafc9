//! Request units (RU) spent, per kind of operation: costs are part of the
//! design, so every call the store makes is counted (and logged at debug).

use std::collections::BTreeMap;
use std::sync::Mutex;

use azure_data_cosmos::models::ResponseHeaders;

/// Requests made and RU charged for one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Charge {
    pub requests: u64,
    pub units: f64,
}

#[derive(Default)]
pub struct RequestUnits {
    by_operation: Mutex<BTreeMap<&'static str, Charge>>,
}

impl RequestUnits {
    pub fn record(&self, operation: &'static str, units: f64) {
        tracing::debug!(operation, units, "cosmos request");
        metrics::counter!("orderflow_cosmos_requests_total", "operation" => operation).increment(1);
        // RU are fractional: a gauge that only grows, read as a counter.
        metrics::gauge!("orderflow_cosmos_request_units", "operation" => operation).increment(units);
        let mut totals = self.by_operation.lock().unwrap_or_else(|p| p.into_inner());
        let charge = totals.entry(operation).or_default();
        charge.requests += 1;
        charge.units += units;
    }

    pub fn record_response(&self, operation: &'static str, headers: &ResponseHeaders) {
        self.record(operation, headers.request_charge().map_or(0.0, |charge| f64::from(*charge)));
    }

    pub fn totals(&self) -> BTreeMap<&'static str, Charge> {
        self.by_operation.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
