//! Poison parked per stream: an event a consumer cannot handle for good (it
//! does not read, a topic refuses its message, the consumer fails on it) is
//! parked with its reason; the later events of its stream wait behind it, in
//! order, and every other stream goes on. Propulsion stops the whole range
//! here and the Functions trigger skips the event; neither is done.
//!
//! A failure that may pass (an unavailable store, contention) fails the
//! batch, which is handled again: parking is for what retrying cannot fix.
//!
//! Parked streams are stored ([`Parking`]) and every write is conditional:
//! the consumer records how far it held a stream back, and a retry
//! ([`retry`], `orderflow parked retry`) unparks the stream only when it got
//! through everything held back — so neither loses an event to the other.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;

use super::{group_in_order, Consumer};
use crate::ports::{EventRecord, EventStore, ParkedStream, Parking, StartFrom, StoreError, Versioned};

/// How many times a stream that fails for good is tried on its own before
/// it is parked (a fluke is not a poison).
const ATTEMPTS: u32 = 3;

/// A consumer whose poison streams are parked.
pub struct Parked {
    inner: Arc<dyn Consumer>,
    store: Arc<dyn Parking>,
    /// This consumer's parked streams, as last read.
    known: Mutex<HashMap<String, Versioned<ParkedStream>>>,
}

impl Parked {
    pub fn new(inner: Arc<dyn Consumer>, store: Arc<dyn Parking>) -> Parked {
        Parked { inner, store, known: Mutex::default() }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Versioned<ParkedStream>>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads this consumer's parked streams again. The runner does it when
    /// it takes ranges (so that a range taken over holds back what its
    /// former owner parked); the Functions host before each batch.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let parked = self.store.parked(Some(self.inner.name())).await?;
        *self.known() = parked.into_iter().map(|p| (p.value.stream_id.clone(), p)).collect();
        Ok(())
    }

    /// How many streams this consumer has parked, as last read.
    pub fn parked_count(&self) -> usize {
        self.known().len()
    }

    /// Splits off the events of parked streams, recording in each park how
    /// far its stream was held back. A park that was lifted meanwhile (a
    /// retry got through) holds nothing back any more.
    async fn hold_back<'a>(&self, events: &'a [EventRecord]) -> Result<Vec<&'a EventRecord>, StoreError> {
        let mut free = Vec::with_capacity(events.len());
        let mut held: HashMap<&str, u64> = HashMap::new();
        for event in events {
            if self.known().contains_key(&event.stream_id) {
                let highest = held.entry(&event.stream_id).or_default();
                *highest = (*highest).max(event.index);
            } else {
                free.push(event);
            }
        }
        let mut lifted = Vec::new();
        for (stream_id, highest) in held {
            if !self.held_through(stream_id, highest).await? {
                lifted.push(stream_id.to_string());
            }
        }
        if !lifted.is_empty() {
            // Still in the batch's order: the whole batch, minus what stays parked.
            free = events.iter().filter(|e| !self.known().contains_key(&e.stream_id)).collect();
        }
        Ok(free)
    }

    /// Records that `stream_id` was held back through `index`. False when
    /// the stream is no longer parked.
    async fn held_through(&self, stream_id: &str, index: u64) -> Result<bool, StoreError> {
        loop {
            let Some(current) = self.known().get(stream_id).cloned() else { return Ok(false) };
            if current.value.held_through >= index {
                return Ok(true);
            }
            let parked = ParkedStream { held_through: index, ..current.value.clone() };
            match self.store.put_parked(&parked, Some(&current.version)).await? {
                Some(version) => {
                    self.known().insert(stream_id.to_string(), Versioned { value: parked, version });
                    return Ok(true);
                }
                None => {
                    // A retry moved it on, or lifted it: look again.
                    let stored = self.store.parked(Some(self.inner.name())).await?;
                    let found = stored.into_iter().find(|p| p.value.stream_id == stream_id);
                    let mut known = self.known();
                    match found {
                        Some(found) => known.insert(stream_id.to_string(), found),
                        None => known.remove(stream_id),
                    };
                }
            }
        }
    }

    /// Parks `events`' stream at its first event.
    async fn park(&self, events: &[&EventRecord], error: &StoreError) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(()) };
        let parked = ParkedStream {
            consumer: self.inner.name().to_string(),
            stream_id: first.stream_id.clone(),
            from_index: first.index,
            event_id: first.event_id,
            event_type: first.event_type.clone(),
            reason: error.to_string(),
            parked_at: chrono::Utc::now(),
            held_through: last.index,
            retries: 0,
            retried_at: None,
        };
        tracing::error!(
            consumer = parked.consumer,
            stream_id = parked.stream_id,
            index = parked.from_index,
            reason = parked.reason,
            "stream parked: its events wait until `orderflow parked retry` gets them through"
        );
        metrics::counter!("orderflow_parked_streams_total", "consumer" => self.inner.name()).increment(1);
        // Parked before by a process that lost the range meanwhile: keep that.
        if let Some(version) = self.store.put_parked(&parked, None).await? {
            self.known().insert(parked.stream_id.clone(), Versioned { value: parked, version });
        } else {
            self.refresh().await?;
        }
        Ok(())
    }
}

