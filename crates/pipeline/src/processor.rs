//! The command processor: load the stream's tip, decide, append — atomically,
//! with optimistic concurrency and idempotency.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use orderflow_domain::inventory::Inventory;
use orderflow_domain::order::Order;
use orderflow_domain::{Aggregate, Command, Rejection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ports::{
    Append, AppendOutcome, EventRecord, EventStore, IdempotencyRecord, KeyClaim, StoreError, Tip, MAX_APPEND_ITEMS,
};
use crate::streams::{self, encode_event, encode_state, order_stream, sku_stream};

/// Where a command comes from, and how it must be treated.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Recorded on every event as `messageId`.
    pub message_id: String,
    /// When set, a second command with this key has no second effect.
    pub idempotency: Option<IdempotencyKey>,
    /// When set, the command applies only to this version of the stream.
    pub expected_version: Option<u64>,
    pub correlation_id: String,
    pub causation_id: String,
}

/// What makes a command idempotent: a key naming the message, and a digest
/// of what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyKey {
    /// Unambiguous and safe as a document id: letters, digits, `.` and `-`.
    pub key: String,
    /// A digest of what the command says, from [`fingerprint`].
    pub fingerprint: String,
    pub scope: KeyScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// The key can only ever name one stream's command (a reaction: its
    /// event and its number): the record in that stream is enough.
    Stream,
    /// The key comes from outside and may be sent again for any stream (an
    /// HTTP `Idempotency-Key`, a CloudEvent `source` + `id`): it is bound to
    /// its first request's fingerprint, whatever stream that targeted.
    Any,
}

impl IdempotencyKey {
    /// An HTTP `Idempotency-Key` as sent by `caller` (the digest of its API
    /// key, or empty without keys): keys of different callers never meet.
    pub fn http(caller: &str, key: &str, fingerprint: String) -> Self {
        let key = format!("h.{}", self::fingerprint(&[b"http", caller.as_bytes(), key.as_bytes()]));
        IdempotencyKey { key, fingerprint, scope: KeyScope::Any }
    }

    /// A CloudEvent's `source` + `id`, which the spec makes unique.
    pub fn cloud_event(source: &str, id: &str, fingerprint: String) -> Self {
        let key = format!("c.{}", self::fingerprint(&[b"cloudevent", source.as_bytes(), id.as_bytes()]));
        IdempotencyKey { key, fingerprint, scope: KeyScope::Any }
    }

    /// The `n`th reaction to an event: the same command whenever the event is
    /// handled again, so the key is its own fingerprint.
    pub fn reaction(event_id: &Uuid, n: usize) -> Self {
        let key = format!("r.{event_id}.{n}");
        IdempotencyKey { fingerprint: key.clone(), key, scope: KeyScope::Stream }
    }
}

impl Envelope {
    /// A command with no idempotency key and a fresh message id, starting a
    /// trace of its own.
    pub fn new() -> Self {
        let id = Uuid::new_v4().to_string();
        Envelope {
            message_id: id.clone(),
            idempotency: None,
            expected_version: None,
            correlation_id: crate::trace::new_trace_id(),
            causation_id: id,
        }
    }

    /// A command identified by `message_id`, idempotent by `key`.
    pub fn idempotent(message_id: impl Into<String>, key: IdempotencyKey) -> Self {
        let message_id = message_id.into();
        Envelope {
            idempotency: Some(key),
            correlation_id: crate::trace::new_trace_id(),
            causation_id: message_id.clone(),
            message_id,
            expected_version: None,
        }
    }
}

impl Default for Envelope {
    fn default() -> Self {
        Self::new()
    }
}

