//! Logging setup: `--log-format json|text`, `--log-level`. Logs go to stderr; the
//! libraries' per-query chatter (hickory logs two lines per query at info) is capped at
//! `warn` unless `RUST_LOG` says otherwise. Also the one spelling of an error with its
//! causes, as logs, `check` and `/status` show it ([`error_chain`]).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `error: cause: cause…`, the error's text and every source below it.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

const QUIET_LIBRARIES: &str = "hickory_server=warn,hickory_proto=warn,hickory_net=warn,tokio_postgres=warn";

/// Installs the global subscriber. `level` is a tracing level or `target=level`
/// directives, comma-separated ([`Targets`]: no span or field filters, which would
/// bring a regex engine into the binary and its memory for them alone).
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("{level},{QUIET_LIBRARIES}"));
    let filter: Targets = directives.parse().map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
