//! The Lambda handlers, run as Lambda runs a custom runtime: the binary named
//! `bootstrap`, the handler in `_HANDLER`, events fetched from the Runtime
//! API (played here by a small server) — fed the real event shapes of
//! `tests/fixtures` (API Gateway v2 HTTP, MSK / self-managed Kafka, an
//! EventBridge schedule), and batches of the records a DynamoDB Stream
//! really holds (read from moto's).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use support::shared_store::{moto, SharedStore};
use support::BIN;
use tempfile::TempDir;
use tokio::sync::{mpsc, Mutex};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/lambda/tests/fixtures");

/// The Lambda Runtime API: hands out queued events, collects the answers.
struct RuntimeApi {
    events: Mutex<mpsc::Receiver<(String, Value)>>,
    answers: mpsc::Sender<(String, Result<Value, Value>)>,
}

struct Lambda {
    queue: mpsc::Sender<(String, Value)>,
    answers: mpsc::Receiver<(String, Result<Value, Value>)>,
    runtime: Child,
    dir: TempDir,
}

impl Lambda {
    async fn start(handler: &str) -> Lambda {
        Lambda::start_on(handler, None).await
    }

    /// The handler over the embedded store in `data` (by default one of its own).
    async fn start_on(handler: &str, data: Option<&std::path::Path>) -> Lambda {
        Lambda::start_with(handler, data, &[]).await
    }

    /// The handler with more settings (another store).
    async fn start_with(handler: &str, data: Option<&std::path::Path>, settings: &[(&str, &str)]) -> Lambda {
        let dir = TempDir::new().expect("temp dir");
        let data = data.map_or_else(|| dir.path().join("data"), std::path::Path::to_path_buf);
        let (queue, events) = mpsc::channel(16);
        let (answered, answers) = mpsc::channel(16);
        let api = Arc::new(RuntimeApi { events: Mutex::new(events), answers: answered });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let bootstrap = dir.path().join("bootstrap");
        std::os::unix::fs::symlink(BIN, &bootstrap).expect("link bootstrap");
        let runtime = Command::new(&bootstrap)
            .current_dir(dir.path())
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("_HANDLER", handler)
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("orderflow-{handler}"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orderflow")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("OrderflowDataDir", &data)
            .env("RUST_LOG", "warn")
            // lambda_http panics on an event it cannot make a request of (caught,
            // answered 400): its backtrace would bury the tests' own output.
            .env("RUST_BACKTRACE", "0")
            .envs(settings.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bootstrap");
        Lambda { queue, answers, runtime, dir }
    }

    /// One invocation: the answer, or the error the function reported.
    async fn invoke(&mut self, event: Value) -> Result<Value, Value> {
        let id = uuid::Uuid::new_v4().to_string();
        self.queue.send((id.clone(), event)).await.expect("queue the event");
        let (answered, answer) = tokio::time::timeout(Duration::from_secs(30), self.answers.recv())
            .await
            .expect("an answer within 30 s")
            .expect("the runtime API is up");
        assert_eq!(answered, id);
        answer
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.runtime.kill();
        let _ = self.runtime.wait();
    }
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> (HeaderMap, String) {
    let (id, event) = api.events.lock().await.recv().await.unwrap_or_default();
    let mut headers = HeaderMap::new();
    let deadline = (chrono_now_ms() + 60_000).to_string();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id.as_str()),
        ("lambda-runtime-deadline-ms", deadline.as_str()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:orderflow"),
        ("lambda-runtime-trace-id", "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c"),
    ] {
        headers.insert(name, value.parse().expect("a header value"));
    }
    (headers, event.to_string())
}

fn chrono_now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
}

async fn response(State(api): State<Arc<RuntimeApi>>, Path(id): Path<String>, body: String) -> &'static str {
    let _ = api.answers.send((id, Ok(serde_json::from_str(&body).unwrap_or(Value::String(body))))).await;
    "{}"
}

