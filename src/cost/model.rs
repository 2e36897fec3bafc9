//! From what an order costs to what a month costs, for the deployment
//! profiles of `infra/main.bicep`. Every price is a flag whose default is the
//! list price (USD, East US, pay as you go) the docs cite; the arithmetic of
//! each line is printed beside it.
//!
//! Functions on Flex Consumption are billed per instance: the memory of an
//! instance for the time it is actively executing (at least one second per
//! activity period), plus executions. HTTP functions share instances; every
//! other function (each Kafka trigger, each change-feed trigger) scales on
//! instances of its own. A function whose invocations come at random, λ a
//! second, keeps an instance active a share 1 − e^(−λ) of the time (each
//! invocation opens or extends a period of at least a second); one with
//! steady work keeps instances busy all the time, as many as its load needs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Measured, PerOrder};

const HOURS: f64 = 730.0;
const SECONDS: f64 = HOURS * 3600.0;
const GB: f64 = 1e9;

/// The prices, each a flag of `orderflow cost`.
#[derive(clap::Args, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// Cosmos DB serverless, $ per million RU
    #[arg(long, default_value_t = 0.25, value_name = "USD")]
    pub serverless_per_million_ru: f64,
    /// Cosmos DB autoscale, $ per 100 RU/s per hour (billed at the highest RU/s of each hour, at least 10 % of the maximum)
    #[arg(long, default_value_t = 0.012, value_name = "USD")]
    pub autoscale_per_100_rus_hour: f64,
    /// Cosmos DB autoscale price factor in zone-redundant regions
    #[arg(long, default_value_t = 1.25, value_name = "FACTOR")]
    pub zone_redundancy_factor: f64,
    /// Cosmos DB storage, $ per GB-month
    #[arg(long, default_value_t = 0.25, value_name = "USD")]
    pub storage_per_gb_month: f64,
    /// Event Hubs Standard, $ per throughput unit per hour
    #[arg(long, default_value_t = 0.03, value_name = "USD")]
    pub event_hubs_per_tu_hour: f64,
    /// Event Hubs Standard, $ per million ingress events
    #[arg(long, default_value_t = 0.028, value_name = "USD")]
    pub event_hubs_per_million_events: f64,
    /// Flex Consumption on demand, $ per GB-second of active instance memory
    #[arg(long, default_value_t = 0.000026, value_name = "USD")]
    pub flex_per_gb_second: f64,
    /// Flex Consumption on demand, $ per million executions
    #[arg(long, default_value_t = 0.40, value_name = "USD")]
    pub flex_per_million_executions: f64,
    /// Flex Consumption always ready, $ per GB-second of baseline (every always-ready instance, all the time)
    #[arg(long, default_value_t = 0.000004, value_name = "USD")]
    pub always_ready_baseline_per_gb_second: f64,
    /// Flex Consumption always ready, $ per GB-second while an always-ready instance executes
    #[arg(long, default_value_t = 0.000016, value_name = "USD")]
    pub always_ready_per_gb_second: f64,
    /// Flex Consumption monthly free grant of GB-seconds
    #[arg(long, default_value_t = 100_000.0, value_name = "GB-S")]
    pub flex_free_gb_seconds: f64,
    /// Flex Consumption monthly free grant of executions
    #[arg(long, default_value_t = 250_000.0, value_name = "COUNT")]
    pub flex_free_executions: f64,
    /// Memory of a Function App instance, instead of each profile's (infra: 0.5 GB small, 2 GB medium and large)
    #[arg(long, value_name = "GB")]
    pub instance_gb: Option<f64>,
    /// Commands (or records, or events) one instance handles a second under steady load
    #[arg(long, default_value_t = 1_000.0, value_name = "PER_SECOND")]
    pub instance_throughput: f64,
    /// Log Analytics ingestion, $ per GB after the first 5 GB of a month
    #[arg(long, default_value_t = 2.30, value_name = "USD")]
    pub logs_per_gb: f64,
    /// Telemetry written per execution (request and host traces)
    #[arg(long, default_value_t = 1.0, value_name = "KB")]
    pub log_kb_per_execution: f64,
    /// Key retention the idempotency records and key claims are kept for
    #[arg(long, default_value_t = 7.0, value_name = "DAYS")]
    pub retention_days: f64,
}

