//! Who may see the console. With API keys configured (`OrderflowApiKeys`),
//! every page and JSON route that shows orders, customers or the store needs
//! a key: in `X-API-Key` or `Authorization: Bearer` (scripts), or in a
//! session a browser gets from the login form — a cookie that is `Secure;
//! HttpOnly; SameSite=Strict`, lasts 12 hours and is forgotten when the
//! server restarts. `/health/*` stays public; `/metrics` too unless
//! `OrderflowMetricsPublic` is `false`.
//!
//! Whoever passes is the request's [`Operator`]: actions record it. Wrong
//! keys (at the login form or in a header) are throttled per client address:
//! after [`MAX_FAILURES`] in a minute, that address is answered 429 until the
//! minute is over.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use orderflow_api::{ApiKeys, Problem};
use serde::Deserialize;

const COOKIE: &str = "orderflow_session";
const SESSION_LENGTH: Duration = Duration::from_secs(12 * 3600);
/// Sessions open at once: past it, the one that ends first is closed.
const MAX_SESSIONS: usize = 10_000;
/// Wrong keys from one address in [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at once (the oldest go first).
const MAX_FAILING_ADDRESSES: usize = 10_000;

/// Who is at the console, for the record of what they did: the key they
/// presented, by the first characters of its digest (never the key), or
/// anyone when no key is configured.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

struct Session {
    ends: Instant,
    operator: Operator,
}

pub struct Access {
    keys: ApiKeys,
    metrics_public: bool,
    /// Session token → the session.
    sessions: Mutex<HashMap<String, Session>>,
    /// Client address → wrong keys since when.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Access {
    pub fn new(keys: ApiKeys, metrics_public: bool) -> Self {
        Access { keys, metrics_public, sessions: Mutex::default(), failures: Mutex::default() }
    }

    /// Who the request comes from, if it may pass: `Err(true)` when it
    /// presented a key that is not valid.
    fn operator(&self, headers: &HeaderMap) -> Result<Operator, bool> {
        if !self.keys.required() {
            return Ok(Operator("anyone (no keys configured)".into()));
        }
        if let Some(key) = ApiKeys::presented(headers) {
            return self.keys.caller(key).map(operator_of).ok_or(true);
        }
        session_token(headers).and_then(|token| self.session(token)).ok_or(false)
    }

    fn session(&self, token: &str) -> Option<Operator> {
        let sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.get(token).filter(|session| session.ends > Instant::now()).map(|session| session.operator.clone())
    }

    /// Whether `client` has had too many wrong keys lately.
    fn throttled(&self, client: Option<IpAddr>) -> bool {
        let Some(client) = client else { return false };
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.get(&client).is_some_and(|(count, since)| *count >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    fn failed(&self, client: Option<IpAddr>) {
        let Some(client) = client else { return };
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() >= MAX_FAILING_ADDRESSES {
            failures.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if let Some(oldest) = failures.iter().min_by_key(|(_, (_, since))| *since).map(|(client, _)| *client) {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(client).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn open_session(&self, operator: Operator) -> String {
        // Two random UUIDs: 244 random bits from the operating system's generator.
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.retain(|_, session| session.ends > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(first) = sessions.iter().min_by_key(|(_, session)| session.ends).map(|(token, _)| token.clone())
            {
                sessions.remove(&first);
            }
        }
        sessions.insert(token.clone(), Session { ends: now + SESSION_LENGTH, operator });
        token
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let Some(token) = session_token(headers) {
            self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(token);
        }
    }
}

/// A key's caller (the hex digest of the key) as an operator.
fn operator_of(caller: String) -> Operator {
    Operator(format!("key {}", &caller[..caller.len().min(12)]))
}

/// The client's address, when the server records it.
fn client_of(request: &Request) -> Option<IpAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.ip())
}

fn too_many() -> Response {
    let detail = "too many wrong keys from this address: try again later";
    let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-attempts", detail);
    Problem { retry_after_secs: Some(FAILURE_WINDOW.as_secs()), ..problem }.into_response()
}

/// The session token among the request's cookies, if any.
fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn session_cookie(token: &str, max_age: Duration) -> String {
    format!("{COOKIE}={token}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict", max_age.as_secs())
}

/// In front of the console's pages and JSON: a page sends a browser without
/// a session to the login form; JSON answers 401.
pub async fn require_operator(State(access): State<Arc<Access>>, mut request: Request, next: Next) -> Response {
    let client = client_of(&request);
    if access.throttled(client) {
        return too_many();
    }
    let wrong_key = match access.operator(request.headers()) {
        Ok(operator) => {
            request.extensions_mut().insert(operator);
            return next.run(request).await;
        }
        Err(wrong_key) => wrong_key,
    };
    if wrong_key {
        access.failed(client);
    }
    if request.uri().path() == "/" {
        return Redirect::to("/login").into_response();
    }
    Problem::unauthorized("an API key is required (X-API-Key), or a session from /login").into_response()
}

/// In front of `/metrics`.
pub async fn require_metrics_access(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    if access.metrics_public || access.operator(request.headers()).is_ok() {
        return next.run(request).await;
    }
    Problem::unauthorized("an API key is required (X-API-Key): OrderflowMetricsPublic is false").into_response()
}

#[derive(Deserialize)]
pub struct Login {
    key: String,
}

pub async fn login_page(State(access): State<Arc<Access>>) -> Response {
    if !access.keys.required() {
        return Redirect::to("/").into_response();
    }
    login_form(StatusCode::OK, "")
}

/// A valid key opens a session and goes on to the console; another one
/// shows the form again.
pub async fn login(
    State(access): State<Arc<Access>>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(login): Form<Login>,
) -> Response {
    if !access.keys.required() {
        return Redirect::to("/").into_response();
    }
    let client = client.map(|Extension(ConnectInfo(address))| address.ip());
    if access.throttled(client) {
        return too_many();
    }
    let Some(caller) = access.keys.caller(login.key.trim()) else {
        tracing::warn!(?client, "console login with a key that is not valid");
        access.failed(client);
        return login_form(StatusCode::UNAUTHORIZED, "That key is not valid.");
    };
    let operator = operator_of(caller);
    tracing::info!(operator = operator.0, "console session opened");
    let token = access.open_session(operator);
    ([(header::SET_COOKIE, session_cookie(&token, SESSION_LENGTH))], Redirect::to("/")).into_response()
}

pub async fn logout(State(access): State<Arc<Access>>, headers: HeaderMap) -> Response {
    access.close_session(&headers);
    ([(header::SET_COOKIE, session_cookie("", Duration::ZERO))], Redirect::to("/login")).into_response()
}

fn login_form(status: StatusCode, problem: &str) -> Response {
    let page = include_str!("login.html").replace("{{problem}}", problem);
    (status, Html(page)).into_response()
}
