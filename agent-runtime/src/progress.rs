//! Progress of a long runtime operation (an image pull), as bytes done of a total, for the
//! task's status message while it is PREPARING, and how often it is worth telling.
//!
//! The runtime publishes every change on a `watch` channel (cheap, latest wins); whoever
//! reports it to the manager lets at most one change a [`Throttle`] period through, so a
//! fast pull does not flood the dispatcher with status updates.

use std::time::{Duration, Instant};

/// Bytes of an image's layers in this node's content store, of all its layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// Bytes present: layers already here count whole, the one being fetched as far as it
    /// has come.
    pub done: u64,
    /// Bytes of all the image's layers, as its manifest gives them.
    pub total: u64,
}

/// How a task's status message starts while it reports its pull's progress (the CLI's
/// service progress looks for it).
pub const PULL_MESSAGE_PREFIX: &str = "pulling image: ";

impl PullProgress {
    /// The status message, as Docker's pull shows its bytes: `pulling image: 1.2MB/5.7MB`.
    pub fn message(&self) -> String {
        format!(
            "{PULL_MESSAGE_PREFIX}{}/{}",
            human_bytes(self.done),
            human_bytes(self.total)
        )
    }
}

/// Where a runtime publishes an operation's progress.
pub type ProgressSender = tokio::sync::watch::Sender<PullProgress>;

/// A size as Docker prints one in progress lines: decimal units, three significant digits
/// (`512B`, `1.5kB`, `12.3MB`, `1.07GB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    if value < 10.0 {
        format!("{value:.2}{unit}")
    } else if value < 100.0 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.0}{unit}")
    }
}

/// Lets one event through per period: the first at once, then none until the period has
/// passed since the last one let through.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle letting one event through per `period`.
    pub fn new(period: Duration) -> Self {
        Self { period, last: None }
    }

    /// Whether an event at `now` goes through (and if it does, the period starts again).
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_prints_them() {
        for (bytes, shown) in [
            (0, "0B"),
            (999, "999B"),
            (1_000, "1.00kB"),
            (1_536, "1.54kB"),
            (12_345_678, "12.3MB"),
            (123_456_789, "123MB"),
            (1_070_000_000, "1.07GB"),
        ] {
            assert_eq!(human_bytes(bytes), shown, "{bytes}");
        }
    }

    #[test]
    fn the_message_gives_bytes_done_of_the_total() {
        let p = PullProgress {
            done: 2_500_000,
            total: 10_000_000,
        };
        assert_eq!(p.message(), "pulling image: 2.50MB/10.0MB");
    }

    #[test]
    fn a_throttle_lets_one_event_through_per_period() {
        let mut throttle = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(throttle.ready(t0), "the first goes through at once");
        assert!(!throttle.ready(t0 + Duration::from_millis(10)));
        assert!(!throttle.ready(t0 + Duration::from_millis(999)));
        assert!(throttle.ready(t0 + Duration::from_secs(1)));
        // The period starts again from the last one let through.
        assert!(!throttle.ready(t0 + Duration::from_millis(1500)));
        assert!(throttle.ready(t0 + Duration::from_millis(2000)));
    }
}
