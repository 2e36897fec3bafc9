//! The effective configuration: flags, then environment, then
//! `local.settings.json` (see `settings`), validated in one place. Every
//! problem is reported at once, naming its setting; secrets never appear.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use orderflow_api::ApiConfig;
use orderflow_domain::deadlines::{BackorderAction, DeadlinePolicy};
use orderflow_kafka::KafkaConfig;
use orderflow_pipeline::ports::{StartFrom, DEFAULT_KEY_RETENTION};
use orderflow_pipeline::topics;
use orderflow_store_cosmos::{ConnectionString, CosmosAccount, Identity};
use orderflow_store_sqlite::{DEFAULT_TOPIC_AGE, DEFAULT_TOPIC_RECORDS};

use crate::settings::Settings;

pub const DEFAULT_DATA_DIR: &str = ".orderflow";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7071";

/// What flags can set; `None` falls back to the settings.
#[derive(Default, clap::Args)]
pub struct Flags {
    /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve HTTP on; port 0 picks a free one [setting OrderflowListen; default 127.0.0.1:7071]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Largest request body in bytes (413 beyond) [setting OrderflowMaxBodyBytes; default 262144]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
}

impl Flags {
    /// The settings these flags set.
    pub fn given(&self) -> Vec<&'static str> {
        let set = [
            ("OrderflowDataDir", self.data_dir.is_some()),
            ("OrderflowListen", self.listen.is_some()),
            ("OrderflowMaxBodyBytes", self.max_body_bytes.is_some()),
        ];
        set.into_iter().filter(|(_, set)| *set).map(|(setting, _)| setting).collect()
    }
}

pub struct Config {
    pub data_dir: PathBuf,
    /// Setting `OrderflowInstanceName`: who this process is in the change-feed
    /// leases it shares with others; by default the host name and the data
    /// directory, which one process at a time holds.
    pub instance: String,
    pub listen: SocketAddr,
    pub api: ApiConfig,
    /// Set when `KafkaBrokerList` is.
    pub kafka: Option<KafkaConfig>,
    /// Set when `CosmosDBConnection` is.
    pub cosmos: Option<CosmosConfig>,
    /// Set when `DynamoDBTablePrefix` is.
    pub dynamodb: Option<DynamoConfig>,
    /// Setting `OrderflowIdempotencyRetention`, default 7 days: how long a
    /// message or `Idempotency-Key` delivered again has no second effect.
    pub key_retention: Duration,
    /// Setting `OrderflowFeedStart` (`now`, `beginning` or an RFC 3339 time),
    /// default `now`: where `publish-events` and `fulfillment` start a feed
    /// range they have never read.
    pub feed_start: StartFrom,
    /// Settings `OrderflowPaymentDeadline` (default 30m), and
    /// `OrderflowBackorderDeadline` with `OrderflowBackorderAction` (cancel
    /// or notify) and `OrderflowDeliveryDeadline` (both off by default): a
    /// duration such as `30m` or `14d`, or `off`.
    pub deadlines: DeadlinePolicy,
    /// Settings `OrderflowTopicRetention` (default 7 days) and
    /// `OrderflowTopicRetentionRecords` (default 1,000,000 per topic): how
    /// long, and how many of, the embedded topic log's records (downstream
    /// messages, dead letters) are kept. Kafka keeps its own.
    pub topic_retention: Duration,
    pub topic_records: u64,
    /// Setting `OrderflowArchiveClosedAfter` (default 90 days on the
    /// embedded store, off on Cosmos DB and DynamoDB; or `off`): orders delivered or
    /// cancelled longer ago than this move their events to the archive
    /// (`orderflow archive` does it by hand).
    pub archive_closed_after: Option<Duration>,
    /// Setting `OrderflowMetricsPublic`, default true: `/metrics` answers
    /// without a key even when keys are configured (for scrapers).
    pub metrics_public: bool,
}

