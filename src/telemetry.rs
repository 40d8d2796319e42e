//! Logging: `tracing` to stderr, text or JSON, filtered like `RUST_LOG`.

use clap::ValueEnum;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber. `filter` uses `RUST_LOG` syntax (e.g. `info,aws_smithy=warn`).
pub fn init(format: LogFormat, filter: &str) {
    // A bad filter must not stop the operator: fall back to `info` and say so.
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let registry = tracing_subscriber::registry().with(env_filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if result.is_ok()
        && let Some(e) = bad
    {
        tracing::warn!(filter, error = %e, "invalid log filter, using info");
    }
}