/// A deployment profile of `infra/main.bicep`.
struct Profile {
    name: &'static str,
    orders_per_second: f64,
    /// Autoscale maximum RU/s; `None` for serverless.
    autoscale_max: Option<f64>,
    /// Function App instance memory, GB (`instanceMemoryMB`).
    instance_gb: f64,
    zone_redundant: bool,
}

/// As `infra/main.bicep` sizes them (tests/infra.rs keeps the two equal).
const PROFILES: [Profile; 3] = [
    Profile {
        name: "small",
        orders_per_second: 1000.0 / 3600.0,
        autoscale_max: None,
        instance_gb: 0.5,
        zone_redundant: false,
    },
    Profile {
        name: "medium",
        orders_per_second: 100.0,
        autoscale_max: Some(40_000.0),
        instance_gb: 2.0,
        zone_redundant: true,
    },
    Profile {
        name: "large",
        orders_per_second: 1000.0,
        autoscale_max: Some(400_000.0),
        instance_gb: 2.0,
        zone_redundant: true,
    },
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Month {
    pub profile: &'static str,
    pub orders_per_second: f64,
    pub lines: Vec<Line>,
    pub total: f64,
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub item: String,
    pub arithmetic: String,
    pub dollars: f64,
}

/// How the triggers batch (the app's settings, and the triggers' defaults).
const KAFKA_PARTITIONS: f64 = 32.0; // per topic (infra/main.bicep)
const KAFKA_BATCH: f64 = 100.0; // host.json maxBatchSize
const FEED_RANGES: f64 = 4.0; // physical partitions of a new container
const FEED_POLL_SECONDS: f64 = 5.0; // the Cosmos DB trigger's feedPollDelay
const FEED_BATCH: f64 = 500.0; // function.json maxItemsPerInvocation
/// Application Insights' adaptive sampling (the Functions host's default):
/// telemetry items a second per instance.
const SAMPLED_ITEMS_PER_SECOND: f64 = 20.0;
/// A zone-redundant Flex app keeps at least two always-ready instances
/// per function group (HTTP) and per other function, billed as always
/// ready ("Reliability in Azure Functions").
const ZONE_REDUNDANT_ALWAYS_READY: f64 = 2.0;

/// One function of the app under a load: invocations a second, and units
/// of work a second (requests, records, events).
struct Load {
    name: &'static str,
    invocations: f64,
    work: f64,
}

/// The functions of the app at `rate` orders a second. HTTP requests are
/// executions each (two commands and four reads per order); Kafka records
/// come in batches, at most one a second per partition while they are
/// sparse; change-feed events come a batch per poll of each range while
/// they are sparse, up to 500 per invocation.
fn loads(measured: &Measured, rate: f64) -> [Load; 8] {
    let http = 6.0 * rate;
    let kafka = |records: f64| records.min(KAFKA_PARTITIONS.max(records / KAFKA_BATCH));
    let events = measured.messages_out * rate;
    let feed = events.min((FEED_RANGES / FEED_POLL_SECONDS).max(events / FEED_BATCH));
    [
        Load { name: "HTTP (orders-api)", invocations: http, work: http },
        Load { name: "ingest-payments", invocations: kafka(rate), work: rate },
        Load { name: "ingest-warehouse", invocations: kafka(2.0 * rate), work: 2.0 * rate },
        Load { name: "ingest-stock", invocations: 0.0, work: 0.0 },
        Load { name: "project-snapshots", invocations: feed, work: events },
        Load { name: "publish-events", invocations: feed, work: events },
        Load { name: "fulfillment", invocations: feed, work: events },
        // The timer function, once a minute: each order's payment deadline.
        Load { name: "deadlines", invocations: 1.0 / 60.0, work: rate },
    ]
}

/// Which request units the months are priced with.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuFrom {
    /// As the account charged them (the SDK emulator's model, on the emulator).
    Measured,
    /// The measured operations at Microsoft's published rates ([`planning`]).
    Planning,
}

