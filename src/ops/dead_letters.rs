//! The dead letters an operator looks through: the newest on the dead-letter
//! topic (Kafka's or the embedded log's), with their reason, origin, time and
//! a bounded preview of the payload, filtered by kind. Sending one again is
//! an action ([`super::actions::reingest`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_api::Problem;
use orderflow_pipeline::dead_letters::{listed, Listed};
use orderflow_pipeline::topics::DEADLETTER;
use serde::Deserialize;
use serde_json::json;

use super::state::Ops;

/// The newest dead letters read from each partition of the topic.
const SCANNED: usize = 500;
const SHOWN: usize = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asked {
    kind: Option<String>,
    limit: Option<usize>,
}

/// `GET /deadletters.json?kind=&limit=`: newest first, with how many of the
/// scanned ones are of each kind.
pub async fn dead_letters(
    State(ops): State<Arc<Ops>>,
    asked: Result<Query<Asked>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(asked)) = asked else {
        return Problem::bad_request("the query takes kind and limit").into_response();
    };
    let on_topic = match ops.topics.latest(DEADLETTER.name, SCANNED).await {
        Ok(on_topic) => on_topic,
        Err(error) => return Problem::from(error).into_response(),
    };
    let mut unreadable = 0;
    let mut letters: Vec<Listed> = on_topic
        .iter()
        .filter_map(|letter| {
            listed(letter)
                .inspect_err(|error| {
                    tracing::warn!(partition = letter.partition, offset = letter.offset, %error, "unreadable dead letter");
                    unreadable += 1;
                })
                .ok()
        })
        .collect();
    letters.sort_by(|a, b| (&b.time, b.partition, b.offset).cmp(&(&a.time, a.partition, a.offset)));
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in &letters {
        *kinds.entry(letter.kind.as_str()).or_default() += 1;
    }
    let shown: Vec<&Listed> = letters
        .iter()
        .filter(|letter| asked.kind.as_ref().is_none_or(|kind| letter.kind == *kind))
        .take(asked.limit.unwrap_or(SHOWN).min(SCANNED))
        .collect();
    Json(json!({
        "scanned": letters.len(),
        "unreadable": unreadable,
        "kinds": kinds,
        "deadLetters": shown,
    }))
    .into_response()
}