/// A hex SHA-256 digest of the given parts, for idempotency fingerprints.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer to an executed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub stream_id: String,
    /// The stream's version after the command.
    pub version: u64,
    pub status: Option<String>,
    /// How many events this command appended (0 for a no-op).
    pub appended: usize,
    /// True when this is the stored answer of an earlier delivery.
    #[serde(default, skip_serializing)]
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Rejected(Rejection),
    #[error("the stream is at version {actual}, not {expected}")]
    PreconditionFailed { expected: u64, actual: u64 },
    #[error("the idempotency key was already used for a different command")]
    KeyReused,
    #[error("gave up after {0} concurrent writes to the same stream")]
    Contention(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tip read from the store, or the stored answer of a command that was
/// already handled under the same idempotency key.
enum Reload<S> {
    Tip(Current<S>),
    Answered(Receipt),
}

pub struct CommandProcessor {
    store: Arc<dyn EventStore>,
    max_attempts: u32,
    /// Commands on one stream in this process wait for each other instead of
    /// racing to a conflict; the store's version check still guards against
    /// other processes.
    locks: StreamLocks,
    /// The tips this process wrote or read last, with their states decoded.
    /// A command decides on the cached tip without reading the store; the
    /// append's version check tells when the cache was stale, and then the
    /// tip is read and the command decided again.
    tips: TipCache,
}

/// The version and state a command is decided on, and whether they were
/// read from the store just now (authoritative) or taken from the cache /
/// assumed empty.
struct Current<S> {
    version: u64,
    state: Arc<S>,
    authoritative: bool,
}

impl CommandProcessor {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        CommandProcessor { store, max_attempts: 10, locks: StreamLocks::default(), tips: TipCache::new(20_000) }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub async fn execute(&self, command: &Command, envelope: &Envelope) -> Result<Receipt, CommandError> {
        use tracing::Instrument;
        let span = |name: &str, stream: &str| {
            tracing::info_span!("command", command = name, stream, correlation = envelope.correlation_id)
        };
        let started = std::time::Instant::now();
        let (name, result) = match command {
            Command::Order { order_id, command } => {
                let stream = order_stream(order_id);
                let run = self.claimed(&stream, envelope, self.run::<Order>(&stream, command, envelope));
                (command.name(), run.instrument(span(command.name(), &stream)).await)
            }
            Command::Inventory { sku, command } => {
                let stream = sku_stream(sku);
                let run = self.claimed(&stream, envelope, self.run::<Inventory>(&stream, command, envelope));
                (command.name(), run.instrument(span(command.name(), &stream)).await)
            }
        };
        counted(name, &result, started);
        result
    }

    /// Executes commands to one stream as [`execute`](Self::execute) would
    /// one after another, but decided in a row on the stream's state and
    /// their events appended together, as many as one append takes: the
    /// reactions of a batch to one stream cost one write instead of one
    /// each, and those that change nothing no read of their own. The answers
    /// are in order and stop after the first store error or contention
    /// (the rest were not tried). One difference: a command that changes
    /// nothing answers so even when its key was used before (not looked up:
    /// it changes nothing either way). Commands with a key that may name
    /// any stream or with a version condition, or to different streams,
    /// are executed one by one.
    pub async fn execute_in_row(&self, commands: &[(&Command, &Envelope)]) -> Vec<Result<Receipt, CommandError>> {
        use tracing::Instrument;
        let span = |stream: &str, count: usize| tracing::info_span!("commands", stream, count);
        let started = std::time::Instant::now();
        let orders = row_of(commands, |command| match command {
            Command::Order { order_id, command } => Some((order_stream(order_id), command)),
            Command::Inventory { .. } => None,
        });
        let skus = || {
            row_of(commands, |command| match command {
                Command::Inventory { sku, command } => Some((sku_stream(sku), command)),
                Command::Order { .. } => None,
            })
        };
        let answers = if let Some((stream, row)) = orders {
            self.run_in_row::<Order>(&stream, &row).instrument(span(&stream, row.len())).await
        } else if let Some((stream, row)) = skus() {
            self.run_in_row::<Inventory>(&stream, &row).instrument(span(&stream, row.len())).await
        } else {
            let mut answers = Vec::with_capacity(commands.len());
            for (command, envelope) in commands {
                answers.push(self.execute(command, envelope).await);
                if answers.last().is_some_and(stops_a_row) {
                    break;
                }
            }
            return answers;
        };
        for ((command, _), answer) in commands.iter().zip(&answers) {
            counted(command.name(), answer, started);
        }
        answers
    }

    /// Runs `command` once its key, if it may name any stream, is bound to
    /// this request: the same key with other content is refused, whatever
    /// stream it was first used on.
    async fn claimed(
        &self,
        stream_id: &str,
        envelope: &Envelope,
        command: impl std::future::Future<Output = Result<Receipt, CommandError>>,
    ) -> Result<Receipt, CommandError> {
        if let Some(key) = envelope.idempotency.as_ref().filter(|key| key.scope == KeyScope::Any) {
            let claim = KeyClaim {
                key: key.key.clone(),
                fingerprint: key.fingerprint.clone(),
                stream_id: stream_id.to_string(),
            };
            if let Some(earlier) = self.store.claim(&claim).await? {
                if earlier.fingerprint != key.fingerprint {
                    return Err(CommandError::KeyReused);
                }
            }
        }
        command.await
    }

    async fn load<A: Aggregate>(
        &self,
        stream_id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Reload<A::State>, CommandError> {
        let loaded = self.store.load(stream_id, key.map(|k| k.key.as_str())).await?;
        if let Some(prior) = loaded.prior {
            return Ok(Reload::Answered(replay(prior, key)?));
        }
        let (version, state) = match loaded.tip {
            Some(tip) => (tip.version, self.state_of::<A>(stream_id, &tip).await?),
            None => (0, A::State::default()),
        };
        let state = Arc::new(state);
        self.tips.insert(stream_id, version, state.clone());
        Ok(Reload::Tip(Current { version, state, authoritative: true }))
    }

    /// The state a tip holds. A tip written before the state's shape
    /// changed may not read: its state is then folded again from the
    /// stream's events, which always read (their shapes are versioned), and
    /// the next append writes it in the new shape.
    async fn state_of<A: Aggregate>(&self, stream_id: &str, tip: &Tip) -> Result<A::State, CommandError> {
        let error = match streams::decode_state::<A>(Some(&tip.state)) {
            Ok(state) => return Ok(state),
            Err(error) => error,
        };
        tracing::warn!(stream_id, %error, "the stream's tip does not read: folding its events again");
        let mut state = A::State::default();
        let mut folded = 0;
        while folded < tip.version {
            let page = self.store.read_stream(stream_id, folded, 1000).await?;
            if page.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "{stream_id} has {folded} events, its tip says {}",
                    tip.version
                ))
                .into());
            }
            for record in page.iter().take((tip.version - folded) as usize) {
                state = A::evolve(state, &streams::decode_event::<A>(record)?);
                folded += 1;
            }
        }
        Ok(state)
    }

    async fn run<A: Aggregate>(
        &self,
        stream_id: &str,
        command: &A::Command,
        envelope: &Envelope,
    ) -> Result<Receipt, CommandError> {
        let _turn = self.locks.lock(stream_id).await;
        self.run_locked::<A>(stream_id, command, envelope).await
    }

    /// The cached tip, not authoritative. A stream this process has not seen
    /// is assumed new: right for every new order, and checked by the append
    /// like any cached tip.
    fn cached<A: Aggregate>(&self, stream_id: &str) -> Current<A::State> {
        match self.tips.get::<A::State>(stream_id) {
            Some((version, state)) => Current { version, state, authoritative: false },
            None => Current { version: 0, state: Arc::default(), authoritative: false },
        }
    }

    /// Runs one command; the caller holds the stream's turn.
    async fn run_locked<A: Aggregate>(
        &self,
        stream_id: &str,
        command: &A::Command,
        envelope: &Envelope,
    ) -> Result<Receipt, CommandError> {
        let key = envelope.idempotency.as_ref();
        let mut current = self.cached::<A>(stream_id);
        let mut conflicts = 0;
        loop {
            let state = current.state.as_ref();
            let version = current.version;
            let decision = match envelope.expected_version {
                Some(expected) if expected != version => {
                    Err(CommandError::PreconditionFailed { expected, actual: version })
                }
                _ => A::decide(state, command).map_err(CommandError::Rejected),
            };
            // Refusing, or doing nothing, on a tip that may be stale: read it
            // first. (Appending is safe: the append checks the version.)
            let appends = matches!(&decision, Ok(events) if !events.is_empty());
            if !appends && !current.authoritative {
                current = match self.load::<A>(stream_id, key).await? {
                    Reload::Tip(current) => current,
                    Reload::Answered(receipt) => return Ok(receipt),
                };
                continue;
            }
            let events = decision?;
            if events.is_empty() {
                let status = A::status(state).map(str::to_string);
                return Ok(Receipt {
                    stream_id: stream_id.to_string(),
                    version,
                    status,
                    appended: 0,
                    duplicate: false,
                });
            }
            let new_state = A::fold(state.clone(), &events);
            let receipt = Receipt {
                stream_id: stream_id.to_string(),
                version: version + events.len() as u64,
                status: A::status(&new_state).map(str::to_string),
                appended: events.len(),
                duplicate: false,
            };
            let append = Append {
                stream_id: stream_id.to_string(),
                expected_version: version,
                events: records::<A>(stream_id, version, &events, envelope)?,
                state: encode_state::<A>(&new_state)?,
                idempotency: key
                    .map(|k| IdempotencyRecord {
                        key: k.key.clone(),
                        fingerprint: k.fingerprint.clone(),
                        receipt: serde_json::to_value(&receipt).unwrap_or_default(),
                    })
                    .into_iter()
                    .collect(),
            };
            match self.append(append).await? {
                AppendOutcome::Appended { version } => {
                    self.tips.insert(stream_id, version, Arc::new(new_state));
                    return Ok(receipt);
                }
                AppendOutcome::Duplicate(prior) => return replay(prior, key),
                AppendOutcome::WrongVersion { .. } => {
                    self.lost_race(stream_id, &current, &mut conflicts).await?;
                    current = match self.load::<A>(stream_id, key).await? {
                        Reload::Tip(current) => current,
                        Reload::Answered(receipt) => return Ok(receipt),
                    };
                }
            }
        }
    }

    /// Runs commands to one stream in row (see [`execute_in_row`](Self::execute_in_row)).
    async fn run_in_row<A: Aggregate>(
        &self,
        stream_id: &str,
        row: &[(&A::Command, &Envelope)],
    ) -> Vec<Result<Receipt, CommandError>> {
        let _turn = self.locks.lock(stream_id).await;
        let mut answers = Vec::with_capacity(row.len());
        while let Some(rest) = row.get(answers.len()..).filter(|rest| !rest.is_empty()) {
            let done = match self.fold::<A>(stream_id, rest).await {
                Ok(Some(receipts)) => {
                    answers.extend(receipts.into_iter().map(Ok));
                    continue;
                }
                Ok(None) => {
                    let (command, envelope) = rest[0];
                    self.run_locked::<A>(stream_id, command, envelope).await
                }
                Err(error) => Err(error),
            };
            answers.push(done);
            if answers.last().is_some_and(stops_a_row) {
                break;
            }
        }
        answers
    }

    /// Decides the commands of `row` in a row, from the first, and appends
    /// the events of as many as one append takes; their receipts. `None`
    /// when the first must run on its own: it is refused (a refusal on a
    /// state that may be stale is checked against the store and the key),
    /// or a command of the row was handled before (each key then answers
    /// for itself).
    async fn fold<A: Aggregate>(
        &self,
        stream_id: &str,
        row: &[(&A::Command, &Envelope)],
    ) -> Result<Option<Vec<Receipt>>, CommandError> {
        let mut current = self.cached::<A>(stream_id);
        let mut conflicts = 0;
        loop {
            let decided = decide_in_row::<A>(stream_id, &current, row)?;
            if decided.receipts.is_empty() {
                return Ok(None);
            }
            if decided.events.is_empty() {
                if current.authoritative {
                    return Ok(Some(decided.receipts));
                }
                // Nothing changes, on a tip that may be stale: read it.
            } else {
                let append = Append {
                    stream_id: stream_id.to_string(),
                    expected_version: current.version,
                    events: decided.events,
                    state: encode_state::<A>(&decided.state)?,
                    idempotency: decided.records,
                };
                match self.append(append).await? {
                    AppendOutcome::Appended { version } => {
                        self.tips.insert(stream_id, version, Arc::new(decided.state));
                        return Ok(Some(decided.receipts));
                    }
                    AppendOutcome::Duplicate(_) => return Ok(None),
                    AppendOutcome::WrongVersion { .. } => self.lost_race(stream_id, &current, &mut conflicts).await?,
                }
            }
            current = match self.load::<A>(stream_id, None).await? {
                Reload::Tip(current) => current,
                Reload::Answered(_) => return Ok(None),
            };
        }
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, CommandError> {
        let started = std::time::Instant::now();
        let span = tracing::debug_span!("append", stream_id = append.stream_id, events = append.events.len());
        let stream_id = append.stream_id.clone();
        let appended = tracing::Instrument::instrument(self.store.append(append), span).await;
        metrics::histogram!("orderflow_append_seconds").record(started.elapsed().as_secs_f64());
        appended.map_err(|error| {
            // The outcome is unknown: forget the tip rather than trust it.
            self.tips.remove(&stream_id);
            error.into()
        })
    }

    /// After an append lost to another writer: a tip just read that lost
    /// means contention — counted, given up after `max_attempts`, and waited
    /// on with jitter; a cached one was merely stale.
    async fn lost_race<S>(
        &self,
        stream_id: &str,
        current: &Current<S>,
        conflicts: &mut u32,
    ) -> Result<(), CommandError> {
        if !current.authoritative {
            return Ok(());
        }
        *conflicts += 1;
        if *conflicts >= self.max_attempts {
            self.tips.remove(stream_id);
            return Err(CommandError::Contention(*conflicts));
        }
        tracing::debug!(stream_id, conflicts, "concurrent write, deciding again");
        metrics::counter!("orderflow_command_conflicts_total").increment(1);
        let jitter = fastrand::u64(0..=2_000 * u64::from(*conflicts));
        tokio::time::sleep(Duration::from_micros(jitter)).await;
        Ok(())
    }
}

