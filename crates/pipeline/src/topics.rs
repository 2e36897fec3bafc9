//! Every Kafka topic orderflow reads or writes, said once: its logical name
//! (also the physical one unless its setting renames it), the setting, and
//! the Functions host's output binding that writes it.

pub struct Topic {
    /// The logical name, and the physical one unless [`Self::setting`] says otherwise.
    pub name: &'static str,
    /// The setting that names the physical topic.
    pub setting: &'static str,
    /// The `kafka` output binding of the Functions host that writes it
    /// (`functions/*/function.json`), for the topics orderflow writes.
    pub output_binding: Option<&'static str>,
}

pub const PAYMENTS: Topic = Topic { name: "payments", setting: "KafkaTopicPayments", output_binding: None };
pub const WAREHOUSE: Topic = Topic { name: "warehouse", setting: "KafkaTopicWarehouse", output_binding: None };
pub const STOCK: Topic = Topic { name: "stock", setting: "KafkaTopicStock", output_binding: None };
pub const ORDERS: Topic =
    Topic { name: "orderflow.orders", setting: "KafkaTopicOrders", output_binding: Some("orders") };
pub const INVENTORY: Topic =
    Topic { name: "orderflow.inventory", setting: "KafkaTopicInventory", output_binding: Some("inventory") };
pub const DEADLETTER: Topic =
    Topic { name: "orderflow.deadletter", setting: "KafkaTopicDeadletter", output_binding: Some("deadletter") };

/// What back-end systems send: CloudEvents to ingest (any type on any of them).
pub const INGESTION: [&Topic; 3] = [&PAYMENTS, &WAREHOUSE, &STOCK];
/// Every topic, in the order `config show` lists them.
pub const ALL: [&Topic; 6] = [&PAYMENTS, &WAREHOUSE, &STOCK, &ORDERS, &INVENTORY, &DEADLETTER];
