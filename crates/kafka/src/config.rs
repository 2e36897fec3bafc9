//! Connection and topic settings, named as Azure Functions' Kafka bindings
//! name them (`protocol`, `authenticationMode`, `username`, `password`).

use std::collections::HashMap;
use std::fmt;

use rdkafka::ClientConfig;

/// How to reach the cluster.
#[derive(Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]` (setting `KafkaBrokerList`).
    pub brokers: String,
    /// `plaintext` (default), `ssl`, `saslPlaintext`, `saslSsl`.
    pub protocol: String,
    /// `plain`, `scramSha256`, `scramSha512` (with a SASL protocol).
    pub authentication_mode: Option<String>,
    pub username: Option<String>,
    /// Never printed: `Debug` masks it.
    pub password: Option<String>,
    /// A CA bundle for TLS, when the system's is not the one.
    pub ssl_ca_location: Option<String>,
    /// The consumer group of ingestion (setting `KafkaConsumerGroup`).
    pub consumer_group: String,
    /// Physical topic names for logical ones (`payments` → `prod.payments`).
    pub topic_names: HashMap<String, String>,
    /// Partitions of topics that `orderflow` creates.
    pub partitions: i32,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("protocol", &self.protocol)
            .field("authentication_mode", &self.authentication_mode)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "*****"))
            .field("consumer_group", &self.consumer_group)
            .field("topic_names", &self.topic_names)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            protocol: "plaintext".into(),
            authentication_mode: None,
            username: None,
            password: None,
            ssl_ca_location: None,
            consumer_group: "orderflow".into(),
            topic_names: HashMap::new(),
            partitions: 6,
        }
    }

    /// The physical name of a logical topic.
    pub fn topic(&self, logical: &str) -> String {
        self.topic_names.get(logical).cloned().unwrap_or_else(|| logical.to_string())
    }

    /// The settings every client (producer, consumer, admin) starts from.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("client.id", "orderflow");
        let protocol = match self.protocol.to_ascii_lowercase().as_str() {
            "" | "plaintext" | "notset" => "plaintext",
            "ssl" => "ssl",
            "saslplaintext" | "sasl_plaintext" => "sasl_plaintext",
            "saslssl" | "sasl_ssl" => "sasl_ssl",
            other => {
                return Err(ConfigError {
                    setting: "KafkaProtocol",
                    problem: format!("{other:?} is not one of plaintext, ssl, saslPlaintext, saslSsl"),
                })
            }
        };
        config.set("security.protocol", protocol);
        if protocol.starts_with("sasl") {
            let mechanism = match self.authentication_mode.as_deref().unwrap_or("plain").to_ascii_lowercase().as_str() {
                "plain" | "notset" => "PLAIN",
                "scramsha256" | "scram-sha-256" => "SCRAM-SHA-256",
                "scramsha512" | "scram-sha-512" => "SCRAM-SHA-512",
                other => {
                    return Err(ConfigError {
                        setting: "KafkaAuthenticationMode",
                        problem: format!("{other:?} is not one of plain, scramSha256, scramSha512"),
                    })
                }
            };
            let (Some(username), Some(password)) = (&self.username, &self.password) else {
                return Err(ConfigError {
                    setting: "KafkaUsername",
                    problem: "SASL needs KafkaUsername and KafkaPassword".into(),
                });
            };
            config.set("sasl.mechanism", mechanism).set("sasl.username", username).set("sasl.password", password);
        }
        if let Some(ca) = &self.ssl_ca_location {
            config.set("ssl.ca.location", ca);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hubs_style_sasl_ssl() {
        let mut config = KafkaConfig::new("ns.servicebus.windows.net:9093");
        config.protocol = "saslSsl".into();
        config.username = Some("$ConnectionString".into());
        config.password = Some("Endpoint=sb://ns/;SharedAccessKey=secret".into());
        let client = config.client_config().expect("valid");
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.mechanism"), Some("PLAIN"));
        assert!(!format!("{config:?}").contains("secret"), "the password is never printed");
    }

    #[test]
    fn refuses_unknown_protocols_and_missing_credentials() {
        let mut config = KafkaConfig::new("b:9092");
        config.protocol = "carrier-pigeon".into();
        assert_eq!(config.client_config().err().map(|e| e.setting), Some("KafkaProtocol"));
        config.protocol = "saslPlaintext".into();
        assert_eq!(config.client_config().err().map(|e| e.setting), Some("KafkaUsername"));
        config.username = Some("u".into());
        config.password = Some("p".into());
        config.authentication_mode = Some("scramSha512".into());
        assert_eq!(
            config.client_config().ok().and_then(|c| c.get("sasl.mechanism").map(String::from)).as_deref(),
            Some("SCRAM-SHA-512")
        );
    }
}