/// `commands` as the row of one stream of the kind `pick` recognises (it
/// gives the stream and the command of that kind), when they all are and
/// none has a key that may name any stream or a version condition.
fn row_of<'a, C>(
    commands: &[(&'a Command, &'a Envelope)],
    pick: impl Fn(&'a Command) -> Option<(String, &'a C)>,
) -> Option<(String, Vec<(&'a C, &'a Envelope)>)> {
    let mut stream: Option<String> = None;
    let mut row = Vec::with_capacity(commands.len());
    for (command, envelope) in commands {
        let foldable = envelope.expected_version.is_none()
            && envelope.idempotency.as_ref().is_none_or(|key| key.scope == KeyScope::Stream);
        let (stream_id, command) = pick(command).filter(|_| foldable)?;
        if *stream.get_or_insert_with(|| stream_id.clone()) != stream_id {
            return None;
        }
        row.push((command, *envelope));
    }
    Some((stream?, row))
}

/// A store that failed or a stream too contended: the rest of a row waits
/// for the batch to be handled again.
fn stops_a_row(answer: &Result<Receipt, CommandError>) -> bool {
    matches!(answer, Err(CommandError::Store(_) | CommandError::Contention(_)))
}

/// Counts a command's outcome and time.
fn counted(name: &'static str, result: &Result<Receipt, CommandError>, started: std::time::Instant) {
    let outcome = match result {
        Ok(receipt) if receipt.duplicate => "duplicate",
        Ok(receipt) if receipt.appended == 0 => "unchanged",
        Ok(_) => "appended",
        Err(CommandError::Rejected(_)) => "rejected",
        Err(CommandError::PreconditionFailed { .. }) => "precondition-failed",
        Err(CommandError::KeyReused) => "key-reused",
        Err(CommandError::Contention(_)) => "contention",
        Err(CommandError::Store(_)) => "store-error",
    };
    metrics::counter!("orderflow_commands_total", "command" => name, "outcome" => outcome).increment(1);
    metrics::histogram!("orderflow_command_seconds").record(started.elapsed().as_secs_f64());
}

