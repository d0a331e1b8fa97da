//! Exporting the SDK's spans with OpenTelemetry (feature `otel`).
//!
//! The worker and client emit their spans to OpenTelemetry's global tracer provider (see the
//! README's "Tracing"). An application that already configures OpenTelemetry needs nothing
//! from here; one that does not can call [`install`] once at start-up to send every span over
//! OTLP/gRPC to a collector (Jaeger, Tempo, Honeycomb, the OpenTelemetry Collector, ...).
//!
//! The exporter is configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; default `http://localhost:4317`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, and `OTEL_SERVICE_NAME` (default:
//! the program's name).
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let _otel = durable::otel::install()?; // flushes the last spans when dropped
//!     durable::run().await?;
//!     Ok(())
//! }
//! ```

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};

/// Why [`install`] could not set up the OTLP exporter.
///
/// ```
/// let err = durable::otel::OtelError::Exporter("invalid URI".into());
/// assert!(err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The OTLP exporter could not be built (typically a malformed endpoint).
    #[error(
        "could not build the OTLP span exporter: {0} (check OTEL_EXPORTER_OTLP_ENDPOINT, e.g. \
         http://localhost:4317)"
    )]
    Exporter(String),
}

/// Installs a global tracer provider that exports spans over OTLP/gRPC in batches, and the
/// W3C trace-context propagator. Call it inside a tokio runtime; keep the guard for the life of
/// the program (dropping it flushes and shuts the exporter down).
///
/// ```no_run
/// # async fn run() -> Result<(), durable::otel::OtelError> {
/// let guard = durable::otel::install()?;
/// // ... run workers and clients ...
/// guard.flush();
/// # Ok(()) }
/// ```
pub fn install() -> Result<OtelGuard, OtelError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
    Ok(install_exporter(exporter))
}

/// Like [`install`], with the span exporter given: an OTLP exporter configured in code, a
/// vendor's exporter, or an in-memory one in tests.
///
/// ```
/// use opentelemetry_sdk::trace::InMemorySpanExporter;
///
/// let exporter = InMemorySpanExporter::default();
/// let guard = durable::otel::install_exporter(exporter.clone());
/// guard.flush();
/// assert!(exporter.get_finished_spans().unwrap().is_empty());
/// ```
pub fn install_exporter<E: SpanExporter + 'static>(exporter: E) -> OtelGuard {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        if let Some(program) = program_name() {
            resource = resource.with_service_name(program);
        }
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    OtelGuard { provider }
}

fn program_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_stem()?.to_string_lossy().into_owned())
}

/// Keeps the exporter of [`install`] running; dropping it exports what is buffered and shuts
/// the exporter down.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Exports every finished span now (spans are otherwise sent in batches every few
    /// seconds). Export failures are logged, not returned: tracing never fails the program.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!("exporting spans failed: {error}");
        }
    }

    /// The tracer provider, to build tracers for the application's own spans.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!("shutting the span exporter down failed: {error}");
        }
    }
}
