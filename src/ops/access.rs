//! Who may see the console. With API keys configured (`OrderflowApiKeys`),
//! every page and JSON route that shows orders, customers or the store needs
//! a key: in `X-API-Key` or `Authorization: Bearer` (scripts), or in a
//! session a browser gets from the login form — a cookie that is `Secure;
//! HttpOnly; SameSite=Strict`, lasts 12 hours and is forgotten when the
//! server restarts. `/health/*` stays public; `/metrics` too unless
//! `OrderflowMetricsPublic` is `false`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use orderflow_api::{ApiKeys, Problem};
use serde::Deserialize;

use super::state::Ops;

const COOKIE: &str = "orderflow_session";
const SESSION_LENGTH: Duration = Duration::from_secs(12 * 3600);
/// Sessions open at once: past it, the one that ends first is closed.
const MAX_SESSIONS: usize = 10_000;

pub struct Access {
    keys: ApiKeys,
    metrics_public: bool,
    /// Session token → when it ends.
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Access {
    pub fn new(keys: ApiKeys, metrics_public: bool) -> Self {
        Access { keys, metrics_public, sessions: Mutex::default() }
    }

    fn allowed(&self, headers: &HeaderMap) -> bool {
        !self.keys.required()
            || ApiKeys::presented(headers).is_some_and(|key| self.keys.caller(key).is_some())
            || session_token(headers).is_some_and(|token| self.in_session(token))
    }

    fn in_session(&self, token: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.get(token).is_some_and(|ends| *ends > Instant::now())
    }

    fn open_session(&self) -> String {
        // Two random UUIDs: 244 random bits from the operating system's generator.
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.retain(|_, ends| *ends > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(first) = sessions.iter().min_by_key(|(_, ends)| **ends).map(|(token, _)| token.clone()) {
                sessions.remove(&first);
            }
        }
        sessions.insert(token.clone(), now + SESSION_LENGTH);
        token
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let Some(token) = session_token(headers) {
            self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(token);
        }
    }
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
pub async fn require_operator(State(ops): State<Arc<Ops>>, request: Request, next: Next) -> Response {
    if ops.access.allowed(request.headers()) {
        return next.run(request).await;
    }
    if request.uri().path() == "/" {
        return Redirect::to("/login").into_response();
    }
    Problem::unauthorized("an API key is required (X-API-Key), or a session from /login").into_response()
}

/// In front of `/metrics`.
pub async fn require_metrics_access(State(ops): State<Arc<Ops>>, request: Request, next: Next) -> Response {
    if ops.access.metrics_public || ops.access.allowed(request.headers()) {
        return next.run(request).await;
    }
    Problem::unauthorized("an API key is required (X-API-Key): OrderflowMetricsPublic is false").into_response()
}

#[derive(Deserialize)]
pub struct Login {
    key: String,
}

pub async fn login_page(State(ops): State<Arc<Ops>>) -> Response {
    if !ops.access.keys.required() {
        return Redirect::to("/").into_response();
    }
    login_form(StatusCode::OK, "")
}

/// A valid key opens a session and goes on to the console; another one
/// shows the form again.
pub async fn login(State(ops): State<Arc<Ops>>, Form(login): Form<Login>) -> Response {
    if !ops.access.keys.required() {
        return Redirect::to("/").into_response();
    }
    if ops.access.keys.caller(login.key.trim()).is_none() {
        tracing::warn!("console login with a key that is not valid");
        return login_form(StatusCode::UNAUTHORIZED, "That key is not valid.");
    }
    let token = ops.access.open_session();
    tracing::info!("console session opened");
    ([(header::SET_COOKIE, session_cookie(&token, SESSION_LENGTH))], Redirect::to("/")).into_response()
}

pub async fn logout(State(ops): State<Arc<Ops>>, headers: HeaderMap) -> Response {
    ops.access.close_session(&headers);
    ([(header::SET_COOKIE, session_cookie("", Duration::ZERO))], Redirect::to("/login")).into_response()
}

fn login_form(status: StatusCode, problem: &str) -> Response {
    let page = include_str!("login.html").replace("{{problem}}", problem);
    (status, Html(page)).into_response()
}