/// Commands decided in a row on one state: what one append writes.
struct Decided<S> {
    /// One per command decided, in order.
    receipts: Vec<Receipt>,
    events: Vec<EventRecord>,
    /// One per keyed command that appends.
    records: Vec<IdempotencyRecord>,
    /// The state after them all.
    state: S,
}

/// Decides commands of `row` one after another on `current` and the events
/// of those before, up to the first that is refused, repeats a key of the
/// row, or would make the append larger than a store takes.
fn decide_in_row<A: Aggregate>(
    stream_id: &str,
    current: &Current<A::State>,
    row: &[(&A::Command, &Envelope)],
) -> Result<Decided<A::State>, StoreError> {
    let mut decided =
        Decided { receipts: Vec::new(), events: Vec::new(), records: Vec::new(), state: (*current.state).clone() };
    let mut version = current.version;
    for (command, envelope) in row {
        let Ok(events) = A::decide(&decided.state, command) else { break };
        let key = envelope.idempotency.as_ref().filter(|_| !events.is_empty());
        if key.is_some_and(|key| decided.records.iter().any(|r| r.key == key.key)) {
            break;
        }
        let items = decided.events.len() + events.len() + decided.records.len() + usize::from(key.is_some()) + 1;
        if items > MAX_APPEND_ITEMS && !decided.receipts.is_empty() {
            break;
        }
        decided.events.extend(records::<A>(stream_id, version, &events, envelope)?);
        version += events.len() as u64;
        decided.state = A::fold(decided.state, &events);
        let receipt = Receipt {
            stream_id: stream_id.to_string(),
            version,
            status: A::status(&decided.state).map(str::to_string),
            appended: events.len(),
            duplicate: false,
        };
        if let Some(key) = key {
            decided.records.push(IdempotencyRecord {
                key: key.key.clone(),
                fingerprint: key.fingerprint.clone(),
                receipt: serde_json::to_value(&receipt).unwrap_or_default(),
            });
        }
        decided.receipts.push(receipt);
    }
    Ok(decided)
}

