//! `orderflow load`: a workload generator against a running `serve`.
//!
//! Closed loop: `--concurrency` workers each send one request, wait for the
//! answer, and go on, for `--duration`. Open loop with `--rate N`: requests
//! start on a fixed schedule of N per second (at most `--concurrency` in
//! flight), and each latency counts from the request's scheduled start, so a
//! server that falls behind shows it (no coordinated omission). Workloads:
//! - `place`: every request places an order with 1–5 lines;
//! - `lifecycle`: each worker takes orders through their life — place,
//!   sometimes add or remove a line, confirm, payment and shipment events
//!   through `/api/events`, queries — with restocks to keep stock flowing.
//!
//! It reports throughput, latency percentiles from an HDR histogram, errors
//! by kind, and the end-to-end lag from a command's answer to the snapshot
//! that shows it (sampled).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Place,
    Lifecycle,
    /// Produces `stock.received` CloudEvents to Kafka and measures how fast
    /// they become durable commands (needs KafkaBrokerList).
    Ingest,
}

pub struct LoadOptions {
    pub target: String,
    pub concurrency: usize,
    pub duration: Duration,
    pub workload: Workload,
    pub seed: u64,
    pub skus: usize,
    pub json: bool,
    /// For the ingest workload.
    pub kafka: Option<orderflow_kafka::KafkaConfig>,
    pub messages: usize,
    /// Requests per second, open loop; `None` for closed loop.
    pub rate: Option<u32>,
}

/// The open-loop schedule: request n starts at `start + n / rate`.
struct Pacer {
    start: Instant,
    interval_ns: u64,
    next_ns: AtomicU64,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        Pacer { start: Instant::now(), interval_ns: 1_000_000_000 / u64::from(rate.max(1)), next_ns: AtomicU64::new(0) }
    }

    /// Waits for the next free slot of the schedule and returns it.
    async fn slot(&self) -> Instant {
        let at = self.start + Duration::from_nanos(self.next_ns.fetch_add(self.interval_ns, Ordering::Relaxed));
        tokio::time::sleep_until(at.into()).await;
        at
    }
}

