//! What the gateway writes to its service log (`tracing`), kept for the test to read
//! back: some facts are only there (the authentication summary of a message refused
//! before the rules, which leaves no message-log record). [`install`] once per test
//! binary; [`take`] the events since the last call.

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// One event: level, message and fields as the log shows them.
#[derive(Debug, Clone)]
pub struct Logged {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Logged {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.level, self.message)?;
        for (n, v) in &self.fields {
            write!(f, " {n}={v}")?;
        }
        Ok(())
    }
}

static EVENTS: Mutex<Vec<Logged>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

struct Capture;

#[derive(Default)]
struct Fields(Logged);

impl Default for Logged {
    fn default() -> Self {
        Logged {
            level: Level::INFO,
            message: String::new(),
            fields: Vec::new(),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.push(field, s);
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.push((field.name().to_string(), value));
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("portcullis") || *meta.level() > Level::DEBUG {
            return;
        }
        let mut fields = Fields::default();
        fields.0.level = *meta.level();
        event.record(&mut fields);
        EVENTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fields.0);
    }
}

/// Capture the gateway's events from now on (debug and above, `portcullis*` targets).
pub fn install() {
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other tracing subscriber in this test binary");
    });
}

/// The events captured since the last call.
pub fn take() -> Vec<Logged> {
    std::mem::take(&mut *EVENTS.lock().unwrap_or_else(|p| p.into_inner()))
}
