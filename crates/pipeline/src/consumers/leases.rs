//! Who reads which range of the change feed: leases with an owner and an
//! expiry, written once for every store over the [`LeaseStore`] port, whose
//! writes are conditional (of two processes writing one lease, one wins).
//!
//! - **One owner per range.** A process takes free and expired leases up to
//!   its fair share (ranges ÷ live owners, rounded up). To even out shares it
//!   never takes a live lease: it asks for it (`requested_by`), and the owner
//!   hands it over between two batches, when it no longer touches the range.
//! - **Renewed while working.** Every write (renewal, checkpoint) extends the
//!   lease by its TTL; the runner renews a quarter TTL after the last write,
//!   also while a batch runs. A process that cannot renew stops touching the
//!   range a quarter TTL before the lease expires — before anyone else may
//!   take it (clocks must agree to within that quarter).
//! - **New ranges.** A range the consumer never read starts where the
//!   consumer's [`StartFrom`] says, decided when its lease is created (before
//!   `serve` takes requests); a range that split goes on as its parts, each
//!   with the position, owner and expiry of the range it split from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::ports::{ChangeFeed, FeedPosition, Lease, LeaseStore, StartFrom, StoreError, Versioned};

/// The wall clock that lease expiry is compared with (tests play it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The leases one consumer of one process holds.
pub struct Leases {
    store: Arc<dyn LeaseStore>,
    feed: Arc<dyn ChangeFeed>,
    consumer: String,
    owner: String,
    ttl: Duration,
    start: StartFrom,
    clock: Clock,
    held: BTreeMap<String, Held>,
    /// When the leases should be written again (renewed, or re-balanced).
    renew_at: Instant,
    balanced_at: Option<Instant>,
}

struct Held {
    lease: Versioned<Lease>,
    /// Stop touching the range by then, unless the lease is written again.
    until: Instant,
}

/// How a lease write turned out.
enum Written {
    Kept,
    Lost,
}

