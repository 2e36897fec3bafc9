//! `fulfillment`: the process manager. Every event goes through the domain's
//! `react` policy; the commands it returns are executed with a message id
//! derived from the event, so a redelivered batch has no second effect.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use orderflow_domain::{react, Command};

use super::{group_in_order, Consumer};
use crate::ports::{EventRecord, StoreError};
use crate::processor::{CommandError, CommandProcessor, Envelope};
use crate::streams::{domain_event, target_stream};

pub struct Fulfillment {
    processor: Arc<CommandProcessor>,
}

impl Fulfillment {
    pub fn new(processor: Arc<CommandProcessor>) -> Self {
        Fulfillment { processor }
    }

    /// Runs one stream's reactions in order.
    async fn run_in_order(&self, reactions: Vec<(Command, Envelope)>) -> Result<(), StoreError> {
        for (command, envelope) in reactions {
            match self.processor.execute(&command, &envelope).await {
                Ok(_) => {}
                Err(CommandError::Store(error)) => return Err(error),
                // A reaction the target refuses stays refused however often it
                // is retried: record why and go on.
                Err(error) => tracing::warn!(
                    message_id = envelope.message_id,
                    stream_id = target_stream(&command),
                    %error,
                    "fulfillment reaction refused"
                ),
            }
        }
        Ok(())
    }
}

/// The reactions to one event, each with its envelope: message id
/// `{eventId}/{n}`, causation = the event, correlation carried over.
pub fn reactions(record: &EventRecord) -> Result<Vec<(Command, Envelope)>, StoreError> {
    let commands = react(&domain_event(record)?);
    Ok(commands
        .into_iter()
        .enumerate()
        .map(|(n, command)| {
            let message_id = format!("{}/{n}", record.event_id);
            let mut envelope = Envelope::idempotent(message_id.clone(), message_id);
            envelope.correlation_id = record.correlation_id.clone();
            envelope.causation_id = record.event_id.to_string();
            (command, envelope)
        })
        .collect())
}

#[async_trait]
impl Consumer for Fulfillment {
    fn name(&self) -> &'static str {
        "fulfillment"
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        // Reactions to the same target stream run in feed order; different
        // targets run concurrently.
        let mut reactions_of_batch = Vec::new();
        for record in events {
            reactions_of_batch.extend(reactions(record)?);
        }
        let by_target = group_in_order(reactions_of_batch, |(command, _)| target_stream(command));
        try_join_all(by_target.into_iter().map(|(_, queue)| self.run_in_order(queue))).await?;
        Ok(())
    }
}