pub struct CosmosConfig {
    /// `CosmosDBConnection` (a connection string with the account key), or
    /// `CosmosDBConnection__accountEndpoint` (Entra ID, with
    /// `__credential` and `__clientId` as Azure Functions reads them).
    pub account: CosmosAccount,
    /// Setting `CosmosDatabase`, default `orderflow`.
    pub database: String,
    /// Setting `CosmosRegion`, the preferred region, default `East US`.
    pub region: String,
    /// Setting `CosmosLeaseSeconds`, default 60: how long a process holds a
    /// change-feed range without renewing before another one takes it over.
    pub lease_ttl: std::time::Duration,
}

pub struct DynamoConfig {
    /// Setting `DynamoDBTablePrefix`: the tables are `{prefix}events`,
    /// `{prefix}snapshots`, … Region, credentials and endpoint come from the
    /// AWS SDK's standard chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles,
    /// roles).
    pub table_prefix: String,
    /// Setting `DynamoDBLeaseSeconds`, default 60: as `CosmosLeaseSeconds`.
    pub lease_ttl: std::time::Duration,
}

impl Config {
    /// How long a change-feed lease lasts unrenewed, where the store says.
    pub fn lease_ttl(&self) -> Option<Duration> {
        self.cosmos.as_ref().map(|c| c.lease_ttl).or(self.dynamodb.as_ref().map(|d| d.lease_ttl))
    }