async fn error(State(api): State<Arc<RuntimeApi>>, Path(id): Path<String>, body: String) -> &'static str {
    let _ = api.answers.send((id, Err(serde_json::from_str(&body).unwrap_or(Value::String(body))))).await;
    "{}"
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// The API Gateway v2 fixture, asking for `method path` with `body`.
fn http_request(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut request = fixture("lambda-apigw-v2-request.json");
    request["rawPath"] = json!(path);
    request["requestContext"]["http"]["method"] = json!(method);
    request["requestContext"]["http"]["path"] = json!(path);
    if let Some(body) = body {
        request["body"] = json!(body.to_string());
        request["headers"]["content-type"] = json!("application/json");
        request["headers"]["content-length"] = json!(body.to_string().len().to_string());
    }
    request
}

#[tokio::test]
async fn the_http_api_answers_api_gateway_events() {
    let mut lambda = Lambda::start("http").await;
    let unknown = lambda.invoke(fixture("lambda-apigw-v2-request.json")).await.expect("answered");
    assert_eq!(unknown["statusCode"], 404, "GET / is no route: {unknown}");

    let restock = lambda.invoke(http_request("POST", "/api/inventory/SKU-L/restock", Some(json!({"quantity": 3}))));
    let restocked = restock.await.expect("answered");
    assert_eq!(restocked["statusCode"], 200, "{restocked}");
    let order = json!({"orderId": "o-l1", "customerId": "c", "currency": "EUR", "lines": [{"sku": "SKU-L", "quantity": 1, "unitPriceMinor": 100}]});
    let placed = lambda.invoke(http_request("POST", "/api/orders", Some(order))).await.expect("answered");
    assert_eq!(placed["statusCode"], 201, "{placed}");
    let body: Value = serde_json::from_str(placed["body"].as_str().unwrap_or_default()).expect("JSON body");
    assert_eq!(body["status"], "Placed");

    let bad = lambda.invoke(http_request("POST", "/api/orders", Some(json!({"lines": 7})))).await.expect("answered");
    assert_eq!(bad["statusCode"], 400, "{bad}");
    assert_eq!(bad["headers"]["content-type"], "application/problem+json");
    let events = lambda.invoke(http_request("GET", "/api/orders/o-l1/events", None)).await.expect("answered");
    assert_eq!(events["statusCode"], 200);

    // An event no URI can be made of (found by fuzzing) is a bad request, not
    // a failed invocation, and the function goes on answering.
    let mut odd = http_request("GET", "/api/orders/o-l1", None);
    odd["headers"]["host"] = json!("x.execute-api.us-wes}-2.amazonaws.com");
    let refused = lambda.invoke(odd).await.expect("answered, not failed");
    assert_eq!(refused["statusCode"], 400, "{refused}");
    assert_eq!(refused["headers"]["content-type"], "application/problem+json");
    let again = lambda.invoke(http_request("GET", "/api/orders/o-l1/events", None)).await.expect("answered");
    assert_eq!(again["statusCode"], 200);
}

#[tokio::test]
async fn kafka_records_are_applied_once_and_bad_ones_dead_lettered() {
    let mut lambda = Lambda::start("kafka").await;
    // The event source's own sample: not a CloudEvent, so dead-lettered and
    // reported, and the batch succeeds (a failure would redeliver it forever).
    let answer = lambda.invoke(fixture("lambda-kafka-event.json")).await.expect("the batch succeeds");
    assert_eq!(answer["applied"], 0);
    assert_eq!(answer["deadLettered"][0]["itemIdentifier"], "AWSKafkaTopic-0@0", "{answer}");
    assert_eq!(answer["deadLettered"][0]["kind"], "undecodable");

    let base64 = base64::engine::general_purpose::STANDARD;
    let bytes = |text: &str| -> Vec<i8> { text.bytes().map(|b| b as i8).collect() };
    let record = |offset: i64, id: &str, quantity: u32| {
        json!({
            "topic": "stock", "partition": 0, "offset": offset, "timestamp": 1595035749700_i64,
            "timestampType": "CREATE_TIME",
            "key": base64.encode("SKU-M"),
            "value": base64.encode(json!({"sku": "SKU-M", "quantity": quantity}).to_string()),
            "headers": [
                {"ce_specversion": bytes("1.0")}, {"ce_id": bytes(id)}, {"ce_source": bytes("/warehouse")}, {"x-note": bytes("größe")},
                {"ce_type": bytes("stock.received")}, {"content-type": bytes("application/json")},
            ],
        })
    };
    let mut event = fixture("lambda-kafka-event.json");
    event["records"] = json!({"stock-0": [record(7, "m-1", 2), record(8, "m-2", 3)]});
    let first = lambda.invoke(event.clone()).await.expect("applied");
    assert_eq!((&first["applied"], &first["duplicates"]), (&json!(2), &json!(0)), "{first}");
    let again = lambda.invoke(event.clone()).await.expect("redelivered");
    assert_eq!((&again["applied"], &again["duplicates"]), (&json!(0), &json!(2)), "{again}");

    // Outside text is bounded: an id that long is invalid data, never an event.
    event["records"] = json!({"stock-0": [record(9, &"i".repeat(257), 4)]});
    let long = lambda.invoke(event).await.expect("dead-lettered, the batch succeeds");
    assert_eq!((&long["applied"], &long["deadLettered"][0]["kind"]), (&json!(0), &json!("invalid-data")), "{long}");

    let dead_letters = support::topic(&lambda.dir.path().join("data"), "orderflow.deadletter");
    assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
}

