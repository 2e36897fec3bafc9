//! Logs and traces. Logs go to stderr, as text or JSON lines (`--log-json`,
//! `OrderflowLogFormat=json`), filtered by `RUST_LOG`. With the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set, spans are
//! also exported over OTLP/HTTP, and a request's W3C `traceparent` makes
//! them part of the caller's trace.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

const DEFAULT_FILTER: &str =
    "info,tower=warn,hyper=warn,azure_core=warn,azure_data_cosmos=warn,azure_data_cosmos_driver=warn";

pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn init(json: bool) -> Telemetry {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_FILTER.into());
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let logs = if json { logs.json().with_current_span(true).with_span_list(true).boxed() } else { logs.boxed() };
        let traces = otlp_configured().then(otlp_traces).flatten();
        // Traces have their own filter: orderflow's spans, whatever RUST_LOG
        // says of the logs.
        let spans = Targets::new().with_default(Level::WARN).with_target("orderflow", Level::DEBUG);
        let export = traces.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer("orderflow")).with_filter(spans)
        });
        tracing_subscriber::registry().with(logs.with_filter(filter)).with(export).init();
        Telemetry { traces }
    }

    /// Sends the spans still buffered (bounded by the exporter's timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: not every trace span was exported: {error}");
            }
        }
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()))
}

fn otlp_traces() -> Option<SdkTracerProvider> {
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("warning: OTLP trace export is off: {error}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "orderflow".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    Some(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
}

/// The root span of a request, joined to the caller's trace when it sent a
/// valid `traceparent`.
pub async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
    let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
    // Without a valid traceparent the context is empty and the span starts a trace.
    let _ = span.set_parent(parent);
    next.run(request).instrument(span).await
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