    pub fn resolve(flags: Flags, settings: &Settings) -> anyhow::Result<Config> {
        let mut problems = Vec::new();
        let data_dir = flags
            .data_dir
            .or_else(|| settings.get("OrderflowDataDir").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text =
            flags.listen.or_else(|| settings.get("OrderflowListen")).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text.parse().unwrap_or_else(|_| {
            problems
                .push(format!("OrderflowListen (--listen): {listen_text:?} is not an address such as 127.0.0.1:7071"));
            SocketAddr::from(([127, 0, 0, 1], 7071))
        });
        let mut api = ApiConfig::default();
        if let Some(keys) = settings.get("OrderflowApiKeys") {
            api.api_keys = keys.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect();
        }
        match flags.max_body_bytes.map(Ok).or_else(|| settings.get("OrderflowMaxBodyBytes").map(|v| v.parse())) {
            Some(Ok(bytes)) if bytes > 0 => api.max_body_bytes = bytes,
            Some(_) => problems.push("OrderflowMaxBodyBytes (--max-body-bytes): must be a positive number".into()),
            None => {}
        }
        let kafka = settings.get("KafkaBrokerList").map(|brokers| kafka_config(brokers, settings, &mut problems));
        let cosmos_lease = lease_seconds(settings, "CosmosLeaseSeconds", &mut problems);
        let account = match (settings.get("CosmosDBConnection"), settings.get("CosmosDBConnection__accountEndpoint")) {
            // An exact setting wins over the prefix (as in Azure Functions).
            (Some(text), _) => match ConnectionString::parse(&text) {
                Ok(connection) => Some(CosmosAccount::Key(connection)),
                Err(problem) => {
                    problems.push(format!("CosmosDBConnection: {problem}"));
                    None
                }
            },
            (None, Some(endpoint)) => {
                let credential = settings.get("CosmosDBConnection__credential");
                let identity = Identity::choose(credential.as_deref(), settings.get("CosmosDBConnection__clientId"));
                match identity.and_then(|identity| CosmosAccount::identity(&endpoint, identity)) {
                    Ok(account) => Some(account),
                    Err(problem) => {
                        problems.push(format!("CosmosDBConnection__accountEndpoint: {problem}"));
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let cosmos = account.map(|account| CosmosConfig {
            account,
            database: settings.get("CosmosDatabase").unwrap_or_else(|| "orderflow".into()),
            region: settings.get("CosmosRegion").unwrap_or_else(|| "East US".into()),
            lease_ttl: std::time::Duration::from_secs(cosmos_lease),
        });
        let dynamodb = settings.get("DynamoDBTablePrefix").map(|prefix| {
            if let Err(problem) = orderflow_store_dynamodb::check_prefix(&prefix) {
                problems.push(format!("DynamoDBTablePrefix: {problem}"));
            }
            let lease = lease_seconds(settings, "DynamoDBLeaseSeconds", &mut problems);
            DynamoConfig { table_prefix: prefix, lease_ttl: Duration::from_secs(lease) }
        });
        if cosmos.is_some() && dynamodb.is_some() {
            problems.push("CosmosDBConnection and DynamoDBTablePrefix are both set: choose one store".into());
        }
        let key_retention = match settings.get("OrderflowIdempotencyRetention").map(|v| humantime::parse_duration(&v)) {
            Some(Ok(retention)) if retention >= Duration::from_secs(1) => retention,
            Some(_) => {
                problems.push("OrderflowIdempotencyRetention: must be a duration such as 7d or 12h".into());
                DEFAULT_KEY_RETENTION
            }
            None => DEFAULT_KEY_RETENTION,
        };
        let feed_start = match settings.get("OrderflowFeedStart").as_deref().map(parse_feed_start) {
            Some(Ok(start)) => start,
            Some(Err(problem)) => {
                problems.push(format!("OrderflowFeedStart: {problem}"));
                StartFrom::Now
            }
            None => StartFrom::Now,
        };
        let deadlines = deadline_policy(settings, &mut problems);
        let topic_retention = match settings.get("OrderflowTopicRetention").map(|v| humantime::parse_duration(&v)) {
            Some(Ok(retention)) if retention >= Duration::from_secs(1) => retention,
            Some(_) => {
                problems.push("OrderflowTopicRetention: must be a duration such as 7d or 12h".into());
                DEFAULT_TOPIC_AGE
            }
            None => DEFAULT_TOPIC_AGE,
        };
        let topic_records = match settings.get("OrderflowTopicRetentionRecords").map(|v| v.trim().parse::<u64>()) {
            Some(Ok(records)) if records > 0 => records,
            Some(_) => {
                problems.push("OrderflowTopicRetentionRecords: must be a positive number".into());
                DEFAULT_TOPIC_RECORDS
            }
            None => DEFAULT_TOPIC_RECORDS,
        };
        // In the cloud archiving costs writes that the storage it saves pays
        // back only after months (docs/cost.md): opt in there.
        let in_the_cloud = cosmos.is_some() || dynamodb.is_some();
        let archive_default = if in_the_cloud { None } else { Some(DEFAULT_ARCHIVE_CLOSED_AFTER) };
        let archive_closed_after = optional_duration(
            settings,
            &mut problems,
            "OrderflowArchiveClosedAfter",
            archive_default,
            Duration::from_secs(1)..=MAX_ARCHIVE_CLOSED_AFTER,
        );
        let metrics_public = match settings.get("OrderflowMetricsPublic").map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                problems.push(format!("OrderflowMetricsPublic: {v:?} is neither true nor false"));
                true
            }
        };
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "));
        }
        let instance = settings.get("OrderflowInstanceName").unwrap_or_else(|| default_instance(&data_dir));
        Ok(Config {
            data_dir,
            instance,
            listen,
            api,
            kafka,
            cosmos,
            dynamodb,
            key_retention,
            feed_start,
            deadlines,
            topic_retention,
            topic_records,
            archive_closed_after,
            metrics_public,
        })
    }
}

/// Orders closed this long ago are archived, on the embedded store, unless
/// configured otherwise.
const DEFAULT_ARCHIVE_CLOSED_AFTER: Duration = Duration::from_secs(90 * 24 * 3600);
const MAX_ARCHIVE_CLOSED_AFTER: Duration = Duration::from_secs(3660 * 24 * 3600);

/// The longest deadline: a year and a day.
const MAX_DEADLINE: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration setting that may be `off` (`None`), within `bounds`; not set,
/// it is `default`.
fn optional_duration(
    settings: &Settings,
    problems: &mut Vec<String>,
    setting: &str,
    default: Option<Duration>,
    bounds: std::ops::RangeInclusive<Duration>,
) -> Option<Duration> {
    match settings.get(setting) {
        None => default,
        Some(text) if text.trim().eq_ignore_ascii_case("off") => None,
        Some(text) => match humantime::parse_duration(text.trim()) {
            Ok(after) if bounds.contains(&after) => Some(after),
            _ => {
                let (from, to) = (show_duration(*bounds.start()), show_duration(*bounds.end()));
                problems.push(format!("{setting}: {text:?} is neither a duration from {from} to {to} nor off"));
                default
            }
        },
    }
}

/// The deadline settings; each one not set keeps the domain's default.
fn deadline_policy(settings: &Settings, problems: &mut Vec<String>) -> DeadlinePolicy {
    let bounds = Duration::from_secs(1)..=MAX_DEADLINE;
    let mut duration = |setting: &str, default: Option<Duration>| {
        optional_duration(settings, problems, setting, default, bounds.clone())
    };
    let defaults = DeadlinePolicy::default();
    let payment = duration("OrderflowPaymentDeadline", defaults.payment);
    let backorder_after = duration("OrderflowBackorderDeadline", defaults.backorder.map(|(after, _)| after));
    let delivery = duration("OrderflowDeliveryDeadline", defaults.delivery);
    let action = match settings.get("OrderflowBackorderAction").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("cancel") => BackorderAction::Cancel,
        Some("notify") => BackorderAction::Notify,
        Some(other) => {
            problems.push(format!("OrderflowBackorderAction: {other:?} is neither cancel nor notify"));
            BackorderAction::Cancel
        }
    };
    DeadlinePolicy { payment, backorder: backorder_after.map(|after| (after, action)), delivery }
}

/// Whole days as days (`90d`, where humantime would say `2months 29days
/// 13h 30m`), anything else as humantime says it.
fn show_duration(duration: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    match duration.as_secs() {
        secs if secs > 0 && secs.is_multiple_of(DAY) && duration.subsec_nanos() == 0 => format!("{}d", secs / DAY),
        _ => humantime::format_duration(duration).to_string(),
    }
}

fn show_optional(after: Option<Duration>) -> String {
    after.map_or_else(|| "off".into(), show_duration)
}

/// `now`, `beginning`, or an RFC 3339 time.
fn parse_feed_start(text: &str) -> Result<StartFrom, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "now" => Ok(StartFrom::Now),
        "beginning" => Ok(StartFrom::Beginning),
        _ => chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|time| StartFrom::Time(time.to_utc()))
            .map_err(|_| format!("{text:?} is neither now, beginning nor an RFC 3339 time")),
    }
}

