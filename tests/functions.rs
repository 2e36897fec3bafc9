//! The Azure Functions custom handler, started as the Functions host starts
//! it (port in `FUNCTIONS_CUSTOMHANDLER_PORT`, app settings in the
//! environment, readiness polled on `GET /`) and driven with invocations in
//! the host's real encodings: forwarded HTTP requests, Kafka trigger batches
//! (string-encoded, twice, with base64 header values) and Cosmos DB trigger
//! batches (the JSON text of the changed documents, tips among them). This
//! test plays the host: it reads the embedded store's change feed and
//! delivers it to the three change-feed functions.

mod support;

use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{word_of_first_line, BIN};
use tempfile::TempDir;

struct Host {
    handler: Child,
    base: String,
    dir: TempDir,
    client: reqwest::Client,
    /// The change feed delivered so far (the trigger's lease).
    delivered: i64,
}

impl Host {
    fn start() -> Host {
        Host::start_with(&[])
    }

    /// The handler with more app settings.
    fn start_with(settings: &[(&str, &str)]) -> Host {
        let dir = TempDir::new().expect("temp dir");
        let port = free_port();
        let mut handler = Command::new(BIN)
            .arg("functions")
            .current_dir(dir.path())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", uuid::Uuid::new_v4().to_string())
            .env("OrderflowDataDir", dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the handler");
        let base = word_of_first_line(&mut handler, |word| word.starts_with("http://").then(|| word.to_string()));
        assert_eq!(base, format!("http://127.0.0.1:{port}"), "it listens where the host said");
        Host { handler, base, dir, client: reqwest::Client::new(), delivered: 0 }
    }

    /// A request as `orders-api` forwards it (`enableForwardingHttpRequest`).
    async fn http(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the handler answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An invocation of a non-HTTP function, as the host sends it.
    async fn invoke(&self, function: &str, data: Value) -> (StatusCode, Value) {
        self.invoke_raw(function, json!({"Data": data, "Metadata": metadata(function)}).to_string()).await
    }

    async fn invoke_raw(&self, function: &str, body: String) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/{function}", self.base))
            .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
            .header("X-Azure-Functions-HostVersion", "4.1037.0")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the handler answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// What the Cosmos DB trigger would deliver next: the JSON text of the
    /// documents changed since the last call, each stream's tip after its
    /// events, with the service's system properties.
    fn next_documents(&mut self) -> (Value, usize) {
        let path = self.dir.path().join("data").join("orderflow.db");
        let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store");
        let mut query = db
            .prepare(
                "SELECT seq, stream_id, idx, event_id, type, data, time, correlation_id, causation_id, message_id
                 FROM events WHERE seq > ?1 ORDER BY seq",
            )
            .expect("query");
        let rows: Vec<(i64, Value)> = query
            .query_map([self.delivered], |row| {
                let data: String = row.get(5)?;
                let index: i64 = row.get(2)?;
                Ok((
                    row.get(0)?,
                    json!({
                        "id": index.to_string(), "streamId": row.get::<_, String>(1)?, "index": index,
                        "eventId": row.get::<_, String>(3)?, "type": row.get::<_, String>(4)?,
                        "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
                        "time": row.get::<_, String>(6)?, "correlationId": row.get::<_, String>(7)?,
                        "causationId": row.get::<_, String>(8)?, "messageId": row.get::<_, String>(9)?,
                    }),
                ))
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        let events = rows.len();
        let mut documents = Vec::new();
        for (seq, mut event) in rows {
            self.delivered = seq;
            let system =
                json!({"_rid": format!("rid{seq}"), "_etag": format!("\"{seq}\""), "_ts": 1764000000, "_lsn": seq});
            if let (Some(event), Some(system)) = (event.as_object_mut(), system.as_object()) {
                event.extend(system.clone());
            }
            let tip = json!({"id": "tip", "streamId": event["streamId"], "kind": "tip", "version": event["index"].as_i64().unwrap_or(0) + 1, "state": {}, "keys": [], "_lsn": seq});
            documents.push(event);
            documents.push(tip);
        }
        (Value::String(Value::Array(documents).to_string()), events)
    }

    /// Delivers the change feed to the three functions until it is quiet,
    /// as the host's triggers would; returns what publish-events output.
    async fn run_change_feed(&mut self) -> Vec<(String, Value)> {
        let mut published = Vec::new();
        loop {
            let (documents, events) = self.next_documents();
            if events == 0 {
                return published;
            }
            for function in ["project-snapshots", "publish-events", "fulfillment"] {
                let (status, answer) = self.invoke(function, json!({"documents": documents})).await;
                assert_eq!(status, 200, "{function}: {answer}");
                for (binding, elements) in answer["Outputs"].as_object().into_iter().flatten() {
                    for element in elements.as_array().into_iter().flatten() {
                        published.push((binding.clone(), element.clone()));
                    }
                }
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.handler.kill();
        let _ = self.handler.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port()
}

fn metadata(function: &str) -> Value {
    json!({"sys": {"MethodName": function, "UtcNow": "2026-11-25T10:00:00Z", "RandGuid": uuid::Uuid::new_v4()}})
}

/// A Kafka record as `KafkaEventData` with `dataType: string`: the value as
/// text, header values in base64, the whole serialized to a string.
fn kafka_event_data(topic: &str, offset: i64, key: &str, value: &str, headers: &[(&str, &str)]) -> Value {
    let base64 = base64::engine::general_purpose::STANDARD;
    let headers: Vec<Value> =
        headers.iter().map(|(name, value)| json!({"Key": name, "Value": base64.encode(value)})).collect();
    let data = json!({
        "Key": key, "Offset": offset, "Partition": 0, "Topic": topic, "Timestamp": "2026-11-25T10:00:00+00:00",
        "Value": value, "Headers": headers, "LeaderEpoch": 0, "IsPartitionEOF": false,
    });
    Value::String(data.to_string())
}

/// A binary-mode CloudEvent record.
fn cloud_event(offset: i64, id: &str, event_type: &str, data: Value) -> Value {
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "/warehouse"),
        ("ce_type", event_type),
        ("content-type", "application/json"),
    ];
    kafka_event_data("stock", offset, "SKU-K", &data.to_string(), &headers)
}

/// `cardinality: many`: a JSON string holding the array of records.
fn many(records: &[Value]) -> Value {
    Value::String(Value::Array(records.to_vec()).to_string())
}

#[tokio::test]
async fn an_order_goes_through_every_function() {
    let mut host = Host::start();
    let ready = host.client.get(format!("{}/", host.base)).send().await.expect("readiness probe");
    assert!(ready.status().is_success());

    let (status, _) =
        host.http(reqwest::Method::POST, "/api/inventory/SKU-F/restock", Some(json!({"quantity": 5}))).await;
    assert_eq!(status, 200);
    let order = json!({"orderId": "o-f1", "customerId": "c-f", "currency": "EUR", "lines": [{"sku": "SKU-F", "quantity": 2, "unitPriceMinor": 700}]});
    let (status, placed) = host.http(reqwest::Method::POST, "/api/orders", Some(order)).await;
    assert_eq!((status.as_u16(), &placed["status"]), (201, &json!("Placed")));
    let (status, _) = host.http(reqwest::Method::POST, "/api/orders/o-f1/confirm", None).await;
    assert_eq!(status, 200);
    let (status, problem) = host.http(reqwest::Method::POST, "/api/orders", Some(json!({"lines": "none"}))).await;
    assert_eq!((status.as_u16(), &problem["code"]), (400, &json!("malformed-request")), "{problem}");
    // No snapshot yet (projecting is project-snapshots' work, when invoked):
    // the read answers from the order's stream, as the commands left it.
    let (status, order) = host.http(reqwest::Method::GET, "/api/orders/o-f1", None).await;
    assert_eq!((status.as_u16(), &order["status"]), (200, &json!("Confirmed")), "{order}");

    let published = host.run_change_feed().await;

    let (status, order) = host.http(reqwest::Method::GET, "/api/orders/o-f1", None).await;
    assert_eq!((status.as_u16(), &order["status"]), (200, &json!("Reserved")), "{order}");
    let (_, sku) = host.http(reqwest::Method::GET, "/api/inventory/SKU-F", None).await;
    assert_eq!((&sku["onHand"], &sku["reserved"]), (&json!(5), &json!(2)), "{sku}");

    // Downstream CloudEvents, shaped for the kafka output bindings.
    let types = |binding: &str| -> Vec<String> {
        published
            .iter()
            .filter(|(b, _)| b == binding)
            .filter_map(|(_, element)| {
                let headers = element["Headers"].as_array()?;
                let ce_type = headers.iter().find(|h| h["Key"] == "ce_type")?;
                Some(ce_type["Value"].as_str()?.to_string())
            })
            .collect()
    };
    assert_eq!(
        types("orders"),
        [
            "orderflow.order.placed",
            "orderflow.order.confirmed",
            "orderflow.order.linereserved",
            "orderflow.order.reserved"
        ]
    );
    assert!(types("inventory").contains(&"orderflow.inventory.stockreserved".to_string()), "{:?}", types("inventory"));
    let placed = published.iter().find(|(b, _)| b == "orders").map(|(_, e)| e).expect("a message");
    assert_eq!(placed["Key"], "o-f1");
    let value: Value = serde_json::from_str(placed["Value"].as_str().unwrap_or_default()).expect("the value is JSON");
    assert_eq!(value["lines"][0]["sku"], "SKU-F", "{value}");
    let subject = placed["Headers"].as_array().and_then(|h| h.iter().find(|h| h["Key"] == "ce_subject")).cloned();
    assert_eq!(subject.map(|h| h["Value"].clone()), Some(json!("Order-o-f1")));
}

#[tokio::test]
async fn the_deadlines_timer_function_cancels_an_unpaid_order_gives_its_stock_back_and_archives_it() {
    let mut host = Host::start_with(&[("OrderflowPaymentDeadline", "1s"), ("OrderflowArchiveClosedAfter", "1s")]);
    host.http(reqwest::Method::POST, "/api/inventory/SKU-T/restock", Some(json!({"quantity": 5}))).await;
    let order = json!({"orderId": "o-t", "customerId": "c", "currency": "EUR", "lines": [{"sku": "SKU-T", "quantity": 2, "unitPriceMinor": 700}]});
    host.http(reqwest::Method::POST, "/api/orders", Some(order)).await;
    host.http(reqwest::Method::POST, "/api/orders/o-t/confirm", None).await;
    host.run_change_feed().await;
    let (_, order) = host.http(reqwest::Method::GET, "/api/orders/o-t", None).await;
    assert_eq!(order["status"], "Reserved", "{order}");

    // The timer trigger's invocation, as the host sends it, until the
    // deadline (one second after the reservation) has passed.
    let timer = json!({"timer": {
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": {"Last": "2026-11-25T10:00:00Z", "Next": "2026-11-25T10:01:00Z", "LastUpdated": "2026-11-25T10:00:00Z"},
        "IsPastDue": false
    }});
    let started = std::time::Instant::now();
    loop {
        let (status, answer) = host.invoke("deadlines", timer.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let log = answer["Logs"][0].as_str().unwrap_or_default().to_string();
        if log.starts_with("deadlines: 1 passed (1 changed their order)") {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "never passed: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    host.run_change_feed().await;
    let (_, order) = host.http(reqwest::Method::GET, "/api/orders/o-t", None).await;
    assert_eq!((&order["status"], &order["cancelReason"]), (&json!("Cancelled"), &json!("payment-timeout")), "{order}");
    let (_, sku) = host.http(reqwest::Method::GET, "/api/inventory/SKU-T", None).await;
    assert_eq!((&sku["onHand"], &sku["reserved"]), (&json!(5), &json!(0)), "{sku}");
    let (_, again) = host.invoke("deadlines", timer.clone()).await;
    assert!(again["Logs"][0].as_str().is_some_and(|log| log.starts_with("deadlines: 0 passed")), "{again}");

    // Closed for over a second (`OrderflowArchiveClosedAfter`): a run of the
    // timer archives the order, whose history reads the same.
    let (_, history) = host.http(reqwest::Method::GET, "/api/orders/o-t/events", None).await;
    loop {
        let (_, answer) = host.invoke("deadlines", timer.clone()).await;
        let log = answer["Logs"][0].as_str().unwrap_or_default().to_string();
        if log.contains("archive: 1 closed order(s), 4 event(s) moved") {
            break;
        }
        assert!(log.contains("archive: 0 closed order(s)"), "{log}");
        assert!(started.elapsed() < std::time::Duration::from_secs(40), "never archived: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, after) = host.http(reqwest::Method::GET, "/api/orders/o-t/events", None).await;
    assert_eq!(after, history);
}

/// The host starts the handler, probes `GET /` and gives up on an app
/// that does not answer in time: the handler answers at once, whatever its
/// store does, and holds invocations until the store is there.
#[tokio::test]
async fn the_handler_answers_the_host_before_its_store_is_reachable() {
    let port = free_port();
    let connection = format!("AccountEndpoint=http://127.0.0.1:{port}/;AccountKey=ZW11bGF0b3I=;");
    let settings = [("CosmosDBConnection", connection.as_str()), ("CosmosDatabase", "orderflow")];
    let host = Host::start_with(&settings);
    let probe = host.client.get(format!("{}/", host.base)).send().await.expect("the readiness probe is answered");
    assert!(probe.status().is_success(), "{}", probe.status());

    // A request while nothing listens on the account's port waits…
    let restock = tokio::spawn({
        let request =
            host.client.post(format!("{}/api/inventory/SKU-LATE/restock", host.base)).json(&json!({"quantity": 3}));
        async move { request.send().await }
    });
    // …until the account is there (a dev emulator on that port), and is
    // then applied.
    let mut emulator = Command::new(BIN)
        .args(["dev", "cosmos-emulator", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the dev emulator");
    word_of_first_line(&mut emulator, |word| word.strip_prefix("CosmosDBConnection=").map(String::from));
    let init = Command::new(BIN).arg("init").envs(settings).output().expect("orderflow init");
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    let answer = restock.await.expect("the request task").expect("the held request is answered");
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert_eq!((status.as_u16(), &body["version"]), (200, &json!(1)), "{body}");
    let (status, history) = host.http(reqwest::Method::GET, "/api/inventory/SKU-LATE/events", None).await;
    let _ = emulator.kill();
    let _ = emulator.wait();
    assert_eq!(status, 200, "{history}");
    assert!(history.to_string().contains("Restocked"), "the restock is in the SKU's history: {history}");
}

#[tokio::test]
async fn kafka_batches_are_applied_once_and_bad_records_dead_lettered() {
    let mut host = Host::start();
    let batch = many(&[
        cloud_event(1, "r-1", "stock.received", json!({"sku": "SKU-K", "quantity": 3})),
        // Structured content mode: the whole CloudEvent in the value.
        kafka_event_data(
            "stock",
            2,
            "SKU-K",
            &json!({"specversion": "1.0", "id": "r-2", "source": "/warehouse", "type": "stock.received", "datacontenttype": "application/json", "data": {"sku": "SKU-K", "quantity": 4}}).to_string(),
            &[("content-type", "application/cloudevents+json")],
        ),
        Value::String("garbage".into()),
        cloud_event(4, "r-4", "stock.exploded", json!({"sku": "SKU-K"})),
        // Outside text is bounded: an id that long never reaches an event.
        cloud_event(5, &"i".repeat(257), "stock.received", json!({"sku": "SKU-K", "quantity": 9})),
    ]);
    for round in ["first delivery", "redelivery"] {
        let (status, answer) = host.invoke("ingest-stock", json!({"events": batch})).await;
        assert_eq!(status, 200, "{round}: {answer}");
        let dead_letters = answer["Outputs"]["deadletter"].as_array().cloned().unwrap_or_default();
        let mut kinds: Vec<String> = dead_letters
            .iter()
            .map(|d| serde_json::from_str::<Value>(d["Value"].as_str().unwrap_or_default()).unwrap_or_default())
            .filter_map(|letter| letter["kind"].as_str().map(String::from))
            .collect();
        // Partitions are applied side by side: their dead letters come in any order.
        kinds.sort();
        assert_eq!(kinds, ["invalid-data", "undecodable", "unknown-type"], "{round}: {answer}");
        let expected = if round == "first delivery" { "2 applied, 0 duplicates" } else { "0 applied, 2 duplicates" };
        assert!(answer["Logs"][0].as_str().is_some_and(|log| log.contains(expected)), "{round}: {answer}");
    }

    // The docs' single encoding (an array, not its text), an empty batch.
    let single = json!([cloud_event(6, "r-6", "stock.received", json!({"sku": "SKU-K", "quantity": 1}))]);
    assert_eq!(host.invoke("ingest-stock", json!({"events": single})).await.0, 200);
    let (status, answer) = host.invoke("ingest-stock", json!({"events": "[]"})).await;
    assert_eq!((status.as_u16(), &answer["Outputs"]), (200, &json!({})));

    host.run_change_feed().await;
    let (_, sku) = host.http(reqwest::Method::GET, "/api/inventory/SKU-K", None).await;
    assert_eq!(sku["onHand"], 8, "3 + 4 + 1, each once: {sku}");

    // An invocation that is not even an envelope is kept, as one dead letter.
    let (status, answer) = host.invoke_raw("ingest-payments", "{not json".into()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["Outputs"]["deadletter"].as_array().map(Vec::len), Some(1), "{answer}");
    // A binding the handler does not know is a configuration error: retried.
    assert_eq!(host.invoke("ingest-payments", json!({"records": many(&[])})).await.0, 500);
}

#[tokio::test]
async fn change_feed_batches_skip_tips_and_retry_what_cannot_be_read() {
    let host = Host::start();
    let tips_only = json!([{"id": "tip", "streamId": "Order-x", "kind": "tip", "version": 3, "state": {}, "_lsn": 9}]);
    let (status, answer) = host.invoke("publish-events", json!({"documents": tips_only.to_string()})).await;
    assert_eq!((status.as_u16(), &answer["Outputs"]), (200, &json!({})), "{answer}");
    assert_eq!(host.invoke("project-snapshots", json!({"documents": "[]"})).await.0, 200);
    // A retried invocation (the host's retry policy) says so in its logs.
    let retried =
        json!({"Data": {"documents": "[]"}, "Metadata": {"RetryContext": {"RetryCount": 2, "MaxRetryCount": -1}}});
    let (status, answer) = host.invoke_raw("project-snapshots", retried.to_string()).await;
    assert_eq!(status, 200);
    assert!(answer["Logs"][0].as_str().is_some_and(|log| log.ends_with("(retry 2)")), "{answer}");

    // Documents of our own store that cannot be read: non-2xx, so that the
    // host retries (its retry policy holds the lease) instead of skipping.
    let unreadable = json!([{"id": "0", "streamId": "Order-x", "what": "is this"}]);
    assert_eq!(host.invoke("publish-events", json!({"documents": unreadable.to_string()})).await.0, 500);
    assert_eq!(host.invoke("fulfillment", json!({"documents": 42})).await.0, 500);
    assert_eq!(host.invoke_raw("project-snapshots", "nope".into()).await.0, 500);
}

#[tokio::test]
async fn an_event_a_function_cannot_handle_parks_its_stream_and_the_batch_succeeds() {
    let mut host = Host::start();
    let (status, _) = host
        .http(
            reqwest::Method::POST,
            "/api/orders",
            Some(json!({"orderId": "q", "customerId": "c", "currency": "EUR", "lines": [{"sku": "S", "quantity": 1, "unitPriceMinor": 5}]})),
        )
        .await;
    assert_eq!(status, 201);
    // An event this version cannot read (written by a newer one, say) in
    // the same batch as a good one.
    let future = |index: u64| {
        json!({"id": index.to_string(), "streamId": "Order-p", "index": index, "eventId": uuid::Uuid::new_v4(),
               "type": "FromTheFuture", "data": {}, "time": "2026-11-30T10:00:00Z", "correlationId": "c",
               "causationId": "c", "messageId": "m", "_lsn": 100 + index})
    };
    let (documents, _) = host.next_documents();
    let mut batch: Vec<Value> = serde_json::from_str(documents.as_str().unwrap_or_default()).expect("documents");
    batch.insert(0, future(0));
    let (status, answer) =
        host.invoke("project-snapshots", json!({"documents": Value::Array(batch).to_string()})).await;
    assert_eq!(status, 200, "the batch succeeds rather than being retried forever: {answer}");
    let (status, order) = host.http(reqwest::Method::GET, "/api/orders/q", None).await;
    assert_eq!((status.as_u16(), &order["status"]), (200, &json!("Placed")), "the other stream went on");
    // The parked stream's later events wait behind it.
    let later = json!([future(1)]).to_string();
    assert_eq!(host.invoke("project-snapshots", json!({"documents": later})).await.0, 200);
    let db = rusqlite::Connection::open(host.dir.path().join("data").join("orderflow.db")).expect("open the store");
    let parked: Vec<String> = db
        .prepare("SELECT parked FROM parked_streams WHERE consumer = 'project-snapshots'")
        .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
        .expect("parked streams");
    assert_eq!(parked.len(), 1, "{parked:?}");
    let parked: Value = serde_json::from_str(&parked[0]).expect("JSON");
    assert_eq!(
        (&parked["streamId"], &parked["fromIndex"], &parked["heldThrough"]),
        (&json!("Order-p"), &json!(0), &json!(1))
    );
}

/// The function folders as the host reads them: v4 extension names, app
/// settings that `local.settings.json` defines, a retry policy on every
/// non-HTTP trigger (without one the host commits a failed batch).
#[test]
fn every_function_json_is_complete_and_names_only_defined_settings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &std::path::Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("JSON")
    };
    let settings = read(&root.join("local.settings.json"));
    let defined = settings["Values"].as_object().expect("Values");
    let host = read(&root.join("host.json"));
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "orderflow");
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);

    let mut functions = Vec::new();
    for entry in std::fs::read_dir(root.join("functions")).expect("functions/") {
        let dir = entry.expect("entry").path();
        let name = dir.file_name().and_then(|n| n.to_str()).expect("a name").to_string();
        let function = read(&dir.join("function.json"));
        let bindings = function["bindings"].as_array().expect("bindings");
        let trigger =
            bindings.iter().find(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger"))).expect("a trigger");
        for binding in bindings {
            for (field, value) in binding.as_object().expect("a binding") {
                assert!(
                    !["collectionName", "connectionStringSetting", "leaseCollectionName"].contains(&field.as_str()),
                    "{name}: v3 name {field}"
                );
                let Some(text) = value.as_str() else { continue };
                let referenced = text.strip_prefix('%').and_then(|t| t.strip_suffix('%'));
                let setting = if field == "connection" { Some(text) } else { referenced };
                if let Some(setting) = setting {
                    assert!(
                        defined.contains_key(setting),
                        "{name}: {field} names {setting}, not in local.settings.json"
                    );
                }
            }
        }
        match trigger["type"].as_str() {
            Some("httpTrigger") => assert!(function.get("retry").is_none()),
            Some("kafkaTrigger") => {
                assert_eq!(
                    (&trigger["cardinality"], &trigger["dataType"], &trigger["name"]),
                    (&json!("many"), &json!("string"), &json!("events")),
                    "{name}"
                );
                assert_eq!(function["retry"]["maxRetryCount"], -1, "{name}");
            }
            Some("cosmosDBTrigger") => {
                assert_eq!(
                    (&trigger["leaseContainerPrefix"], &trigger["name"]),
                    (&json!(format!("{name}-")), &json!("documents")),
                    "{name}"
                );
                assert_eq!(function["retry"]["maxRetryCount"], -1, "{name}");
                // Effects beyond the store are never done again for old
                // history when a trigger starts without leases.
                let from_beginning = name == "project-snapshots";
                assert_eq!(trigger["startFromBeginning"], json!(from_beginning), "{name}");
            }
            Some("timerTrigger") => {
                // NCRONTAB with seconds, from a setting; one instance at a time.
                assert_eq!(trigger["schedule"], "%OrderflowDeadlinesSchedule%", "{name}");
                let schedule = defined["OrderflowDeadlinesSchedule"].as_str().unwrap_or_default();
                assert_eq!(schedule.split_whitespace().count(), 6, "{schedule}");
                assert_ne!(trigger["useMonitor"], false, "{name}");
            }
            other => panic!("{name}: unexpected trigger {other:?}"),
        }
        functions.push(name);
    }
    functions.sort();
    assert_eq!(
        functions,
        [
            "deadlines",
            "fulfillment",
            "ingest-payments",
            "ingest-stock",
            "ingest-warehouse",
            "orders-api",
            "project-snapshots",
            "publish-events"
        ]
    );
}
