//! How the CLI writes bytes, CPUs, points in time and ages for people, as Docker's CLI
//! writes them.
//!
//! One module because every command prints these (node and service inspect, the task
//! tables, logs, secret and config lists) and each used to borrow them from whichever
//! command had them first. Durations given as flags (`5s`, `1m30s`) are written where
//! they are parsed (`client::duration`), so both directions stay the same format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use manager::units;

/// Bytes in binary units, as Docker prints memory (`7.523GiB`, `512B`); the scheduler
/// writes the same numbers with one decimal and a space (`manager::units`).
pub fn format_bytes(bytes: i64) -> String {
    units::format_bytes(bytes, 3, "")
}

/// CPUs from billionths of a core (`1.5`).
pub fn format_cpus(nano: i64) -> String {
    units::trim_decimals(nano as f64 / 1e9, 3)
}

/// A Unix-millisecond time as `2024-01-02 03:04:05 UTC`; empty when unset.
pub fn format_time(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    humantime::format_rfc3339_seconds(system_time(ms))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// A log time as RFC 3339 (UTC, milliseconds).
pub fn log_time(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// A Unix-millisecond time (before 1970 read as 1970).
fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A duration as Docker humanises it (`Less than a second`, `5 seconds`, `About a minute`).
pub fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let minutes = secs / 60;
    let hours = ((ms.max(0) as f64) / 3_600_000.0).round() as i64;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", secs / 3600 / 24 / 365)
    }
}

/// How long ago `ms` (Unix milliseconds) was, in whole seconds, minutes, hours or days
/// (`5 seconds ago`, `2 hours ago`): the CREATED column of `secret ls` and `config ls`.
pub fn age(ms: i64) -> String {
    let ago = (proto::now_ms() - ms).max(0) / 1000;
    match ago {
        0..=59 => format!("{ago} seconds ago"),
        60..=3599 => format!("{} minutes ago", ago / 60),
        3600..=86399 => format!("{} hours ago", ago / 3600),
        _ => format!("{} days ago", ago / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_unset_times() {
        assert_eq!(format_bytes(7_704 * 1024 * 1024), "7.523GiB");
        assert_eq!(format_bytes(512), "512B");
        assert_eq!(format_time(0), "");
    }

    #[test]
    fn humanized_durations() {
        assert_eq!(human_duration(500), "Less than a second");
        assert_eq!(human_duration(1_000), "1 second");
        assert_eq!(human_duration(5_400), "5 seconds");
        assert_eq!(human_duration(60_000), "About a minute");
        assert_eq!(human_duration(5 * 60_000), "5 minutes");
        assert_eq!(human_duration(3_600_000), "About an hour");
        assert_eq!(human_duration(3 * 3_600_000), "3 hours");
        assert_eq!(human_duration(3 * 86_400_000), "3 days");
        assert_eq!(human_duration(21 * 86_400_000), "3 weeks");
        assert_eq!(human_duration(90 * 86_400_000), "3 months");
        assert_eq!(human_duration(3 * 365 * 86_400_000), "3 years");
        assert_eq!(human_duration(-5), "Less than a second");
    }

    #[test]
    fn ages_read_like_docker() {
        let now = proto::now_ms();
        assert_eq!(age(now - 5_000), "5 seconds ago");
        assert_eq!(age(now - 7_200_000), "2 hours ago");
    }
}