impl Leases {
    pub fn new(store: Arc<dyn LeaseStore>, feed: Arc<dyn ChangeFeed>, consumer: &str, owner: &str) -> Leases {
        Leases {
            store,
            feed,
            consumer: consumer.to_string(),
            owner: owner.to_string(),
            ttl: Duration::from_secs(30),
            start: StartFrom::Now,
            clock: Arc::new(Utc::now),
            held: BTreeMap::new(),
            renew_at: Instant::now(),
            balanced_at: None,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn set_owner(&mut self, owner: &str) {
        self.owner = owner.to_string();
    }

    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    pub fn set_start(&mut self, start: StartFrom) {
        self.start = start;
    }

    pub fn start(&self) -> StartFrom {
        self.start
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The ranges held, in order.
    pub fn ranges(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// Where reading `range` goes on (`Some(None)`: a range never started);
    /// `None` when the range is not held.
    pub fn position(&self, range: &str) -> Option<Option<String>> {
        self.held.get(range).map(|held| held.lease.value.continuation.clone())
    }

    /// When this process must stop touching `range`, unless it renews first.
    pub fn deadline(&self, range: &str) -> Option<Instant> {
        self.held.get(range).map(|held| held.until)
    }

    /// When the held leases are due for renewal.
    pub fn renewal_due(&self) -> Instant {
        self.renew_at
    }

    /// Whether a new look at the ranges and owners is due: a quarter TTL
    /// after the last one.
    pub fn balance_due(&self) -> bool {
        self.balanced_at.is_none_or(|at| at.elapsed() >= self.ttl / 4)
    }

    fn margin(&self) -> Duration {
        self.ttl / 4
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn expiry(&self) -> DateTime<Utc> {
        self.now() + self.ttl
    }

    /// Looks at the feed's ranges and every owner's leases: creates the
    /// leases of new ranges, retires those of ranges that split, renews this
    /// owner's leases (handing one over when asked and above its share),
    /// takes free ones up to its share and asks for one from the busiest
    /// owner while below it.
    pub async fn balance(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let stored = self.store.leases(&self.consumer).await?;
        let positions: Vec<FeedPosition> = stored
            .iter()
            .map(|l| FeedPosition { range: l.value.range.clone(), continuation: l.value.continuation.clone() })
            .collect();
        let plan = self.feed.layout(&positions).await?;
        let mut by_range: HashMap<String, Versioned<Lease>> =
            stored.into_iter().map(|l| (l.value.range.clone(), l)).collect();

        // A lease for every range to read.
        let mut raced = false;
        for planned in &plan {
            if by_range.contains_key(&planned.range) {
                continue;
            }
            let parent = planned.split_from.as_ref().and_then(|range| by_range.get(range)).map(|l| l.value.clone());
            let continuation = match &planned.continuation {
                Some(continuation) => continuation.clone(),
                None => self.feed.start(&planned.range, self.start).await?,
            };
            let lease = Lease {
                consumer: self.consumer.clone(),
                range: planned.range.clone(),
                continuation: Some(continuation),
                owner: parent.as_ref().and_then(|p| p.owner.clone()),
                expires_at: parent.as_ref().map_or(DateTime::UNIX_EPOCH, |p| p.expires_at),
                requested_by: None,
            };
            match self.store.put(&lease, None).await? {
                Some(version) => {
                    if planned.split_from.is_some() {
                        tracing::info!(
                            consumer = self.consumer,
                            range = lease.range,
                            "feed range split: going on from its parent's position"
                        );
                    }
                    by_range.insert(lease.range.clone(), Versioned { value: lease, version });
                }
                None => raced = true,
            }
        }
        if raced {
            // Another process created some of them first: take its versions.
            by_range =
                self.store.leases(&self.consumer).await?.into_iter().map(|l| (l.value.range.clone(), l)).collect();
        }
        // Ranges that split are read as their parts now.
        let planned: Vec<&str> = plan.iter().map(|p| p.range.as_str()).collect();
        for (range, lease) in by_range.iter().filter(|(range, _)| !planned.contains(&range.as_str())) {
            self.store.delete(&self.consumer, range, Some(&lease.version)).await?;
        }
        let leases: Vec<Versioned<Lease>> = plan.iter().filter_map(|p| by_range.remove(&p.range)).collect();

        let now = self.now();
        let live_other = |lease: &Lease| {
            lease.owner.as_deref().filter(|owner| *owner != self.owner && lease.expires_at > now).map(String::from)
        };
        // Live owners: those holding live leases, and those asking for one
        // (a request lasts one round: the owner clears it when it renews).
        let mut others: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, lease) in leases.iter().enumerate() {
            if let Some(owner) = live_other(&lease.value) {
                others.entry(owner).or_default().push(i);
            }
            if let Some(requester) = lease.value.requested_by.as_ref().filter(|by| **by != self.owner) {
                others.entry(requester.clone()).or_default();
            }
        }
        let share = leases.len().div_ceil(others.len() + 1);
        let mine: Vec<usize> =
            (0..leases.len()).filter(|&i| leases[i].value.owner.as_deref() == Some(self.owner.as_str())).collect();

        let mut held = BTreeMap::new();
        let mut keeping = mine.len();
        let until = started + self.ttl - self.margin();
        for &i in &mine {
            let mut lease = leases[i].clone();
            let asked = lease.value.requested_by.clone().filter(|by| others.contains_key(by));
            match asked {
                Some(requester) if keeping > share => {
                    lease.value.owner = Some(requester.clone());
                    lease.value.expires_at = self.expiry();
                    lease.value.requested_by = None;
                    if self.store.put(&lease.value, Some(&lease.version)).await?.is_some() {
                        tracing::info!(
                            consumer = self.consumer,
                            range = lease.value.range,
                            to = requester,
                            "lease handed over"
                        );
                    }
                    keeping -= 1;
                }
                _ => {
                    lease.value.expires_at = self.expiry();
                    lease.value.requested_by = None;
                    if let Some(version) = self.store.put(&lease.value, Some(&lease.version)).await? {
                        lease.version = version;
                        held.insert(lease.value.range.clone(), Held { lease, until });
                    }
                }
            }
        }
        for lease in &leases {
            if held.len() >= share {
                break;
            }
            let free = lease.value.owner.as_deref() != Some(self.owner.as_str()) && live_other(&lease.value).is_none();
            if free {
                let mut lease = lease.clone();
                lease.value.owner = Some(self.owner.clone());
                lease.value.expires_at = self.expiry();
                lease.value.requested_by = None;
                if let Some(version) = self.store.put(&lease.value, Some(&lease.version)).await? {
                    lease.version = version;
                    held.insert(lease.value.range.clone(), Held { lease, until });
                }
            }
        }
        // Below the share with nothing free: ask the busiest owner for one.
        let busiest = others.values().max_by_key(|ranges| ranges.len());
        if let Some(ranges) = busiest.filter(|ranges| held.len() < share && ranges.len() > held.len() + 1) {
            let mut asked = leases[ranges[0]].clone();
            if asked.value.requested_by.as_deref() != Some(self.owner.as_str()) {
                asked.value.requested_by = Some(self.owner.clone());
                self.store.put(&asked.value, Some(&asked.version)).await?;
            }
        }

        let before: Vec<String> = self.held.keys().cloned().collect();
        self.held = held;
        if before != self.ranges() {
            tracing::info!(consumer = self.consumer, owner = self.owner, ranges = ?self.ranges(), of = leases.len(), "change-feed ranges held");
        }
        self.renew_at = started + self.ttl / 4;
        self.balanced_at = Some(started);
        Ok(())
    }

    /// Extends every held lease; a lease another process took is dropped.
    /// On a failure to reach the store the leases stay held until their
    /// deadlines, and the renewal is tried again soon.
    pub async fn renew(&mut self) -> Result<(), StoreError> {
        let expires_at = self.expiry();
        for range in self.ranges() {
            let renewed = self.write(&range, |lease| lease.expires_at = expires_at).await;
            if let Err(error) = renewed {
                self.renew_at = Instant::now() + self.ttl / 16;
                return Err(error);
            }
        }
        self.renew_at = Instant::now() + self.ttl / 4;
        Ok(())
    }

    /// Saves how far the range was read (which also renews its lease).
    /// False when another process holds the range now: this one leaves it.
    pub async fn save(&mut self, range: &str, continuation: &str) -> Result<bool, StoreError> {
        let expires_at = self.expiry();
        let written = self
            .write(range, |lease| {
                lease.continuation = Some(continuation.to_string());
                lease.expires_at = expires_at;
            })
            .await?;
        Ok(matches!(written, Written::Kept))
    }

    /// Stops handling `range` at once (its deadline passed).
    pub fn abandon(&mut self, range: &str) {
        self.held.remove(range);
    }

    /// Writes a change to a held lease. Another process asking for the range
    /// changes its version without taking it: then the change is written
    /// again over what is stored, as long as this process still owns it.
    async fn write(&mut self, range: &str, change: impl Fn(&mut Lease)) -> Result<Written, StoreError> {
        let Some(held) = self.held.get(range) else { return Ok(Written::Lost) };
        let mut current = held.lease.clone();
        for _ in 0..3 {
            let started = Instant::now();
            change(&mut current.value);
            if let Some(version) = self.store.put(&current.value, Some(&current.version)).await? {
                current.version = version;
                let until = started + self.ttl - self.margin();
                self.held.insert(range.to_string(), Held { lease: current, until });
                return Ok(Written::Kept);
            }
            match self.store.lease(&self.consumer, range).await? {
                Some(stored) if stored.value.owner.as_deref() == Some(self.owner.as_str()) => current = stored,
                _ => break,
            }
        }
        tracing::info!(consumer = self.consumer, range, "range taken over by another process");
        self.held.remove(range);
        Ok(Written::Lost)
    }

    /// Lets go of every held lease (a clean stop): others take the ranges at
    /// once instead of waiting for them to expire.
    pub async fn release(&mut self) {
        for range in self.ranges() {
            let released = self
                .write(&range, |lease| {
                    lease.owner = None;
                    lease.expires_at = DateTime::UNIX_EPOCH;
                })
                .await;
            if let Err(error) = released {
                tracing::debug!(%error, range, "lease not released; it expires by itself");
            }
        }
        self.held.clear();
    }

    /// Deletes every lease of the consumer: a finished replay starts over
    /// next time.
    pub async fn forget(&mut self) -> Result<(), StoreError> {
        for lease in self.store.leases(&self.consumer).await? {
            self.store.delete(&self.consumer, &lease.value.range, None).await?;
        }
        self.held.clear();
        Ok(())
    }
}