fn show_feed_start(start: StartFrom) -> String {
    match start {
        StartFrom::Now => "now".into(),
        StartFrom::Beginning => "beginning".into(),
        StartFrom::Time(time) => time.to_rfc3339(),
    }
}

fn default_instance(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{host}:{}", dir.display())
}

/// A lease's life in seconds from `setting`, 60 by default.
fn lease_seconds(settings: &Settings, setting: &str, problems: &mut Vec<String>) -> u64 {
    match settings.get(setting).map(|v| v.parse::<u64>()) {
        Some(Ok(seconds)) if seconds > 0 => seconds,
        Some(_) => {
            problems.push(format!("{setting}: must be a positive number of seconds"));
            60
        }
        None => 60,
    }
}

fn kafka_config(brokers: String, settings: &Settings, problems: &mut Vec<String>) -> KafkaConfig {
    let mut kafka = KafkaConfig::new(brokers);
    if let Some(protocol) = settings.get("KafkaProtocol") {
        kafka.protocol = protocol;
    }
    kafka.authentication_mode = settings.get("KafkaAuthenticationMode");
    kafka.username = settings.get("KafkaUsername");
    kafka.password = settings.get("KafkaPassword");
    kafka.ssl_ca_location = settings.get("KafkaSslCaLocation");
    if let Some(group) = settings.get("KafkaConsumerGroup") {
        kafka.consumer_group = group;
    }
    match settings.get("KafkaPartitions").map(|p| p.parse::<i32>()) {
        Some(Ok(partitions)) if partitions > 0 => kafka.partitions = partitions,
        Some(_) => problems.push("KafkaPartitions: must be a positive number".into()),
        None => {}
    }
    kafka.topic_names = topics::ALL
        .iter()
        .filter_map(|topic| settings.get(topic.setting).map(|name| (topic.name.to_string(), name)))
        .collect::<HashMap<_, _>>();
    if let Err(error) = kafka.client_config() {
        problems.push(error.to_string());
    }
    kafka
}

