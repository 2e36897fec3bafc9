//! Kafka end to end, against the real broker that `scripts/test` starts:
//! ingestion of every back-end event type, dead letters, redelivery, restarts
//! of the consumer and of the broker, and the downstream topics.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orderflow_kafka::reader::{read_topic, ReadOptions};
use orderflow_kafka::{KafkaConfig, KafkaProducer};
use orderflow_pipeline::ports::{Message, MessageProducer};
use orderflow_pipeline::topics;
use serde_json::{json, Value};
use support::{until_async, Server};
use tempfile::TempDir;

fn broker() -> String {
    std::env::var("ORDERFLOW_TEST_KAFKA")
        .expect("ORDERFLOW_TEST_KAFKA is not set: run the tests with scripts/test, which starts a Kafka broker")
}

/// Unique topics and consumer group for one test (topics cannot be deleted
/// on the test broker, so tests never share them).
struct Topics {
    prefix: String,
    brokers: String,
}

impl Topics {
    fn new(brokers: String) -> Topics {
        Topics { prefix: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]), brokers }
    }

    fn physical(&self, logical: &str) -> String {
        format!("{}.{logical}", self.prefix)
    }

    fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![
            ("KafkaBrokerList".to_string(), self.brokers.clone()),
            ("KafkaConsumerGroup".to_string(), format!("{}-group", self.prefix)),
            ("KafkaPartitions".to_string(), "3".to_string()),
        ];
        settings.extend(topics::ALL.iter().map(|topic| (topic.setting.to_string(), self.physical(topic.name))));
        settings
    }

    fn config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.brokers.clone());
        config.topic_names = topics::ALL.iter().map(|t| (t.name.to_string(), self.physical(t.name))).collect();
        config.partitions = 3;
        config
    }

    fn serve(&self, data_dir: &Path) -> Server {
        let settings = self.settings();
        let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_with(data_dir, &env)
    }

    /// Everything on a logical topic, as CloudEvents JSON (or raw).
    async fn read(&self, logical: &str) -> Vec<Value> {
        self.try_read(logical).await.expect("read the topic")
    }

    /// Every record of the topic as structured CloudEvent JSON, or why the
    /// broker could not be read (right after it restarted, say).
    async fn try_read(&self, logical: &str) -> Result<Vec<Value>, String> {
        let mut records = Vec::new();
        let options = ReadOptions { from_beginning: true, follow: false, count: None };
        read_topic(&self.config(), logical, options, |record| {
            let event = orderflow_pipeline::cloudevents::from_message(&record.message.headers, &record.message.value);
            records.push(match event {
                Ok(event) => orderflow_pipeline::cloudevents::to_structured_json(&event),
                Err(_) => json!({"raw": String::from_utf8_lossy(&record.message.value)}),
            });
            true
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(records)
    }
}

/// A CloudEvent in binary content mode, keyed by `key`.
fn binary(topic: &str, key: &str, id: &str, event_type: &str, data: Value) -> Message {
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "/backend"),
        ("ce_type", event_type),
        ("content-type", "application/json"),
    ];
    Message {
        topic: topic.into(),
        key: Some(key.into()),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
        value: data.to_string().into_bytes(),
    }
}

/// A CloudEvent in structured content mode.
fn structured(topic: &str, key: &str, id: &str, event_type: &str, data: Value) -> Message {
    let event = json!({"specversion": "1.0", "id": id, "source": "/backend", "type": event_type, "data": data});
    Message {
        topic: topic.into(),
        key: Some(key.into()),
        headers: vec![("content-type".into(), b"application/cloudevents+json".to_vec())],
        value: event.to_string().into_bytes(),
    }
}

