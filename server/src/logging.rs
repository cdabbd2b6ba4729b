//! Logs on stderr: text for people, or one JSON object per line for a log
//! pipeline, with field names that stay the same from release to release
//! (docs/operations.md, Logs):
//!
//! ```json
//! {"time":"2026-11-30T13:03:49.323424Z","level":"info","target":"chat_server::connection",
//!  "message":"connected","member":"m17","peer":"192.0.2.7:51234","transport":"websocket"}
//! ```
//!
//! `time`, `level`, `target` and `message` are always there; then the
//! fields of the spans the line is in (`node` in cluster mode; `conn`,
//! `peer`, `member` at debug level), then the event's own.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter from `--log` (or `CHAT_LOG`), else `RUST_LOG`, else `info`.
///
/// # Errors
/// The directives do not parse: the error says which.
pub(crate) fn filter(wanted: Option<&str>) -> anyhow::Result<EnvFilter> {
    match wanted {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|err| anyhow::anyhow!("--log {directives:?}: {err}")),
        None => Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))),
    }
}

/// Installs the logger: `json` lines, or text (in colour on a terminal).
pub(crate) fn init(json: bool, filter: EnvFilter) {
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.fmt_fields(JsonFields::new()).event_format(JsonLines).init();
    } else {
        use std::io::IsTerminal;
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// One JSON object per event, fields at the top level.
struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        line.insert("time".into(), time.into());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        line.insert("level".into(), level.into());
        line.insert("target".into(), event.metadata().target().into());
        // The spans' fields, outermost first, as JsonFields kept them.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields into the line's object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
