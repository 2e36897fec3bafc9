//! `publish-events`: every committed event as a CloudEvent on its downstream
//! topic, keyed by the stream's natural id (order id or SKU), in per-stream order, at least once (consumers
//! deduplicate by the CloudEvent `id`, which is the event id).

use std::sync::Arc;

use async_trait::async_trait;

use super::Consumer;
use crate::cloudevents::{downstream_event, to_message};
use crate::ports::{EventRecord, MessageProducer, StoreError};
use crate::streams::Category;

pub struct Publisher {
    producer: Arc<dyn MessageProducer>,
}

impl Publisher {
    pub fn new(producer: Arc<dyn MessageProducer>) -> Self {
        Publisher { producer }
    }
}

#[async_trait]
impl Consumer for Publisher {
    fn name(&self) -> &'static str {
        "publish-events"
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let messages = events
            .iter()
            .map(|record| {
                let (topic, event) = downstream_event(record).map_err(StoreError::Corrupt)?;
                let key = Category::of(&record.stream_id).map(|(_, natural_id)| natural_id.to_string());
                Ok(to_message(&topic, key, &event))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let span = tracing::info_span!("publish", messages = messages.len());
        tracing::Instrument::instrument(self.producer.send(messages), span).await
    }
}
