//! What the operator routes read: the store's ports, the consumers' health,
//! the metrics, and who this process is.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use orderflow_pipeline::consumers::{Consumer, FeedHealth};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::ports::{EventStore, LeaseStore, Parking, Refusals, SnapshotStore, Timers, TopicReader};

use super::access::Access;
use super::series::Series;

pub struct Ops {
    pub metrics: PrometheusHandle,
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub ingestor: Arc<Ingestor>,
    pub refusals: Arc<dyn Refusals>,
    pub parking: Arc<dyn Parking>,
    pub leases: Arc<dyn LeaseStore>,
    pub timers: Arc<dyn Timers>,
    /// The change-feed consumers, for retrying what one parked.
    pub consumers: [Arc<dyn Consumer>; 3],
    pub feeds: FeedHealth,
    /// This process, as the leases name it.
    pub instance: String,
    /// Which kind of store, without its place (no paths or endpoints on a page).
    pub store_kind: &'static str,
    /// The topics, to read the dead letters back.
    pub topics: Arc<dyn TopicReader>,
    pub access: Arc<Access>,
    /// The last 15 minutes of figures, for the charts.
    pub series: Arc<Series>,
}