impl Config {
    /// Every setting with its effective value and where the value comes
    /// from, for `orderflow config show`. Secrets are masked here, where
    /// each value is made: the account key, the Kafka password, API keys.
    pub fn show(&self, flags: &[&str], settings: &Settings) -> Vec<(String, String, &'static str)> {
        let mut rows = vec![
            ("OrderflowDataDir", self.data_dir.display().to_string()),
            ("OrderflowListen", self.listen.to_string()),
            ("OrderflowInstanceName", self.instance.clone()),
            ("OrderflowMaxBodyBytes", self.api.max_body_bytes.to_string()),
            ("OrderflowApiKeys", format!("{} key(s)", self.api.api_keys.len())),
            ("OrderflowMetricsPublic", self.metrics_public.to_string()),
            ("OrderflowIdempotencyRetention", show_duration(self.key_retention)),
            ("OrderflowFeedStart", show_feed_start(self.feed_start)),
            ("OrderflowPaymentDeadline", show_optional(self.deadlines.payment)),
            ("OrderflowBackorderDeadline", show_optional(self.deadlines.backorder.map(|(after, _)| after))),
            (
                "OrderflowBackorderAction",
                match self.deadlines.backorder {
                    Some((_, BackorderAction::Notify)) => "notify".into(),
                    _ => "cancel".into(),
                },
            ),
            ("OrderflowDeliveryDeadline", show_optional(self.deadlines.delivery)),
            ("OrderflowTopicRetention", show_duration(self.topic_retention)),
            ("OrderflowTopicRetentionRecords", self.topic_records.to_string()),
            ("OrderflowArchiveClosedAfter", show_optional(self.archive_closed_after)),
        ];
        match &self.cosmos {
            Some(cosmos) => rows.extend([
                match &cosmos.account {
                    CosmosAccount::Key(connection) => ("CosmosDBConnection", format!("{connection:?}")),
                    CosmosAccount::Identity { endpoint, .. } => {
                        ("CosmosDBConnection__accountEndpoint", endpoint.clone())
                    }
                },
                ("CosmosAuth", cosmos.account.auth()),
                ("CosmosDatabase", cosmos.database.clone()),
                ("CosmosRegion", cosmos.region.clone()),
                ("CosmosLeaseSeconds", cosmos.lease_ttl.as_secs().to_string()),
            ]),
            None => rows.push(("CosmosDBConnection", "not set".into())),
        }
        match &self.dynamodb {
            Some(dynamodb) => rows.extend([
                ("DynamoDBTablePrefix", dynamodb.table_prefix.clone()),
                ("DynamoDBLeaseSeconds", dynamodb.lease_ttl.as_secs().to_string()),
            ]),
            None if self.cosmos.is_none() => rows.push(("DynamoDBTablePrefix", "not set: the embedded store".into())),
            None => rows.push(("DynamoDBTablePrefix", "not set".into())),
        }
        match &self.kafka {
            Some(kafka) => {
                rows.extend([
                    ("KafkaBrokerList", kafka.brokers.clone()),
                    ("KafkaProtocol", kafka.protocol.clone()),
                    ("KafkaAuthenticationMode", kafka.authentication_mode.clone().unwrap_or_default()),
                    ("KafkaUsername", kafka.username.clone().unwrap_or_default()),
                    ("KafkaPassword", kafka.password.as_ref().map(|_| "*****".to_string()).unwrap_or_default()),
                    ("KafkaConsumerGroup", kafka.consumer_group.clone()),
                    ("KafkaPartitions", kafka.partitions.to_string()),
                ]);
                rows.extend(topics::ALL.iter().map(|topic| (topic.setting, kafka.topic(topic.name))));
            }
            None => rows.push(("KafkaBrokerList", "not set: the embedded topic log".into())),
        }
        rows.into_iter()
            .map(|(setting, value)| {
                let from =
                    if flags.contains(&setting) { "flag" } else { settings.source(setting).unwrap_or("default") };
                (setting.to_string(), value, from)
            })
            .collect()
    }
}