/// Request units per order of the measured operations, at Microsoft's
/// published rates for small documents with allow-list indexing: a point
/// read 1 RU per KB, a create (and a delete) about 5.7 RU per KB, a replace
/// about 10.7 RU per KB, a query about 2.5 RU, a change-feed page about 2 RU.
/// What a user should plan with before measuring an account of their own.
pub fn planning(measured: &Measured, operations: &BTreeMap<&'static str, PerOrder>) -> BTreeMap<&'static str, f64> {
    const CREATE: f64 = 5.7;
    const REPLACE: f64 = 10.7;
    let kb = |bytes: f64| (bytes / 1024.0).ceil().max(1.0);
    let s = &measured.sizes;
    let events = measured.messages_out;
    let batches = measured.per_order.get("append-batch").map_or(0.0, |p| p.requests);
    // A batch creates its events and its idempotency record and replaces its
    // tip (an order's or a SKU's, by how many of each there are).
    let tip = (s.order_tip * 6.0 + s.sku_tip * (batches - 6.0).max(0.0)) / batches.max(1.0);
    let append = events * CREATE * kb(s.event)
        + s.records_per_order * CREATE * kb(s.idempotency_record)
        + batches * REPLACE * kb(tip);
    operations
        .iter()
        .map(|(operation, per)| {
            let ru = match *operation {
                "append-batch" => append,
                "claim-key" => per.requests * CREATE * kb(s.key_claim),
                // Archival: the piece created, every event but the last
                // deleted (a batch bills each delete), the read model noted.
                "write-archive" => per.requests * CREATE * kb(s.archived_piece),
                "archive-delete" => (s.events_per_order - 1.0).max(0.0) * CREATE * kb(s.event),
                "note-archived" => per.requests * REPLACE * kb(s.order_snapshot),
                op if op.starts_with("read-") => per.requests * kb(s.order_snapshot),
                op if op.starts_with("write-") => per.requests * REPLACE * kb(s.order_snapshot),
                op if op.starts_with("query-") => per.requests * 2.5,
                "change-feed-page" => per.requests * 2.0,
                _ => per.ru,
            };
            (*operation, ru)
        })
        .collect()
}

pub fn monthly(measured: &Measured, prices: &Prices, from: RuFrom) -> Vec<Month> {
    let ru = match from {
        RuFrom::Measured => measured.ru_per_order,
        RuFrom::Planning => planning(measured, &measured.per_order).values().sum(),
    };
    PROFILES.iter().map(|profile| month(measured, prices, profile, ru)).collect()
}

/// What archival (off by default on Cosmos DB) does to one profile's month:
/// the request units it adds, and the storage growth it saves — a saving
/// that adds up, month after month.
pub struct Archival {
    pub profile: &'static str,
    pub ru_dollars: f64,
    pub saved_growth_dollars: f64,
}

pub fn archival(measured: &Measured, prices: &Prices, from: RuFrom) -> Vec<Archival> {
    let ru = match from {
        RuFrom::Measured => measured.archival_ru_per_order,
        RuFrom::Planning => planning(measured, &measured.archival).values().sum(),
    };
    let s = &measured.sizes;
    let saved_per_order = s.stored_per_order - s.hot_when_archived - s.archived_piece;
    PROFILES
        .iter()
        .map(|profile| {
            let orders = profile.orders_per_second * SECONDS;
            let ru_dollars = match profile.autoscale_max {
                None => orders * ru / 1e6 * prices.serverless_per_million_ru,
                Some(_) => {
                    let factor = if profile.zone_redundant { prices.zone_redundancy_factor } else { 1.0 };
                    profile.orders_per_second * ru / 100.0 * prices.autoscale_per_100_rus_hour * HOURS * factor
                }
            };
            let saved_growth_dollars = orders * saved_per_order / GB * prices.storage_per_gb_month;
            Archival { profile: profile.name, ru_dollars, saved_growth_dollars }
        })
        .collect()
}

fn month(measured: &Measured, prices: &Prices, profile: &Profile, ru: f64) -> Month {
    let rate = profile.orders_per_second;
    let orders = rate * SECONDS;
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut line = |item: &str, arithmetic: String, dollars: f64| {
        lines.push(Line { item: item.to_string(), arithmetic, dollars });
    };
    // Cosmos DB request units.
    match profile.autoscale_max {
        None => {
            let units = orders * ru;
            line(
                "Cosmos DB RU (serverless)",
                format!(
                    "{orders:.0} orders × {ru:.1} RU = {:.1} M RU × ${}",
                    units / 1e6,
                    prices.serverless_per_million_ru
                ),
                units / 1e6 * prices.serverless_per_million_ru,
            );
        }
        Some(max) => {
            let needed = rate * ru;
            if needed > max {
                warnings.push(format!("{needed:.0} RU/s needed, over the profile's autoscale maximum of {max:.0}"));
            }
            let billed = needed.max(max / 10.0);
            let factor = if profile.zone_redundant { prices.zone_redundancy_factor } else { 1.0 };
            line(
                "Cosmos DB RU (autoscale)",
                format!(
                    "{rate:.0} orders/s × {ru:.1} RU = {needed:.0} RU/s → {:.0} × ${} × {HOURS} h × {factor}",
                    billed / 100.0,
                    prices.autoscale_per_100_rus_hour
                ),
                billed / 100.0 * prices.autoscale_per_100_rus_hour * HOURS * factor,
            );
        }
    }
    // Storage: the month's orders for good (archival is off by default on
    // Cosmos DB: see [`archival`]), and the records kept for the retention.
    let sizes = &measured.sizes;
    let kept = orders * sizes.stored_per_order / GB;
    let retained = rate
        * prices.retention_days
        * 86_400.0
        * (sizes.records_per_order * sizes.idempotency_record + sizes.claims_per_order * sizes.key_claim)
        / GB;
    line(
        "Cosmos DB storage",
        format!(
            "{kept:.1} GB of orders more every month (× ${}), plus {retained:.2} GB of idempotency records",
            prices.storage_per_gb_month
        ),
        (kept + retained) * prices.storage_per_gb_month,
    );
    // Event Hubs: throughput units for what comes in, and the events.
    let events_in = rate * (measured.messages_in + measured.messages_out);
    let bytes_in = events_in * measured.message_bytes;
    let units = (events_in / 1000.0).max(bytes_in / 1e6).ceil().max(1.0);
    line(
        "Event Hubs (Standard)",
        format!(
            "{units} TU × {HOURS} h × ${} + {:.1} M events × ${}",
            prices.event_hubs_per_tu_hour,
            events_in * SECONDS / 1e6,
            prices.event_hubs_per_million_events
        ),
        units * HOURS * prices.event_hubs_per_tu_hour
            + events_in * SECONDS / 1e6 * prices.event_hubs_per_million_events,
    );
    // Functions (Flex Consumption): per instance, per function.
    let (mut gb_seconds, mut executions, mut instances_busy) = (0.0, 0.0, 0.0);
    let (mut baseline_gb_seconds, mut ready_gb_seconds) = (0.0, 0.0);
    let always_ready = if profile.zone_redundant { ZONE_REDUNDANT_ALWAYS_READY } else { 0.0 };
    let mut busy = Vec::new();
    let instance_gb = prices.instance_gb.unwrap_or(profile.instance_gb);
    for load in loads(measured, rate) {
        // Sparse: an instance active a second or more from each invocation
        // (the minimum activity period); steady: whole instances, as many
        // as the work needs. Always-ready instances take the work first.
        let steady = load.work / prices.instance_throughput;
        let instances = if steady > 1.0 { steady.ceil() } else { 1.0 - (-load.invocations).exp() };
        let ready = instances.min(always_ready);
        baseline_gb_seconds += always_ready * SECONDS * instance_gb;
        ready_gb_seconds += ready * SECONDS * instance_gb;
        gb_seconds += (instances - ready) * SECONDS * instance_gb;
        executions += load.invocations * SECONDS;
        instances_busy += instances;
        busy.push(format!("{} {instances:.2}", load.name));
    }
    let billed_gb_seconds = (gb_seconds - prices.flex_free_gb_seconds).max(0.0);
    let billed_executions = (executions - prices.flex_free_executions).max(0.0);
    line(
        "Functions time (Flex Consumption)",
        format!(
            "instances active ({instance_gb} GB): {}; on demand {:.1} M GB-s − free × ${}",
            busy.join(", "),
            gb_seconds / 1e6,
            prices.flex_per_gb_second
        ),
        billed_gb_seconds * prices.flex_per_gb_second,
    );
    if always_ready > 0.0 {
        line(
            "Functions always ready (zone redundant)",
            format!(
                "{always_ready} per function group: {:.1} M GB-s baseline × ${} + {:.1} M GB-s executing × ${}",
                baseline_gb_seconds / 1e6,
                prices.always_ready_baseline_per_gb_second,
                ready_gb_seconds / 1e6,
                prices.always_ready_per_gb_second
            ),
            baseline_gb_seconds * prices.always_ready_baseline_per_gb_second
                + ready_gb_seconds * prices.always_ready_per_gb_second,
        );
    }
    line(
        "Functions executions",
        format!("{:.1} M − free × ${} per million", executions / 1e6, prices.flex_per_million_executions),
        billed_executions / 1e6 * prices.flex_per_million_executions,
    );
    // Telemetry per execution, sampled down to a rate per busy instance.
    let logs = (executions * prices.log_kb_per_execution)
        .min(instances_busy * SAMPLED_ITEMS_PER_SECOND * SECONDS * prices.log_kb_per_execution)
        * 1e3
        / GB;
    line(
        "Monitoring (Application Insights, sampled)",
        format!("{logs:.1} GB − 5 GB free × ${}", prices.logs_per_gb),
        (logs - 5.0).max(0.0) * prices.logs_per_gb,
    );
    line("Storage account, Key Vault", "the package, the host's locks, one secret".into(), 1.0);
    let total = lines.iter().map(|l| l.dollars).sum();
    Month { profile: profile.name, orders_per_second: rate, lines, total, warnings }
}

/// The measurement and the months, as Markdown tables.
/// A table of operations per order, measured and at planning rates.
fn print_operations(measured: &Measured, operations: &BTreeMap<&'static str, PerOrder>) {
    let planned = planning(measured, operations);
    println!("| operation | requests per order | RU per request | RU per order | planning RU per order |");
    println!("|---|---|---|---|---|");
    for (operation, per) in operations {
        let plan = planned.get(operation).copied().unwrap_or(per.ru);
        println!("| {operation} | {:.2} | {:.2} | {:.2} | {plan:.1} |", per.requests, per.ru_per_request, per.ru);
    }
    let plan: f64 = planned.values().sum();
    let measured_ru: f64 = operations.values().map(|per| per.ru).sum();
    println!("| **per order** | | | **{measured_ru:.1}** | **{plan:.0}** |");
    println!();
}

pub fn print(measured: &Measured, months: &[Month], prices: &Prices, from: RuFrom) {
    println!("# What an order costs ({} orders on {})", measured.orders, measured.endpoint);
    println!();
    print_operations(measured, &measured.per_order);
    println!(
        "The months below are priced with the {} request units.",
        if from == RuFrom::Measured { "measured" } else { "planning" }
    );
    let emulator = ["//127.0.0.1", "//localhost", "//[::1]"].iter().any(|host| measured.endpoint.contains(host));
    if from == RuFrom::Measured && emulator {
        println!(
            "This account looks like an emulator, whose request units are a model: \
             `--ru-from planning` prices the same operations at Microsoft's published rates."
        );
    }
    println!();
    let s = &measured.sizes;
    println!("| document | bytes |");
    println!("|---|---|");
    println!("| event (average; {:.0} in an order's stream) | {:.0} |", s.events_per_order, s.event);
    println!("| order tip | {:.0} |", s.order_tip);
    println!("| SKU tip | {:.0} |", s.sku_tip);
    println!("| order snapshot | {:.0} |", s.order_snapshot);
    println!(
        "| idempotency record ({:.0} per order, kept {} days) | {:.0} |",
        s.records_per_order, prices.retention_days, s.idempotency_record
    );
    println!(
        "| key claim ({:.0} per order, kept {} days) | {:.0} |",
        s.claims_per_order, prices.retention_days, s.key_claim
    );
    println!("| **kept for good per order** | **{:.0}** |", s.stored_per_order);
    println!("| once archived: what stays hot (last event, tip, snapshot) | {:.0} |", s.hot_when_archived);
    println!("| once archived: the archived piece (the other events, deflated) | {:.0} |", s.archived_piece);
    println!();
    println!(
        "Kafka: {:.0} messages in and {:.1} out per order, {:.0} bytes each on average.",
        measured.messages_in, measured.messages_out, measured.message_bytes
    );
    println!();
    println!("## Archival (`OrderflowArchiveClosedAfter`; off by default on Cosmos DB)");
    println!();
    println!("Archiving an order, once, some time after it closed:");
    println!();
    print_operations(measured, &measured.archival);
    println!("| profile | archival RU a month | storage growth it saves (a month more each month) | the bill is lower after |");
    println!("|---|---|---|---|");
    for row in archival(measured, prices, from) {
        let months = row.ru_dollars / row.saved_growth_dollars.max(f64::MIN_POSITIVE);
        println!(
            "| {} | ${:.2} | ${:.2} | {months:.0} months of archiving |",
            row.profile, row.ru_dollars, row.saved_growth_dollars
        );
    }
    for month in months {
        println!();
        let rate = month.orders_per_second;
        let hourly = rate * 3600.0;
        println!("## {}: {rate:.2} orders a second ({hourly:.0} an hour)", month.profile);
        println!();
        println!("| item | arithmetic | per month |");
        println!("|---|---|---|");
        for line in &month.lines {
            println!("| {} | {} | ${:.2} |", line.item, line.arithmetic, line.dollars);
        }
        println!("| **total** | | **${:.0}** |", month.total);
        for warning in &month.warnings {
            println!();
            println!("Warning: {warning}.");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cost::{PerOrder, Sizes};

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        prices: Prices,
    }

    fn measured() -> Measured {
        let append = PerOrder { requests: 11.0, ru_per_request: 4.0, ru: 44.0 };
        Measured {
            orders: 10,
            endpoint: "https://example.documents.azure.com/".into(),
            per_order: BTreeMap::from([("append-batch", append)]),
            ru_per_order: 44.0,
            archival: BTreeMap::new(),
            archival_ru_per_order: 0.0,
            sizes: Sizes { records_per_order: 11.0, claims_per_order: 5.0, ..Sizes::default() },
            messages_in: 3.0,
            messages_out: 13.0,
            message_bytes: 450.0,
        }
    }

    fn item<'a>(month: &'a Month, name: &str) -> Option<&'a Line> {
        month.lines.iter().find(|line| line.item.starts_with(name))
    }

    #[test]
    fn zone_redundant_profiles_pay_for_always_ready_instances_and_small_does_not() {
        let prices = Flags::parse_from(["cost"]).prices;
        let months = monthly(&measured(), &prices, RuFrom::Measured);
        assert!(item(&months[0], "Functions always ready").is_none());
        for month in &months[1..] {
            let always_ready = item(month, "Functions always ready").expect("zone redundant");
            // Two instances of 2 GB for each of the 8 function groups, all month.
            let baseline = 2.0 * 8.0 * 2.0 * SECONDS * prices.always_ready_baseline_per_gb_second;
            assert!(always_ready.dollars >= baseline, "{} < {baseline}", always_ready.dollars);
        }
    }

    #[test]
    fn sparse_functions_are_billed_for_their_activity_periods_not_their_milliseconds() {
        let prices = Flags::parse_from(["cost"]).prices;
        let small = &monthly(&measured(), &prices, RuFrom::Measured)[0];
        let time = item(small, "Functions time").expect("on demand");
        // 1,000 orders an hour: each function is invoked less than once a
        // second, so each invocation opens a billed second of a 0.5 GB
        // instance — far more than its few milliseconds of work.
        assert!(time.dollars > 50.0, "{}", time.arithmetic);
        assert!(time.arithmetic.contains("0.5 GB"), "{}", time.arithmetic);
        assert_eq!(small.total, small.lines.iter().map(|line| line.dollars).sum::<f64>());
    }
}
