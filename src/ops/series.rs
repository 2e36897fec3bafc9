//! The console's live charts: every second, a sample of the figures
//! `/metrics` exports — read from its own rendering, not counted a second
//! time — as rates over that second: commands per second by outcome,
//! command latency (p50, p99, from the histogram's buckets) and each
//! change-feed consumer's lag. The last 15 minutes are kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::{json, Value};

/// Samples kept: 15 minutes, one a second.
const KEPT: usize = 900;
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Commands per second over the last second, by outcome (`appended`, `rejected`, …).
    pub commands: BTreeMap<String, f64>,
    /// Command latency over the last second, when there were commands.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Each change-feed consumer's lag, in seconds.
    pub lag_seconds: BTreeMap<String, f64>,
}

#[derive(Default)]
pub struct Series {
    samples: Mutex<VecDeque<Sample>>,
}

impl Series {
    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn all(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }
}

/// Samples the metrics every second until the process ends.
pub async fn run(metrics: PrometheusHandle, series: Arc<Series>) {
    let mut previous = Figures::parse(&metrics.render());
    loop {
        tokio::time::sleep(EVERY).await;
        let now = Figures::parse(&metrics.render());
        series.push(now.since(&previous, Utc::now()));
        previous = now;
    }
}

/// `GET /series.json`: the samples, oldest first.
pub async fn samples(State(series): State<Arc<Series>>) -> Json<Value> {
    Json(json!({ "everySeconds": EVERY.as_secs(), "samples": series.all() }))
}

/// The running totals a sample is the difference of.
#[derive(Debug, Default, Clone, PartialEq)]
struct Figures {
    /// `orderflow_commands_total`, summed by outcome.
    commands: BTreeMap<String, f64>,
    /// `orderflow_command_seconds` buckets: (upper bound, cumulative count).
    latency: Vec<(f64, f64)>,
    /// `orderflow_feed_lag_seconds` by consumer.
    lag: BTreeMap<String, f64>,
}

impl Figures {
    /// Reads the figures out of the Prometheus text format.
    fn parse(text: &str) -> Figures {
        let mut figures = Figures::default();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "orderflow_commands_total" => {
                    if let Some(outcome) = label(labels, "outcome") {
                        *figures.commands.entry(outcome.to_string()).or_default() += value;
                    }
                }
                "orderflow_command_seconds_bucket" => {
                    let bound = label(labels, "le").and_then(|le| le.replace("+Inf", "inf").parse::<f64>().ok());
                    if let Some(bound) = bound {
                        figures.latency.push((bound, value));
                    }
                }
                "orderflow_feed_lag_seconds" => {
                    if let Some(consumer) = label(labels, "consumer") {
                        figures.lag.insert(consumer.to_string(), value);
                    }
                }
                _ => {}
            }
        }
        figures.latency.sort_by(|a, b| a.0.total_cmp(&b.0));
        figures
    }

    /// What happened between `before` and these figures (one second).
    fn since(&self, before: &Figures, at: DateTime<Utc>) -> Sample {
        let seconds = EVERY.as_secs_f64();
        let commands = self
            .commands
            .iter()
            .map(|(outcome, total)| {
                let earlier = before.commands.get(outcome).copied().unwrap_or(0.0);
                (outcome.clone(), ((total - earlier) / seconds).max(0.0))
            })
            .collect();
        let buckets: Vec<(f64, f64)> = self
            .latency
            .iter()
            .map(|(bound, count)| {
                let earlier = before.latency.iter().find(|(b, _)| b == bound).map_or(0.0, |(_, c)| *c);
                (*bound, (count - earlier).max(0.0))
            })
            .collect();
        Sample {
            at,
            commands,
            p50_ms: quantile(&buckets, 0.5).map(|s| s * 1000.0),
            p99_ms: quantile(&buckets, 0.99).map(|s| s * 1000.0),
            lag_seconds: self.lag.clone(),
        }
    }
}

/// A label's value in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.trim_end_matches('}').split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// The `q` quantile of a histogram's cumulative buckets, interpolated
/// within its bucket (as Prometheus's `histogram_quantile`); the highest
/// finite bound when it falls beyond it.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
            return Some(lower.0 + (bound - lower.0) * within);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE orderflow_commands_total counter
orderflow_commands_total{command="Place",outcome="appended"} 10
orderflow_commands_total{command="Confirm",outcome="appended"} 5
orderflow_command_seconds_bucket{le="0.01"} 10
orderflow_command_seconds_bucket{le="0.1"} 15
orderflow_command_seconds_bucket{le="+Inf"} 15
orderflow_feed_lag_seconds{consumer="fulfillment"} 0.5
"#;

    const AFTER: &str = r#"orderflow_commands_total{command="Place",outcome="appended"} 40
orderflow_commands_total{command="Confirm",outcome="appended"} 15
orderflow_commands_total{command="Place",outcome="rejected"} 2
orderflow_command_seconds_bucket{le="0.01"} 60
orderflow_command_seconds_bucket{le="0.1"} 65
orderflow_command_seconds_bucket{le="+Inf"} 67
orderflow_feed_lag_seconds{consumer="fulfillment"} 0.25
"#;

    #[test]
    fn a_sample_is_the_rates_of_the_last_second() {
        let sample = Figures::parse(AFTER).since(&Figures::parse(BEFORE), Utc::now());
        assert_eq!(sample.commands.get("appended"), Some(&40.0));
        assert_eq!(sample.commands.get("rejected"), Some(&2.0));
        // 52 commands that second: 50 under 10 ms, 2 beyond the last bound.
        let p50 = sample.p50_ms.expect("a median");
        assert!((p50 - 5.2).abs() < 1e-9, "{p50}");
        assert_eq!(sample.p99_ms, Some(100.0), "beyond the last finite bound");
        assert_eq!(sample.lag_seconds.get("fulfillment"), Some(&0.25));
    }

    #[test]
    fn a_quiet_second_has_no_latency() {
        let figures = Figures::parse(BEFORE);
        let sample = figures.since(&figures, Utc::now());
        assert_eq!((sample.p50_ms, sample.p99_ms), (None, None));
        assert_eq!(sample.commands.get("appended"), Some(&0.0));
    }

    #[test]
    fn the_series_keeps_fifteen_minutes() {
        let series = Series::default();
        let figures = Figures::parse(BEFORE);
        for _ in 0..KEPT + 5 {
            series.push(figures.since(&figures, Utc::now()));
        }
        assert_eq!(series.all().len(), KEPT);
    }
}
