//! Drives the real `orderflow` binary: a server on a random port over a real
//! SQLite file in a temporary directory.

#![allow(dead_code)]

pub mod lifecycle;
pub mod shared_store;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_orderflow");

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

impl Server {
    /// Starts `orderflow serve` on `data_dir` and waits until it is ready.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .current_dir(data_dir.parent().unwrap_or(data_dir))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start orderflow serve");
        let base = word_of_first_line(&mut child, |word| word.starts_with("http://").then(|| word.to_string()));
        Server { child, base, data_dir: data_dir.to_path_buf(), client: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::read(request.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn post_empty(&self, path: &str) -> Answer {
        self.send(Method::POST, path, None, &[]).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    /// Posts raw bytes with the given headers.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::read(request.send().await.expect("request")).await
    }

    pub async fn place(&self, order_id: &str, lines: &[(&str, u32, u64)]) -> Answer {
        let lines: Vec<Value> =
            lines.iter().map(|(sku, q, p)| json!({"sku": sku, "quantity": q, "unitPriceMinor": p})).collect();
        self.post("/api/orders", json!({"orderId": order_id, "customerId": "c-1", "currency": "EUR", "lines": lines}))
            .await
    }

    pub async fn restock(&self, sku: &str, quantity: u64) -> Answer {
        self.post(&format!("/api/inventory/{sku}/restock"), json!({"quantity": quantity})).await
    }

    /// Sends one CloudEvent in binary content mode.
    pub async fn event(&self, id: &str, event_type: &str, data: Value) -> Answer {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/tests"),
            ("ce-type", event_type),
            ("content-type", "application/json"),
        ];
        self.post_raw("/api/events", data.to_string(), &headers).await
    }

    /// Polls `path` until `done` holds for its JSON (the read side is
    /// eventually consistent), and returns it.
    pub async fn eventually(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.get(path).await;
            if answer.status == StatusCode::OK && done(&answer.body) {
                return answer.body;
            }
            assert!(Instant::now() < deadline, "{path} never got there; last answer {answer:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn order_status(&self, order_id: &str, status: &str) -> Value {
        self.eventually(&format!("/api/orders/{order_id}"), |o| o["status"] == status).await
    }

    pub async fn history(&self, order_id: &str) -> Vec<Value> {
        let answer = self.get(&format!("/api/orders/{order_id}/events")).await;
        answer.body.as_array().cloned().unwrap_or_default()
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let status = self.child.wait().expect("wait for the server");
        std::mem::forget(self);
        status
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        assert_eq!(self.body["code"], code, "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
    }
}

/// The first word of the child's first stdout line that `pick` accepts
/// (where a started process says how to reach it).
pub fn word_of_first_line(child: &mut Child, pick: impl Fn(&str) -> Option<String>) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the first line");
    line.split_whitespace().find_map(pick).unwrap_or_else(|| panic!("not found in the first line {line:?}"))
}

/// Calls `probe` until `done` holds for what it returns (within 20 s).
pub async fn until<T: std::fmt::Debug>(mut probe: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = probe();
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "never got there; last {value:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`until`], for a probe that is async.
pub async fn until_async<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "never got there; last {value:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `orderflow` with arguments and returns its stdout, asserting success.
pub fn cli(args: &[&str], dir: &Path) -> String {
    let output = Command::new(BIN).args(args).current_dir(dir).output().expect("run orderflow");
    assert!(output.status.success(), "orderflow {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The CloudEvents on a topic of the embedded topic log.
pub fn topic(data_dir: &Path, topic: &str) -> Vec<Value> {
    let dir = data_dir.to_string_lossy();
    cli(&["topics", "read", topic, "--data-dir", &dir], data_dir.parent().unwrap_or(data_dir))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Writes an event this build cannot read (a type it does not know, as a
/// newer build could write) straight into the embedded store of `data_dir`,
/// as the first event of `stream_id`; answers the connection, to fix it later.
pub fn write_unreadable_event(data_dir: &Path, stream_id: &str) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(data_dir.join("orderflow.db")).expect("open the store");
    db.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    db.execute(
        "INSERT INTO events (stream_id, idx, event_id, type, data, time, correlation_id, causation_id, message_id)
         VALUES (?1, 0, ?2, 'FromTheFuture', '{}', '2026-11-30T00:00:00.000000Z', 'c', 'c', 'm')",
        [stream_id.to_string(), uuid::Uuid::new_v4().to_string()],
    )
    .expect("insert");
    db
}
