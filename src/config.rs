//! The effective configuration: flags, then environment, then
//! `local.settings.json` (see `settings`), validated in one place. Every
//! problem is reported at once, naming its setting; secrets never appear.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use orderflow_api::ApiConfig;
use orderflow_kafka::KafkaConfig;
use orderflow_store_cosmos::ConnectionString;

use crate::settings::Settings;

pub const DEFAULT_DATA_DIR: &str = ".orderflow";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7071";

/// Settings that name a physical Kafka topic, for each logical topic.
const TOPIC_SETTINGS: [(&str, &str); 6] = [
    ("KafkaTopicPayments", "payments"),
    ("KafkaTopicWarehouse", "warehouse"),
    ("KafkaTopicStock", "stock"),
    ("KafkaTopicOrders", "orderflow.orders"),
    ("KafkaTopicInventory", "orderflow.inventory"),
    ("KafkaTopicDeadletter", "orderflow.deadletter"),
];

/// What flags can set; `None` falls back to the settings.
#[derive(Default)]
pub struct Flags {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub max_body_bytes: Option<usize>,
}

pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub api: ApiConfig,
    /// Set when `KafkaBrokerList` is.
    pub kafka: Option<KafkaConfig>,
    /// Set when `CosmosDBConnection` is.
    pub cosmos: Option<CosmosConfig>,
}

pub struct CosmosConfig {
    pub connection: ConnectionString,
    /// Setting `CosmosDatabase`, default `orderflow`.
    pub database: String,
    /// Setting `CosmosRegion`, the preferred region, default `East US`.
    pub region: String,
}

impl Config {
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
        let cosmos = settings.get("CosmosDBConnection").and_then(|text| match ConnectionString::parse(&text) {
            Ok(connection) => Some(CosmosConfig {
                connection,
                database: settings.get("CosmosDatabase").unwrap_or_else(|| "orderflow".into()),
                region: settings.get("CosmosRegion").unwrap_or_else(|| "East US".into()),
            }),
            Err(problem) => {
                problems.push(format!("CosmosDBConnection: {problem}"));
                None
            }
        });
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "));
        }
        Ok(Config { data_dir, listen, api, kafka, cosmos })
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
    kafka.topic_names = TOPIC_SETTINGS
        .iter()
        .filter_map(|(setting, logical)| settings.get(setting).map(|name| (logical.to_string(), name)))
        .collect::<HashMap<_, _>>();
    if let Err(error) = kafka.client_config() {
        problems.push(error.to_string());
    }
    kafka
}
