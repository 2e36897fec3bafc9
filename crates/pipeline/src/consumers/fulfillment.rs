//! `fulfillment`: the process manager. Every event goes through the domain's
//! `react` policy; the commands it returns are executed with an idempotency
//! key derived from the event, so a redelivered batch has no second effect.
//! The deadlines order events start are stored as timers here too
//! ([`DeadlineTimers`]).
//!
//! No reaction is lost: one that cannot be applied yet (contention, an
//! unreachable store) fails the batch, which is handled again; one its target
//! refuses is recorded durably ([`Refusals`]) before the batch counts as
//! handled, and counted in `orderflow_refused_reactions_total`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use orderflow_domain::{react, Command};

use super::{group_in_order, Consumer};
use crate::deadlines::DeadlineTimers;
use crate::ports::{EventRecord, Refusals, RefusedReaction, StoreError};
use crate::processor::{CommandError, CommandProcessor, Envelope, IdempotencyKey};
use crate::streams::{domain_event, target_stream};

pub struct Fulfillment {
    processor: Arc<CommandProcessor>,
    refusals: Arc<dyn Refusals>,
    deadlines: DeadlineTimers,
}

/// One reaction: the command, its envelope and key, and the event it answers.
pub struct Reaction<'a> {
    pub command: Command,
    pub envelope: Envelope,
    pub key: IdempotencyKey,
    pub event: &'a EventRecord,
}

impl Fulfillment {
    pub fn new(processor: Arc<CommandProcessor>, refusals: Arc<dyn Refusals>, deadlines: DeadlineTimers) -> Self {
        Fulfillment { processor, refusals, deadlines }
    }

    /// Runs one target stream's reactions in order, decided in a row.
    async fn run_in_order(&self, reactions: Vec<Reaction<'_>>) -> Result<(), StoreError> {
        let row: Vec<_> = reactions.iter().map(|reaction| (&reaction.command, &reaction.envelope)).collect();
        let answers = self.processor.execute_in_row(&row).await;
        for (reaction, answer) in reactions.into_iter().zip(answers) {
            let refusal = match answer {
                Ok(_) => continue,
                // Not applied yet: the batch is handled again.
                Err(CommandError::Store(error)) => return Err(error),
                Err(error @ CommandError::Contention(_)) => return Err(StoreError::Unavailable(error.to_string())),
                Err(CommandError::Rejected(rejection)) => {
                    (rejection.code().to_string(), rejection.message().to_string())
                }
                // Neither can happen to a reaction (no condition; the key is
                // its own fingerprint): recorded, should a bug make it so.
                Err(error @ (CommandError::PreconditionFailed { .. } | CommandError::KeyReused)) => {
                    ("unexpected".to_string(), error.to_string())
                }
            };
            let (code, reason) = refusal;
            let target_stream_id = target_stream(&reaction.command);
            tracing::warn!(reaction = reaction.key.key, target_stream_id, code, reason, "fulfillment reaction refused");
            metrics::counter!("orderflow_refused_reactions_total", "command" => reaction.command.name()).increment(1);
            let event = reaction.event;
            self.refusals
                .record(&RefusedReaction {
                    id: reaction.key.key.clone(),
                    time: chrono::Utc::now(),
                    event_id: event.event_id,
                    event_stream_id: event.stream_id.clone(),
                    event_index: event.index,
                    event_type: event.event_type.clone(),
                    command: reaction.command.name().to_string(),
                    target_stream_id,
                    code,
                    reason,
                })
                .await?;
        }
        Ok(())
    }
}

/// The reactions to one event, each with its envelope: idempotency key from
/// the event id and the reaction's number, message id `{eventId}/{n}`,
/// causation = the event, correlation carried over.
pub fn reactions(event: &EventRecord) -> Result<Vec<Reaction<'_>>, StoreError> {
    let commands = react(&domain_event(event)?);
    Ok(commands
        .into_iter()
        .enumerate()
        .map(|(n, command)| {
            let key = IdempotencyKey::reaction(&event.event_id, n);
            let mut envelope = Envelope::idempotent(format!("{}/{n}", event.event_id), key.clone());
            envelope.correlation_id = event.correlation_id.clone();
            envelope.causation_id = event.event_id.to_string();
            Reaction { command, envelope, key, event }
        })
        .collect())
}

#[async_trait]
impl Consumer for Fulfillment {
    fn name(&self) -> &'static str {
        "fulfillment"
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        self.deadlines.schedule(events).await?;
        // Reactions to the same target stream run in feed order; different
        // targets run concurrently.
        let mut reactions_of_batch = Vec::new();
        for event in events {
            reactions_of_batch.extend(reactions(event)?);
        }
        let by_target = group_in_order(reactions_of_batch, |reaction| target_stream(&reaction.command));
        try_join_all(by_target.into_iter().map(|(_, queue)| self.run_in_order(queue))).await?;
        Ok(())
    }
}