/// What the workers record, shared.
struct Stats {
    latency_us: Mutex<Histogram<u64>>,
    lag_us: Mutex<Histogram<u64>>,
    by_operation: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    requests: AtomicU64,
}

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).context("histogram bounds");
        Ok(Stats {
            latency_us: Mutex::new(histogram()?),
            lag_us: Mutex::new(histogram()?),
            by_operation: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Worker {
    client: reqwest::Client,
    target: String,
    stats: Arc<Stats>,
    rng: fastrand::Rng,
    id: usize,
    /// Distinguishes this run's order ids from earlier runs' (the seed does not).
    run: u32,
    skus: usize,
    sequence: u64,
    sample_lag: bool,
    pacer: Option<Arc<Pacer>>,
}

impl Worker {
    /// Sends one request, records its latency and outcome; the JSON answer
    /// when it succeeded.
    async fn send(&mut self, operation: &'static str, request: reqwest::RequestBuilder) -> Option<Value> {
        let started = match &self.pacer {
            Some(pacer) => pacer.slot().await,
            None => Instant::now(),
        };
        let result = request.send().await;
        let elapsed = started.elapsed();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let _ = lock(&self.stats.latency_us).record(elapsed.as_micros().max(1) as u64);
        *lock(&self.stats.by_operation).entry(operation).or_default() += 1;
        let error = match result {
            Ok(response) if response.status().is_success() => {
                return Some(response.json().await.unwrap_or(Value::Null))
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                format!("{operation}: {status} {}", body["code"].as_str().unwrap_or(""))
            }
            Err(error) if error.is_timeout() => format!("{operation}: timeout"),
            Err(error) if error.is_connect() => format!("{operation}: connection refused"),
            Err(_) => format!("{operation}: transport error"),
        };
        *lock(&self.stats.errors).entry(error).or_default() += 1;
        None
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target)
    }

    fn next_order_id(&mut self) -> String {
        self.sequence += 1;
        format!("load-{}-{}-{}", self.run, self.id, self.sequence)
    }

    fn sku(&mut self) -> String {
        format!("LOAD-{:04}", self.rng.usize(..self.skus))
    }

    /// Places an order; its id, version and total.
    async fn place(&mut self) -> Option<(String, u64, u64)> {
        let order_id = self.next_order_id();
        let count = self.rng.usize(1..=5);
        let mut skus: Vec<String> = (0..count).map(|_| self.sku()).collect();
        skus.sort();
        skus.dedup();
        let mut total = 0;
        let lines: Vec<Value> = skus
            .iter()
            .map(|sku| {
                let (quantity, price) = (self.rng.u64(1..=3), self.rng.u64(100..=10_000));
                total += quantity * price;
                json!({"sku": sku, "quantity": quantity, "unitPriceMinor": price})
            })
            .collect();
        let body = json!({"orderId": order_id, "customerId": format!("customer-{}", self.rng.u32(..1000)), "currency": "EUR", "lines": lines});
        let request = self.client.post(self.url("/api/orders")).json(&body);
        let answer = self.send("place", request).await?;
        let version = answer["version"].as_u64().unwrap_or(1);
        if self.sample_lag {
            self.measure_lag(&order_id, version).await;
        }
        Some((order_id, version, total))
    }

    /// Polls the order's snapshot until it shows `version`: the end-to-end
    /// lag of the read side (not counted as requests).
    async fn measure_lag(&self, order_id: &str, version: u64) {
        let acknowledged = Instant::now();
        let deadline = acknowledged + Duration::from_secs(30);
        while Instant::now() < deadline {
            let response = self.client.get(self.url(&format!("/api/orders/{order_id}"))).send().await;
            if let Ok(response) = response {
                if response.status().is_success() {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if body["version"].as_u64().is_some_and(|v| v >= version) {
                        let _ = lock(&self.stats.lag_us).record(acknowledged.elapsed().as_micros().max(1) as u64);
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        *lock(&self.stats.errors).entry("lag: snapshot not seen within 30 s".into()).or_default() += 1;
    }

    async fn event(&mut self, operation: &'static str, event_type: &str, data: Value) -> Option<Value> {
        let id = format!("{}-{}-{}", operation, self.id, self.rng.u64(..));
        let request = self
            .client
            .post(self.url("/api/events"))
            .header("ce-specversion", "1.0")
            .header("ce-source", "/orderflow/load")
            .header("ce-id", id)
            .header("ce-type", event_type)
            .json(&data);
        self.send(operation, request).await
    }

    /// One order through its life, as the lifecycle workload does it.
    async fn lifecycle(&mut self) {
        if self.rng.u8(..10) == 0 {
            let sku = self.sku();
            let request =
                self.client.post(self.url(&format!("/api/inventory/{sku}/restock"))).json(&json!({"quantity": 500}));
            self.send("restock", request).await;
        }
        let Some((order_id, _, mut total)) = self.place().await else { return };
        let order_path = format!("/api/orders/{order_id}");
        if self.rng.u8(..4) == 0 {
            let sku = format!("EXTRA-{:02}", self.rng.u8(..50));
            let line = json!({"sku": sku, "quantity": 1, "unitPriceMinor": 99});
            let request = self.client.post(self.url(&format!("{order_path}/lines"))).json(&line);
            if self.send("add-line", request).await.is_some() {
                total += 99;
                if self.rng.bool() {
                    let request = self.client.delete(self.url(&format!("{order_path}/lines/{sku}")));
                    if self.send("remove-line", request).await.is_some() {
                        total -= 99;
                    }
                }
            }
        }
        let request = self.client.post(self.url(&format!("{order_path}/confirm")));
        if self.send("confirm", request).await.is_none() {
            return;
        }
        let paid = json!({"orderId": order_id, "paymentId": format!("pay-{order_id}"), "amountMinor": total, "currency": "EUR"});
        self.event("payment", "payment.authorized", paid).await;
        // The warehouse ships once the order is ready: wait for the
        // reservation to land (these polls are not counted as requests).
        if self.settled_status(&order_path).await.as_deref() != Some("ReadyToShip") {
            return;
        }
        self.send("get-order", self.client.get(self.url(&order_path))).await;
        let shipment_id = format!("ship-{order_id}");
        let dispatched =
            json!({"orderId": order_id, "shipmentId": shipment_id, "carrier": "DHL", "trackingNumber": "T"});
        if self.event("dispatch", "shipment.dispatched", dispatched).await.is_some() {
            self.event("deliver", "shipment.delivered", json!({"orderId": order_id, "shipmentId": shipment_id})).await;
        }
    }

    /// The order's status once fulfillment has settled it (ReadyToShip,
    /// Backordered, ...), or None if it does not within 10 s.
    async fn settled_status(&self, order_path: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(response) = self.client.get(self.url(order_path)).send().await {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                match body["status"].as_str() {
                    Some("Placed" | "Confirmed") | None => {}
                    Some(status) => return Some(status.to_string()),
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }
}

pub async fn run(options: LoadOptions) -> anyhow::Result<()> {
    let target = options.target.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .context("cannot build the HTTP client")?;
    client
        .get(format!("{target}/health"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("{target} does not answer /health: is `orderflow serve` running?"))?;

    if options.workload == Workload::Lifecycle {
        stock_up(&client, &target, options.skus.max(1)).await?;
    }
    if options.workload == Workload::Ingest {
        return ingest(&client, &target, &options).await;
    }
    let stats = Arc::new(Stats::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let run = fastrand::u32(..);
    let pacer = options.rate.map(|rate| Arc::new(Pacer::new(rate)));
    let workers: Vec<_> = (0..options.concurrency)
        .map(|id| {
            let mut worker = Worker {
                client: client.clone(),
                target: target.clone(),
                stats: stats.clone(),
                rng: fastrand::Rng::with_seed(options.seed.wrapping_add(id as u64)),
                id,
                run,
                skus: options.skus.max(1),
                sequence: 0,
                // One worker in eight samples the read side's lag.
                sample_lag: id % 8 == 0,
                pacer: pacer.clone(),
            };
            let stop = stop.clone();
            let workload = options.workload;
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match workload {
                        Workload::Place => {
                            worker.place().await;
                        }
                        Workload::Lifecycle | Workload::Ingest => worker.lifecycle().await,
                    }
                }
            })
        })
        .collect();

    let progress = if options.json { ProgressBar::hidden() } else { ProgressBar::new(options.duration.as_secs()) };
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while started.elapsed() < options.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let requests = stats.requests.load(Ordering::Relaxed);
        let errors: u64 = lock(&stats.errors).values().sum();
        progress.set_position(elapsed as u64);
        progress.set_message(format!("{requests} requests, {:.0}/s, {errors} errors", requests as f64 / elapsed));
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for worker in workers {
        let _ = worker.await;
    }
    progress.finish_and_clear();
    report(&options, &stats, elapsed);
    Ok(())
}

/// The ingest workload: `--messages` CloudEvents `stock.received` onto the
/// Kafka `stock` topic as fast as the producer takes them, spread over
/// `--skus` fresh SKUs; done when every SKU's snapshot shows all of them.
async fn ingest(client: &reqwest::Client, target: &str, options: &LoadOptions) -> anyhow::Result<()> {
    use orderflow_pipeline::ports::{Message, MessageProducer};
    let Some(kafka) = &options.kafka else {
        anyhow::bail!("the ingest workload produces to Kafka: set KafkaBrokerList (as for serve)");
    };
    let producer = orderflow_kafka::KafkaProducer::new(kafka)?;
    let run = fastrand::u32(..);
    let skus: Vec<String> = (0..options.skus.max(1)).map(|i| format!("ING-{run}-{i}")).collect();
    let started = Instant::now();
    let progress = if options.json { ProgressBar::hidden() } else { ProgressBar::new(options.messages as u64) };
    for chunk_start in (0..options.messages).step_by(1000) {
        let chunk: Vec<Message> = (chunk_start..(chunk_start + 1000).min(options.messages))
            .map(|i| {
                let sku = &skus[i % skus.len()];
                let headers = [
                    ("ce_specversion", "1.0".to_string()),
                    ("ce_id", format!("ingest-{run}-{i}")),
                    ("ce_source", "/orderflow/load".to_string()),
                    ("ce_type", "stock.received".to_string()),
                    ("content-type", "application/json".to_string()),
                ];
                Message {
                    topic: "stock".into(),
                    key: Some(sku.clone()),
                    headers: headers.into_iter().map(|(k, v)| (k.to_string(), v.into_bytes())).collect(),
                    value: json!({"sku": sku, "quantity": 1}).to_string().into_bytes(),
                }
            })
            .collect();
        producer.send(chunk).await.context("cannot produce to Kafka")?;
        progress.set_position((chunk_start + 1000).min(options.messages) as u64);
    }
    let produced = started.elapsed();
    progress.finish_and_clear();
    // Every SKU's snapshot must show all of its messages applied.
    for (i, sku) in skus.iter().enumerate() {
        let expected = (options.messages / skus.len() + usize::from(i < options.messages % skus.len())) as u64;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let body: Value = match client.get(format!("{target}/api/inventory/{sku}")).send().await {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if body["onHand"].as_u64() == Some(expected) || expected == 0 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{sku} shows {} of {expected} after 10 minutes", body["onHand"]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let applied = started.elapsed();
    let summary = json!({
        "workload": "ingest",
        "messages": options.messages,
        "skus": skus.len(),
        "produceSeconds": produced.as_secs_f64(),
        "appliedSeconds": applied.as_secs_f64(),
        "messagesPerSecond": options.messages as f64 / applied.as_secs_f64(),
    });
    if options.json {
        println!("{summary}");
    } else {
        println!(
            "ingest: {} messages over {} SKUs produced in {:.1} s, all applied and visible after {:.1} s: {:.0} messages/s",
            options.messages,
            skus.len(),
            produced.as_secs_f64(),
            applied.as_secs_f64(),
            summary["messagesPerSecond"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// Puts plenty of every SKU the lifecycle workload orders in stock, so that
/// orders get reserved rather than backordered.
async fn stock_up(client: &reqwest::Client, target: &str, skus: usize) -> anyhow::Result<()> {
    let names = (0..skus).map(|i| format!("LOAD-{i:04}")).chain((0..50).map(|i| format!("EXTRA-{i:02}")));
    for sku in names {
        client
            .post(format!("{target}/api/inventory/{sku}/restock"))
            .json(&json!({"quantity": 1_000_000}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("cannot restock {sku} before the run"))?;
    }
    Ok(())
}

fn percentiles(histogram: &Histogram<u64>) -> Value {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "p999": ms(0.999),
        "max": histogram.max() as f64 / 1000.0,
    })
}

fn report(options: &LoadOptions, stats: &Stats, elapsed: Duration) {
    let requests = stats.requests.load(Ordering::Relaxed);
    let summary = json!({
        "workload": format!("{:?}", options.workload).to_lowercase(),
        "concurrency": options.concurrency,
        "targetRate": options.rate,
        "seconds": elapsed.as_secs_f64(),
        "requests": requests,
        "requestsPerSecond": requests as f64 / elapsed.as_secs_f64(),
        "latencyMs": percentiles(&lock(&stats.latency_us)),
        "snapshotLagMs": percentiles(&lock(&stats.lag_us)),
        "operations": *lock(&stats.by_operation),
        "errors": *lock(&stats.errors),
    });
    if options.json {
        println!("{summary}");
        return;
    }
    let latency = &summary["latencyMs"];
    let lag = &summary["snapshotLagMs"];
    let pacing = options.rate.map_or_else(|| "closed loop".to_string(), |rate| format!("open loop at {rate}/s"));
    println!(
        "{} workload, {} workers, {pacing}, {:.1} s",
        summary["workload"],
        options.concurrency,
        elapsed.as_secs_f64()
    );
    println!("  requests      {requests} ({:.0}/s)", summary["requestsPerSecond"].as_f64().unwrap_or(0.0));
    println!(
        "  latency ms    p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
        latency["p50"], latency["p90"], latency["p99"], latency["p999"], latency["max"]
    );
    println!("  snapshot lag  p50 {} · p99 {} ms ({} samples)", lag["p50"], lag["p99"], lag["count"]);
    for (operation, count) in lock(&stats.by_operation).iter() {
        println!("  {operation:<13} {count}");
    }
    let errors = lock(&stats.errors);
    if errors.is_empty() {
        println!("  errors        none");
    }
    for (kind, count) in errors.iter() {
        println!("  error         {kind}: {count}");
    }
}