impl Parked {
    /// The failure of `events` that stays after a few tries, if any (a
    /// fluke is not a poison).
    async fn tried(&self, events: &[EventRecord]) -> Option<StoreError> {
        let mut failure = None;
        for _ in 0..ATTEMPTS {
            failure = attempt(self.inner.as_ref(), events).await.err();
            if !failure.as_ref().is_some_and(StoreError::is_permanent) {
                break;
            }
        }
        failure
    }
}

/// Runs a batch, a panic counting as a failure for good (a bug that the
/// same events will hit again).
async fn attempt(consumer: &dyn Consumer, events: &[EventRecord]) -> Result<(), StoreError> {
    AssertUnwindSafe(consumer.handle(events)).catch_unwind().await.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Refused(format!("the consumer failed unexpectedly: {what}")))
    })
}

#[async_trait]
impl Consumer for Parked {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn start(&self) -> StartFrom {
        self.inner.start()
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let free: Vec<EventRecord> = self.hold_back(events).await?.into_iter().cloned().collect();
        if free.is_empty() {
            return Ok(());
        }
        match attempt(self.inner.as_ref(), &free).await {
            Err(error) if error.is_permanent() => {}
            // Handled, or worth the batch again.
            handled => return handled,
        }
        // Something fails for good: each stream on its own, and in a stream
        // that fails, event by event up to the one that keeps failing,
        // where the stream is parked.
        let mut transient = None;
        for (_, stream) in group_in_order(free.iter(), |e| e.stream_id.clone()) {
            let whole: Vec<EventRecord> = stream.iter().map(|e| (*e).clone()).collect();
            match self.tried(&whole).await {
                None => continue,
                Some(error) if !error.is_permanent() => {
                    transient = Some(error);
                    continue;
                }
                Some(_) => {}
            }
            for (at, event) in stream.iter().enumerate() {
                match self.tried(std::slice::from_ref(*event)).await {
                    None => {}
                    Some(error) if error.is_permanent() => {
                        self.park(&stream[at..], &error).await?;
                        break;
                    }
                    Some(error) => {
                        transient = Some(error);
                        break;
                    }
                }
            }
        }
        transient.map_or(Ok(()), Err)
    }
}

/// What a retry of a parked stream came to.
#[derive(Debug, PartialEq)]
pub enum Retried {
    /// Every held-back event went through: the stream is unparked.
    Unparked { events: usize },
    /// It fails still (the park says why, and from which event on now).
    StillParked { events: usize, reason: String },
}

/// Handles a parked stream's events again, from where it stopped through
/// every event it has now, in order; unparks it once all went through. The
/// consumer holding the stream's range keeps holding its events back
/// meanwhile, recording how far: the park is lifted only when this retry got
/// through all of that.
pub async fn retry(
    consumer: &dyn Consumer,
    events: &dyn EventStore,
    parking: &dyn Parking,
    parked: Versioned<ParkedStream>,
) -> Result<Retried, StoreError> {
    let mut current = parked;
    let mut handled = 0;
    loop {
        let stream = &current.value.stream_id;
        let batch = events.read_stream(stream, current.value.from_index, 500).await?;
        let Some(last) = batch.last() else {
            if parking.unpark(&current.value.consumer, stream, &current.version).await? {
                tracing::info!(consumer = current.value.consumer, stream_id = stream, handled, "stream unparked");
                return Ok(Retried::Unparked { events: handled });
            }
            match reread(parking, &current.value).await? {
                Some(moved_on) => current = moved_on,
                // Lifted by another retry.
                None => return Ok(Retried::Unparked { events: handled }),
            }
            continue;
        };
        let next = last.index + 1;
        let outcome = attempt(consumer, &batch).await;
        let reason = outcome.as_ref().err().map(ToString::to_string);
        if outcome.is_ok() {
            handled += batch.len();
        }
        // Record the progress (or the new failure) over whatever is stored now.
        loop {
            let mut parked = current.value.clone();
            match &reason {
                None => parked.from_index = next,
                Some(reason) => {
                    parked.reason = reason.clone();
                    parked.retries += 1;
                    parked.retried_at = Some(chrono::Utc::now());
                }
            }
            if let Some(version) = parking.put_parked(&parked, Some(&current.version)).await? {
                current = Versioned { value: parked, version };
                break;
            }
            match reread(parking, &current.value).await? {
                Some(moved_on) => current = moved_on,
                None => return Ok(Retried::Unparked { events: handled }),
            }
        }
        if let Some(reason) = reason {
            return Ok(Retried::StillParked { events: handled, reason });
        }
    }
}

async fn reread(parking: &dyn Parking, parked: &ParkedStream) -> Result<Option<Versioned<ParkedStream>>, StoreError> {
    let stored = parking.parked(Some(&parked.consumer)).await?;
    Ok(stored.into_iter().find(|p| p.value.stream_id == parked.stream_id))
}
