//! skiffd's log: `tracing` to standard error, as text or JSON, with repeated warnings of
//! the Raft library limited.
//!
//! openraft warns on every failed replication attempt: a manager that is down made the
//! leader write about 8 KiB a second, 1.9 MB within minutes, and buried everything else.
//! [`RepeatLimit`] lets a warning or error from openraft through once per place in its
//! code per [`REPEAT_WINDOW`]; the first is always shown, so a new problem is never hidden,
//! and skiff's own messages are never limited.
//!
//! Each line carries the spans it was logged in, in both formats: `node{id=...}` and then
//! the loop (`manager::manager`, `daemon::membership`, `worker::agent` name them) or
//! `rpc{method=...}` (`daemon::server`), so a line says which node and which part of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How long the same warning of the Raft library is kept quiet after it was shown.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// Installs the process's log: `format` is `text` or `json`; `RUST_LOG` overrides the
/// levels. Colour only when standard error is a terminal (a log file gets plain text).
pub fn init(format: &str) {
    let levels = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let filter = tracing_subscriber::filter::FilterExt::and(levels, RepeatLimit::default());
    let registry = tracing_subscriber::registry();
    if format == "json" {
        registry.with(layer.json().with_filter(filter)).init();
    } else {
        registry.with(layer.with_filter(filter)).init();
    }
}

/// Lets a warning or error of the Raft library through once per call site per
/// [`REPEAT_WINDOW`] (see the module docs).
#[derive(Default)]
pub struct RepeatLimit {
    shown: Mutex<HashMap<Identifier, Instant>>,
}

impl RepeatLimit {
    fn allow(&self, meta: &Metadata<'_>, now: Instant) -> bool {
        if !meta.target().starts_with("openraft") || *meta.level() > Level::WARN {
            return true;
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        match shown.get(&meta.callsite()) {
            Some(at) if now.duration_since(*at) < REPEAT_WINDOW => false,
            _ => {
                shown.insert(meta.callsite(), now);
                true
            }
        }
    }
}

impl<S> Filter<S> for RepeatLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _cx: &Context<'_, S>) -> bool {
        self.allow(event.metadata(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata of one `tracing` call site, as the macros make it.
    macro_rules! site {
        ($level:expr, $target:expr) => {{
            struct Site;
            static CALLSITE: Site = Site;
            static META: Metadata<'static> = tracing::metadata!(
                name: "event",
                target: $target,
                level: $level,
                fields: &[],
                callsite: &CALLSITE,
                kind: tracing::metadata::Kind::EVENT,
            );
            impl tracing::Callsite for Site {
                fn set_interest(&self, _: tracing::subscriber::Interest) {}
                fn metadata(&self) -> &Metadata<'_> {
                    &META
                }
            }
            &META
        }};
    }

    #[test]
    fn the_raft_library_s_repeated_warnings_are_shown_once_per_window() {
        let limit = RepeatLimit::default();
        let now = Instant::now();
        let raft_warning = site!(Level::WARN, "openraft::replication");
        let raft_error = site!(Level::ERROR, "openraft::replication");
        let raft_info = site!(Level::INFO, "openraft::core");
        let ours = site!(Level::WARN, "manager::loops");
        for meta in [raft_warning, raft_error, raft_info, ours] {
            assert!(limit.allow(meta, now));
        }
        // Again within the window: only the Raft library's warnings and errors wait.
        assert!(!limit.allow(raft_warning, now + Duration::from_secs(1)));
        assert!(!limit.allow(raft_error, now + Duration::from_secs(1)));
        assert!(limit.allow(raft_info, now + Duration::from_secs(1)));
        assert!(limit.allow(ours, now + Duration::from_secs(1)));
        // After it, they are shown again.
        assert!(limit.allow(raft_warning, now + REPEAT_WINDOW));
    }
}
