//! Tracing subscriber of the `governance` binary, and the optional OpenTelemetry export.
//!
//! Every subcommand logs to stderr through `tracing_subscriber::fmt`: filter `RUST_LOG`
//! (default [`SERVER_LOG_FILTER`] for `serve`, [`CLI_LOG_FILTER`] for the others),
//! format `GOVERNANCE_LOG_FORMAT` (`text`, the default, or `json`: one object per line), ANSI
//! colours only when stderr is a terminal. Each pipeline status change is one `info` line
//! `pipeline status changed` with `pipeline_id`, `status`, `previous` and `reason`.
//!
//! Without the `otlp` cargo feature, or with it but without `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), nothing is exported.
//!
//! With the feature and the variable, the `pipeline` and `agent` spans of `governance-core`
//! (each carrying `pipeline_id`) and everything else the `governance*` crates record at
//! `INFO` or above are sent over OTLP/HTTP (protobuf) to `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces`
//! with `service.name = governance` and `service.instance.id` = [`node_id`]. The other standard
//! `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, ...) apply. [`Telemetry::shutdown`] (or
//! dropping the [`Telemetry`]) flushes the spans still buffered.

/// The id of this process in a cluster: `GOVERNANCE_NODE_ID`, or `<hostname>-<pid>` when unset
/// or blank. Reported as the `node` label of `governance_node_info` on `/metrics` and as the
/// OTLP resource attribute `service.instance.id`.
#[must_use]
pub fn node_id() -> String {
    match std::env::var("GOVERNANCE_NODE_ID") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => format!("{}-{}", hostname(), std::process::id()),
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ["HOSTNAME", "COMPUTERNAME"]
                .iter()
                .find_map(|v| std::env::var(v).ok())
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether an OTLP endpoint is configured in the environment.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The installed telemetry; keep it alive for the life of the command and call
/// [`shutdown`](Self::shutdown) at the end (dropping it flushes as well).
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// The log line format on stderr (`GOVERNANCE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default); colours only when stderr is a terminal.
    Text,
    /// One JSON object per line, event fields at the top level, for log shippers.
    Json,
}

impl LogFormat {
    /// `GOVERNANCE_LOG_FORMAT`: `text` (default when unset or blank) or `json`.
    ///
    /// # Errors
    /// Any other value, naming the variable.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("GOVERNANCE_LOG_FORMAT") {
            Ok(v) if !v.trim().is_empty() => match v.trim().to_ascii_lowercase().as_str() {
                "text" => Ok(Self::Text),
                "json" => Ok(Self::Json),
                _ => anyhow::bail!("GOVERNANCE_LOG_FORMAT={v:?} is not one of text, json"),
            },
            _ => Ok(Self::Text),
        }
    }
}

/// Default log filter of `serve` (when `RUST_LOG` is unset): warnings, and the `governance*`
/// crates' `info` lines (status changes, resumes, takeovers).
pub const SERVER_LOG_FILTER: &str = "warn,governance=info";
/// Default log filter of the other commands (`run`, `bench`, `ledger`, `replay`, whose output
/// is on stdout, and `worker`, which would log every work item): warnings only.
pub const CLI_LOG_FILTER: &str = "warn";

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The log layer on stderr: `RUST_LOG` (else `default_filter`), in `format`, without ANSI
/// colours unless stderr is a terminal (and `NO_COLOR` is unset).
fn log_layer(default_filter: &str, format: LogFormat) -> BoxedLayer {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(ansi).with_filter(filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    }
}

/// Installs the global tracing subscriber of a command: logs on stderr (`RUST_LOG`, default
/// `default_filter`; `GOVERNANCE_LOG_FORMAT` text or json; see [`log_layer`]), plus the OTLP
/// layer when the feature is on and an endpoint is set. Does nothing when a global subscriber
/// is already installed.
///
/// # Errors
/// An invalid `GOVERNANCE_LOG_FORMAT`; the OTLP exporter cannot be built (e.g. an invalid
/// endpoint URL).
pub fn init(default_filter: &str) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let fmt_layer = log_layer(default_filter, LogFormat::from_env()?);
    #[cfg(feature = "otlp")]
    {
        if endpoint_configured() {
            let (layer, provider) = otlp::layer()?;
            let installed = tracing_subscriber::registry()
                .with(fmt_layer)
                .with(layer)
                .try_init()
                .is_ok();
            return Ok(Telemetry {
                provider: installed.then_some(provider),
            });
        }
    }
    let _ = tracing_subscriber::registry().with(fmt_layer).try_init();
    Ok(Telemetry::default())
}

impl Telemetry {
    /// Whether spans are being exported over OTLP.
    #[must_use]
    pub fn is_exporting(&self) -> bool {
        #[cfg(feature = "otlp")]
        {
            self.provider.is_some()
        }
        #[cfg(not(feature = "otlp"))]
        {
            false
        }
    }

    /// Flushes the spans still buffered and stops the exporter (off the async worker threads).
    pub async fn shutdown(mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || otlp::shutdown(&provider)).await;
        }
        #[cfg(not(feature = "otlp"))]
        let _ = &mut self;
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            // an early return (error path) in a command: flush anyway. The export runs on the
            // SDK's own thread; only this thread blocks while it finishes.
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi_thread {
                tokio::task::block_in_place(|| otlp::shutdown(&provider));
            } else {
                otlp::shutdown(&provider);
            }
        }
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};

    /// The OTLP layer (only `governance*` targets, so the exporter's own HTTP client is never
    /// traced into itself) and its provider.
    pub(super) fn layer<S>()
    -> anyhow::Result<(impl tracing_subscriber::Layer<S>, SdkTracerProvider)>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let resource = Resource::builder()
            .with_service_name("governance")
            .with_attribute(KeyValue::new("service.instance.id", super::node_id()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("governance"))
            .with_filter(Targets::new().with_target("governance", LevelFilter::INFO));
        Ok((layer, provider))
    }

    /// Flushes and stops `provider`; failures go to stderr (telemetry never fails a command).
    pub(super) fn shutdown(provider: &SdkTracerProvider) {
        if let Err(e) = provider.shutdown() {
            eprintln!("warning: flushing OpenTelemetry spans failed: {e}");
        }
    }
}