async fn produce(topics: &Topics, messages: Vec<Message>) {
    let producer = KafkaProducer::new(&topics.config()).expect("producer");
    producer.send(messages).await.expect("produce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_move_through_their_lifecycle_with_backend_events_from_kafka() {
    let topics = Topics::new(broker());
    let dir = TempDir::new().expect("temp dir");
    let server = topics.serve(&dir.path().join("data"));

    produce(&topics, vec![binary("stock", "MUG", "st-1", "stock.received", json!({"sku": "MUG", "quantity": 5}))])
        .await;
    server.eventually("/api/inventory/MUG", |s| s["onHand"] == 5).await;
    server.place("k-1", &[("MUG", 2, 500)]).await;
    server.place("k-2", &[("MUG", 1, 500)]).await;
    server.post_empty("/api/orders/k-1/confirm").await;
    server.order_status("k-1", "Reserved").await;

    produce(
        &topics,
        vec![
            structured(
                "payments",
                "k-1",
                "pay-1",
                "payment.authorized",
                json!({"orderId": "k-1", "paymentId": "p-1", "amountMinor": 1000, "currency": "EUR"}),
            ),
            binary(
                "payments",
                "k-2",
                "pay-2",
                "payment.failed",
                json!({"orderId": "k-2", "paymentId": "p-2", "reason": "card declined"}),
            ),
            binary("stock", "MUG", "st-2", "stock.adjusted", json!({"sku": "MUG", "delta": -1, "reason": "broken"})),
        ],
    )
    .await;
    server.order_status("k-1", "ReadyToShip").await;
    let failed = server.eventually("/api/orders/k-2", |o| !o["paymentFailure"].is_null()).await;
    assert_eq!(failed["paymentFailure"], "card declined");
    server.eventually("/api/inventory/MUG", |s| s["onHand"] == 4).await;

    produce(
        &topics,
        vec![
            binary(
                "warehouse",
                "k-1",
                "sh-1",
                "shipment.dispatched",
                json!({"orderId": "k-1", "shipmentId": "s-1", "carrier": "UPS", "trackingNumber": "1Z"}),
            ),
            binary("warehouse", "k-1", "sh-2", "shipment.delivered", json!({"orderId": "k-1", "shipmentId": "s-1"})),
        ],
    )
    .await;
    server.order_status("k-1", "Delivered").await;

    // Every event of the order is on the downstream topic, in order, keyed
    // and attributed as DESIGN §6 says.
    let history = server.history("k-1").await;
    let published = until_async(
        || async {
            topics
                .read("orderflow.orders")
                .await
                .into_iter()
                .filter(|e| e["subject"] == "Order-k-1")
                .collect::<Vec<_>>()
        },
        |records| records.len() >= history.len(),
    )
    .await;
    let ids: Vec<&Value> = published.iter().map(|e| &e["id"]).collect();
    let expected: Vec<&Value> = history.iter().map(|e| &e["eventId"]).collect();
    assert_eq!(ids, expected, "every event once, in stream order");
    assert_eq!(published[0]["type"], "orderflow.order.placed");
    assert_eq!(published[0]["source"], "/orderflow/orders");
    assert_eq!(published[0]["dataschema"], "urn:orderflow:schema:order.placed:v1", "the version of its shape");
    assert_eq!(history[0]["schemaVersion"], 1);
    assert_eq!(published.last().map(|e| e["type"].clone()), Some(json!("orderflow.order.delivered")));
    let inventory = topics.read("orderflow.inventory").await;
    assert!(inventory.iter().any(|e| e["type"] == "orderflow.inventory.stockshipped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_and_do_not_block_their_partition() {
    let topics = Topics::new(broker());
    let dir = TempDir::new().expect("temp dir");
    let server = topics.serve(&dir.path().join("data"));
    let garbage =
        Message { topic: "stock".into(), key: Some("X".into()), headers: vec![], value: vec![0xff, 0x00, 0x13] };
    produce(
        &topics,
        vec![
            garbage,
            binary("stock", "X", "u-1", "stock.teleported", json!({"sku": "X"})),
            binary("stock", "X", "m-1", "stock.received", json!({"sku": "X"})),
            binary("stock", "X", "w-1", "stock.received", json!({"sku": "X", "quantity": "lots"})),
            binary(
                "payments",
                "none",
                "r-1",
                "payment.authorized",
                json!({"orderId": "none", "paymentId": "p", "amountMinor": 1, "currency": "EUR"}),
            ),
            binary(
                "stock",
                "X",
                "long-1",
                "stock.adjusted",
                json!({"sku": "X", "delta": 1, "reason": "r".repeat(1001)}),
            ),
            // The same bad bytes again, at another offset.
            Message { topic: "stock".into(), key: Some("X".into()), headers: vec![], value: vec![0xff, 0x00, 0x13] },
            binary("stock", "X", "ok-1", "stock.received", json!({"sku": "X", "quantity": 7})),
        ],
    )
    .await;
    // The good message behind the bad ones on the same partition is applied.
    server.eventually("/api/inventory/X", |s| s["onHand"] == 7).await;
    let dead = until_async(|| topics.read("orderflow.deadletter"), |d| d.len() >= 7).await;
    let mut kinds: Vec<&str> = dead.iter().filter_map(|d| d["data"]["kind"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["invalid-data", "invalid-data", "invalid-data", "rejected", "undecodable", "undecodable", "unknown-type"]
    );
    let garbage: Vec<&Value> = dead.iter().filter(|d| d["data"]["kind"] == "undecodable").map(|d| &d["id"]).collect();
    assert_eq!(garbage[0], garbage[1], "the same bad message, the same dead letter id");
    let undecodable = dead.iter().find(|d| d["data"]["kind"] == "undecodable").expect("the garbage");
    assert_eq!(
        (&undecodable["data"]["payload"], &undecodable["data"]["payloadEncoding"]),
        (&json!("/wAT"), &json!("base64"))
    );
    assert_eq!(undecodable["data"]["origin"]["via"], "kafka");
    assert_eq!(undecodable["data"]["origin"]["topic"], topics.physical("stock"));
    assert!(undecodable["data"]["origin"]["offset"].is_i64());
    let unknown = dead.iter().find(|d| d["data"]["kind"] == "unknown-type").expect("the unknown type");
    assert_eq!(unknown["data"]["headers"]["ce_type"], "stock.teleported");

    // The console reads them back from Kafka, and sends one again corrected.
    let listed = server.get("/deadletters.json?kind=invalid-data").await.body;
    let letters = listed["deadLetters"].as_array().cloned().unwrap_or_default();
    assert_eq!((listed["scanned"].as_u64(), letters.len()), (Some(7), 3), "{listed}");
    let long = letters.iter().find(|l| l["preview"].as_str().is_some_and(|p| p.contains("rrrrrrrr"))).expect("long-1");
    assert_eq!(long["origin"]["topic"], topics.physical("stock"));
    let corrected = json!({
        "partition": long["partition"], "offset": long["offset"],
        "payload": json!({"sku": "X", "delta": 1, "reason": "recount"}).to_string(),
    });
    let applied = server.post("/deadletters/reingest", corrected).await;
    assert_eq!(applied.body["outcome"], "applied", "{applied:?}");
    server.eventually("/api/inventory/X", |s| s["onHand"] == 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_delivered_twice_have_one_effect() {
    let topics = Topics::new(broker());
    let dir = TempDir::new().expect("temp dir");
    let server = topics.serve(&dir.path().join("data"));
    let batch: Vec<Message> = (0..20)
        .map(|i| {
            binary(
                "stock",
                &format!("S{}", i % 4),
                &format!("dup-{i}"),
                "stock.received",
                json!({"sku": format!("S{}", i % 4), "quantity": 1}),
            )
        })
        .collect();
    produce(&topics, batch.clone()).await;
    produce(&topics, batch).await;
    // A marker after both copies: once it is applied, both copies were read.
    produce(&topics, vec![binary("stock", "S0", "marker", "stock.received", json!({"sku": "MARK", "quantity": 1}))])
        .await;
    server.eventually("/api/inventory/MARK", |s| s["onHand"] == 1).await;
    for sku in ["S0", "S1", "S2", "S3"] {
        let stock = server.eventually(&format!("/api/inventory/{sku}"), |s| s["onHand"].as_u64() >= Some(5)).await;
        assert_eq!((stock["onHand"].as_u64(), stock["version"].as_u64()), (Some(5), Some(5)), "{sku}");
    }
    // librdkafka's statistics (every 5 s) give the consumer lag per partition.
    let metrics = || async {
        let response = server.client.get(server.url("/metrics")).send().await.expect("metrics");
        response.text().await.unwrap_or_default()
    };
    let text = support::until_async(metrics, |text| text.contains("orderflow_kafka_consumer_lag{")).await;
    assert!(text.contains(&format!("topic=\"{}\"", topics.physical("stock"))), "{text}");
    assert!(text.contains(r#"orderflow_ingested_total{outcome="duplicate"} 20"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_from_its_committed_offsets() {
    let topics = Topics::new(broker());
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = topics.serve(&data);
    let poison =
        Message { topic: "stock".into(), key: Some("R".into()), headers: vec![], value: b"not an event".to_vec() };
    produce(&topics, vec![poison, binary("stock", "R", "r-1", "stock.received", json!({"sku": "R", "quantity": 1}))])
        .await;
    server.eventually("/api/inventory/R", |s| s["onHand"] == 1).await;
    // Offsets are committed within a second of being stored.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.stop().success());

    produce(&topics, vec![binary("stock", "R", "r-2", "stock.received", json!({"sku": "R", "quantity": 2}))]).await;
    let server = topics.serve(&data);
    server.eventually("/api/inventory/R", |s| s["onHand"] == 3).await;
    // The poison message was not read again: it has exactly one dead letter.
    assert_eq!(topics.read("orderflow.deadletter").await.len(), 1);
}

/// A broker of the test's own, to stop and start again.
struct OwnBroker {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl OwnBroker {
    fn start(dir: TempDir, port: u16) -> OwnBroker {
        let tansu = std::env::var("ORDERFLOW_TEST_TANSU").expect("ORDERFLOW_TEST_TANSU: run scripts/test");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine"])
            // Relative to the working directory: tansu reads the path so.
            .arg("sqlite://tansu.db")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnBroker { child, dir, port }
    }

    fn stop(mut self) -> (TempDir, u16) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let (dir, port) = (std::mem::replace(&mut self.dir, TempDir::new().expect("temp dir")), self.port);
        std::mem::forget(self);
        (dir, port)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let broker = OwnBroker::start(TempDir::new().expect("temp dir"), port);
    let topics = Topics::new(format!("127.0.0.1:{port}"));
    let dir = TempDir::new().expect("temp dir");
    let server = topics.serve(&dir.path().join("data"));
    produce(&topics, vec![binary("stock", "B", "b-1", "stock.received", json!({"sku": "B", "quantity": 1}))]).await;
    server.eventually("/api/inventory/B", |s| s["onHand"] == 1).await;

    // The broker goes away; commands still land in the store meanwhile.
    let (broker_dir, port) = broker.stop();
    for i in 0..3 {
        assert_eq!(server.restock("B", 1).await.status, 200, "restock {i} while the broker is down");
    }
    let broker = OwnBroker::start(broker_dir, port);
    produce(&topics, vec![binary("stock", "B", "b-2", "stock.received", json!({"sku": "B", "quantity": 10}))]).await;
    server.eventually("/api/inventory/B", |s| s["onHand"] == 14).await;
    // Every event, including those committed while the broker was down, is
    // published once the broker is back.
    // The broker just restarted: a read may fail until it is ready again.
    let published = until_async(
        || topics.try_read("orderflow.inventory"),
        |records| records.as_ref().is_ok_and(|records| records.len() >= 5),
    )
    .await
    .unwrap_or_default();
    let indexes: Vec<String> = published.iter().filter_map(|e| e["streamindex"].as_str().map(String::from)).collect();
    assert_eq!(indexes, ["0", "1", "2", "3", "4"]);
    drop(broker);
}