/// A bounded map of recent tips: each stream's version and its state, typed
/// (as the stream's kind decides on it, so no command decodes it again).
struct TipCache {
    tips: quick_cache::sync::Cache<String, (u64, Arc<dyn Any + Send + Sync>)>,
}

impl TipCache {
    fn new(capacity: usize) -> Self {
        TipCache { tips: quick_cache::sync::Cache::new(capacity) }
    }

    fn get<S: Send + Sync + 'static>(&self, stream_id: &str) -> Option<(u64, Arc<S>)> {
        let (version, state) = self.tips.get(stream_id)?;
        Some((version, state.downcast::<S>().ok()?))
    }

    fn insert<S: Send + Sync + 'static>(&self, stream_id: &str, version: u64, state: Arc<S>) {
        self.tips.insert(stream_id.to_string(), (version, state));
    }

    fn remove(&self, stream_id: &str) {
        self.tips.remove(stream_id);
    }
}

fn records<A: Aggregate>(
    stream_id: &str,
    version: u64,
    events: &[A::Event],
    envelope: &Envelope,
) -> Result<Vec<EventRecord>, StoreError> {
    let time = Utc::now();
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let (event_type, schema_version, data) = encode_event::<A>(event)?;
            Ok(EventRecord {
                event_id: Uuid::new_v4(),
                stream_id: stream_id.to_string(),
                index: version + i as u64,
                event_type,
                schema_version,
                data,
                time,
                correlation_id: envelope.correlation_id.clone(),
                causation_id: envelope.causation_id.clone(),
                message_id: envelope.message_id.clone(),
            })
        })
        .collect()
}

fn replay(prior: IdempotencyRecord, key: Option<&IdempotencyKey>) -> Result<Receipt, CommandError> {
    if key.is_some_and(|k| k.fingerprint != prior.fingerprint) {
        return Err(CommandError::KeyReused);
    }
    let mut receipt: Receipt = serde_json::from_value(prior.receipt)
        .map_err(|e| StoreError::Corrupt(format!("unreadable stored answer: {e}")))?;
    receipt.duplicate = true;
    receipt.appended = 0;
    Ok(receipt)
}

/// One async mutex per stream that has a command in flight.
#[derive(Default)]
struct StreamLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct StreamTurn<'a> {
    locks: &'a StreamLocks,
    stream_id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl StreamLocks {
    async fn lock(&self, stream_id: &str) -> StreamTurn<'_> {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            held.entry(stream_id.to_string()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        StreamTurn { locks: self, stream_id: stream_id.to_string(), guard: Some(guard) }
    }
}

impl Drop for StreamTurn<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(self.guard.take());
        // The map's own reference is the last one: nobody waits, forget the stream.
        if held.get(&self.stream_id).is_some_and(|mutex| Arc::strong_count(mutex) == 1) {
            held.remove(&self.stream_id);
        }
    }
}