#[tokio::test]
async fn a_scheduled_event_passes_the_deadlines_that_are_due() {
    // An order reserved by `serve`, which stops before its payment
    // deadline (3 s) passes: the deadline waits in the store.
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = support::Server::start_with(&data, &[("OrderflowPaymentDeadline", "3s")]);
    server.restock("SKU-L", 4).await;
    server.place("o-l", &[("SKU-L", 2, 100)]).await;
    server.post_empty("/api/orders/o-l/confirm").await;
    server.order_status("o-l", "Reserved").await;
    assert!(server.stop().success());

    let mut lambda = Lambda::start_on("deadlines", Some(&data)).await;
    let started = std::time::Instant::now();
    loop {
        let answer = lambda.invoke(fixture("lambda-eventbridge-scheduled.json")).await.expect("the step runs");
        if answer["passed"] == 1 {
            assert_eq!((&answer["acted"], &answer["leftForLater"]), (&json!(1), &json!(0)), "{answer}");
            break;
        }
        assert_eq!(answer["passed"], 0, "{answer}");
        assert!(started.elapsed() < Duration::from_secs(20), "the deadline never passed: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = lambda.invoke(fixture("lambda-eventbridge-scheduled.json")).await.expect("the step runs");
    assert_eq!(again["passed"], 0, "passed once: {again}");
    drop(lambda);
    // The next `serve` finds the order cancelled and gives its stock back.
    let server = support::Server::start(&data);
    let order = server.order_status("o-l", "Cancelled").await;
    assert_eq!(order["cancelReason"], "payment-timeout");
    server.eventually("/api/inventory/SKU-L", |s| s["reserved"] == 0 && s["available"] == 4).await;
}

/// The records of the events table's stream (moto's, where `store` is), as
/// a DynamoDB Streams event source hands them to a function.
async fn stream_records(store: &SharedStore) -> Vec<Value> {
    use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
    let streams = aws_sdk_dynamodbstreams::Client::new(&store.aws_config());
    let table = format!("{}events", store.setting("DynamoDBTablePrefix"));
    let listed = streams.list_streams().table_name(&table).send().await.expect("list streams");
    let arn = listed.streams()[0].stream_arn().expect("a stream").to_string();
    let described = streams.describe_stream().stream_arn(&arn).send().await.expect("describe");
    let shard = described.stream_description().expect("description").shards()[0].shard_id().expect("shard").to_string();
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator
        .expect("an iterator");
    let records = streams.get_records().shard_iterator(iterator).send().await.expect("records");
    let json = |image: &std::collections::HashMap<String, AttributeValue>| -> Value {
        image
            .iter()
            .filter_map(|(name, value)| match value {
                AttributeValue::S(text) => Some((name.clone(), json!({"S": text}))),
                AttributeValue::N(number) => Some((name.clone(), json!({"N": number}))),
                _ => None,
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    records
        .records()
        .iter()
        .map(|record| {
            let change = record.dynamodb().expect("a change");
            json!({
                "eventID": record.event_id(),
                "eventName": record.event_name().map(|name| name.as_str()),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "Keys": change.keys().map(json),
                    "NewImage": change.new_image().map(json),
                    "SequenceNumber": change.sequence_number(),
                    "SizeBytes": change.size_bytes(),
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": arn,
            })
        })
        .collect()
}

/// The change-feed steps on DynamoDB Streams batches: the HTTP function
/// writes to DynamoDB, and batches of the stream's own records — with a
/// record delivered twice and one that is no event — go to the function
/// that runs `project-snapshots` and `fulfillment` together, as the
/// template deploys it, the way the event source mapping would send them.
#[tokio::test]
async fn the_change_feed_steps_take_dynamodb_stream_batches_and_report_what_is_left() {
    let store = moto();
    let dir = TempDir::new().expect("temp dir");
    let init = store.run(dir.path(), &["init"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let mut http = Lambda::start_with("http", None, &store.env()).await;
    let mut call = async |method: &str, path: &str, body: Option<Value>| -> Value {
        let answer = http.invoke(http_request(method, path, body)).await.expect("answered");
        assert!(answer["statusCode"].as_u64().is_some_and(|status| status < 300), "{path}: {answer}");
        serde_json::from_str(answer["body"].as_str().unwrap_or_default()).expect("a JSON body")
    };
    call("POST", "/api/inventory/SKU-D/restock", Some(json!({"quantity": 10}))).await;
    let order = json!({"orderId": "o-d1", "customerId": "c-d", "currency": "EUR", "lines": [{"sku": "SKU-D", "quantity": 2, "unitPriceMinor": 100}]});
    call("POST", "/api/orders", Some(order)).await;
    call("POST", "/api/orders/o-d1/confirm", None).await;

    let records = stream_records(&store).await;
    let is_event = |record: &&Value, kind: &str| {
        record["dynamodb"]["NewImage"]["e"]["S"].as_str().is_some_and(|e| e.contains(&format!("\"type\":\"{kind}\"")))
    };
    let confirmed = records.iter().position(|r| is_event(&r, "Confirmed")).expect("the Confirmed record");
    let mut poison = records[confirmed].clone();
    poison["dynamodb"]["SequenceNumber"] = json!("poison-1");
    poison["dynamodb"]["NewImage"]["e"] = json!({"S": "{not an event"});
    // Everything up to the confirmation, which comes twice, then a record
    // that is no event, then the rest.
    let batch = |records: &[Value]| json!({"Records": records});
    let mut first = records[..=confirmed].to_vec();
    first.extend([records[confirmed].clone(), poison.clone()]);
    first.extend_from_slice(&records[confirmed + 1..]);

    let mut steps = Lambda::start_with("project-snapshots,fulfillment", None, &store.env()).await;
    let answer = steps.invoke(batch(&first)).await.expect("answered");
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "poison-1"}]}), "retried from the poison");
    // Lambda retries from it: still reported; once its retries are spent it
    // goes to the on-failure destination and the rest comes.
    let from_poison = [&[poison][..], &records[confirmed + 1..]].concat();
    let again = steps.invoke(batch(&from_poison)).await.expect("answered");
    assert_eq!(again["batchItemFailures"][0]["itemIdentifier"], "poison-1");
    let rest = steps.invoke(batch(&records[confirmed + 1..])).await.expect("answered");
    assert_eq!(rest, json!({"batchItemFailures": []}));
    // The order projected from the same batches.
    let listed = call("GET", "/api/customers/c-d/orders", None).await;
    assert_eq!(listed["orders"][0]["orderId"], "o-d1", "{listed}");
    assert_eq!(listed["orders"][0]["version"], 2, "projected from the batch: {listed}");

    // The reservation's records are on the stream now: through the same
    // function, batch after batch, fulfillment records the reservation on
    // the order and the projector shows it.
    let mut seen = records.len();
    for _ in 0..2 {
        let all = stream_records(&store).await;
        assert_eq!(steps.invoke(batch(&all[seen..])).await.expect("answered"), json!({"batchItemFailures": []}));
        seen = all.len();
    }
    // Confirmed twice (and its batch retried), reserved once.
    let sku = call("GET", "/api/inventory/SKU-D", None).await;
    assert_eq!((&sku["reserved"], &sku["version"]), (&json!(2), &json!(2)), "{sku}");
    let listed = call("GET", "/api/customers/c-d/orders", None).await;
    assert_eq!(listed["orders"][0]["status"], "Reserved", "{listed}");
}
