//! A real browser for the console's tests: Debian's headless Chromium,
//! driven over the DevTools protocol on `--remote-debugging-pipe` (JSON
//! messages ending in NUL on file descriptors 3 and 4: no WebSocket, no
//! driver to install). Clicks and typing go through Chromium's input
//! pipeline (`Input.dispatchMouseEvent`, `Input.insertText`) as a person's
//! would, at the element's place on the screen.

use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `session` off the async workers (the DevTools pipe is read
/// blocking); a panic in it — an assertion on the page — fails the test with
/// its own message.
pub async fn in_browser<T: Send + 'static>(session: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(session).await.unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
}

pub struct Browser {
    chromium: Child,
    commands: PipeWriter,
    answers: BufReader<PipeReader>,
    next_id: u64,
    session: String,
}

impl Browser {
    /// A browser with one tab, `width` × `height`.
    pub fn launch(profile: &Path, (width, height): (u32, u32)) -> Browser {
        let (chromium_reads, commands) = std::io::pipe().expect("pipe");
        let (answers, chromium_writes) = std::io::pipe().expect("pipe");
        let (read_fd, write_fd) = (chromium_reads.as_raw_fd(), chromium_writes.as_raw_fd());
        let mut command = Command::new(CHROMIUM);
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // pipe ends move above 9 first, so that placing one on 3 cannot
        // close the other.
        unsafe {
            command.pre_exec(move || {
                let high_read = libc::fcntl(read_fd, libc::F_DUPFD, 10);
                let high_write = libc::fcntl(write_fd, libc::F_DUPFD, 10);
                if high_read < 0 || high_write < 0 || libc::dup2(high_read, 3) < 0 || libc::dup2(high_write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let chromium = command.spawn().unwrap_or_else(|e| {
            panic!("{CHROMIUM} must be installed (apt-get install chromium; scripts/test does): {e}")
        });
        drop((chromium_reads, chromium_writes));
        let mut browser =
            Browser { chromium, commands, answers: BufReader::new(answers), next_id: 0, session: String::new() };
        let targets = browser.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .expect("a tab")
            .to_string();
        let attached = browser.call("Target.attachToTarget", json!({"targetId": page, "flatten": true}));
        browser.session = attached["sessionId"].as_str().expect("a session").to_string();
        browser
    }

    /// Sends a command (to the tab, once attached) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params).unwrap_or_else(|error| panic!("{method}: {error}"))
    }

    /// A command's result, or the error Chromium answered (a page that is
    /// navigating has no context to evaluate in, say).
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("Chromium takes commands");
        loop {
            let mut answer = Vec::new();
            let read = self.answers.read_until(0, &mut answer).expect("Chromium answers");
            assert!(read > 0, "Chromium closed its pipe (it quit) during {method}");
            answer.pop();
            let answer: Value = serde_json::from_slice(&answer).expect("JSON from Chromium");
            if answer["id"] == id {
                return match answer.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for("document.readyState === 'complete'", "the page to load");
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        self.evaluate(expression).unwrap_or_else(|error| panic!("{expression}: {error}"))
    }

    /// The value of `expression`, or Chromium's error: a page that is
    /// navigating has no context to evaluate in ("Inspected target navigated
    /// or closed").
    fn evaluate(&mut self, expression: &str) -> Result<Value, Value> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.try_call("Runtime.evaluate", params)?;
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        Ok(result["result"]["value"].clone())
    }

    /// Waits (at most 20 s) until `expression` is true and returns its value;
    /// a page that is navigating meanwhile is waited out.
    pub fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.evaluate(expression).unwrap_or(Value::Null);
            if !matches!(value, Value::Null | Value::Bool(false)) && value != json!("") && value != json!(0) {
                return value;
            }
            assert!(Instant::now() < deadline, "waited 20 s for {what} ({expression})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The text of the element `selector` (empty when there is none).
    pub fn text(&mut self, selector: &str) -> String {
        let expression = format!("document.querySelector({})?.innerText ?? ''", json!(selector));
        self.eval(&expression).as_str().unwrap_or_default().to_string()
    }

    /// Clicks the middle of the element `selector`, scrolled into view, with
    /// the mouse.
    pub fn click(&mut self, selector: &str) {
        let place = self.wait_for(
            &format!(
                "(() => {{ const e = document.querySelector({}); if (!e || e.disabled) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()",
                json!(selector)
            ),
            &format!("{selector} to be there to click"),
        );
        let (x, y) = (place[0].clone(), place[1].clone());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let click = json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1});
            self.call("Input.dispatchMouseEvent", click);
        }
    }

    /// Clicks into the field `selector`, empties it and types `text`.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.eval(&format!("document.querySelector({}).select()", json!(selector)));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// A picture of the viewport into `target/screenshots/` (look at them:
    /// a test cannot tell whether a page reads well).
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&folder).expect("screenshots folder");
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap_or_default());
        let path = folder.join(name);
        std::fs::write(&path, png.expect("a PNG")).expect("screenshot written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromium.kill();
        let _ = self.chromium.wait();
    }
}
