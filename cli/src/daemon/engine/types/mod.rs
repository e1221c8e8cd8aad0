//! Docker's JSON types and their translation to and from skiff's proto, one module per
//! family, each translation in one place with a round-trip test.
//!
//! Conventions, as Docker's: field names in PascalCase (read case-insensitively, see
//! `decode`), `Version.Index` for the object's Raft version, times in RFC 3339 with
//! nanoseconds (Go's zero time for "never"), durations in nanoseconds. A Docker field skiff
//! has no place for is an `Option<serde_json::Value>` that must be Go's zero value
//! (`decode::refuse_unsupported`); it is never silently dropped.

pub mod container;
pub mod network;
pub mod node;
pub mod secret;
pub mod service;
pub mod swarm;
pub mod system;
pub mod task;

use serde::{Deserialize, Serialize};

/// Go's zero `time.Time`, what Docker shows for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `Version`: the Raft index that last wrote the object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Version {
    /// The index.
    pub index: u64,
}

/// Unix milliseconds as RFC 3339 with nanoseconds; zero as Go's zero time.
pub fn time(ms: i64) -> String {
    if ms == 0 {
        return ZERO_TIME.to_string();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

/// RFC 3339 back to Unix milliseconds (Go's zero time and garbage as zero).
pub fn parse_time(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
        .max(0)
}

/// Milliseconds as Docker's nanoseconds.
pub fn nanos(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// Docker's nanoseconds as milliseconds, refusing a negative duration by name.
pub fn millis(field: &str, ns: i64) -> Result<u64, super::error::ApiError> {
    if ns < 0 {
        return Err(super::error::ApiError::bad_request(format!(
            "{field} cannot be negative"
        )));
    }
    Ok((ns as u64).div_ceil(1_000_000))
}

/// The common head of every object: ID, version and times.
pub fn meta(meta: &Option<proto::Meta>) -> (String, Version, String, String) {
    let m = meta.clone().unwrap_or_default();
    (
        m.id,
        Version { index: m.version },
        time(m.created_at),
        time(m.updated_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_and_zero_is_gos_zero_time() {
        assert_eq!(time(0), ZERO_TIME);
        let t = time(1_700_000_000_123);
        assert_eq!(t, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_time(&t), 1_700_000_000_123);
        assert_eq!(parse_time(ZERO_TIME), 0);
    }

    #[test]
    fn durations_are_nanoseconds() {
        assert_eq!(nanos(1500), 1_500_000_000);
        assert_eq!(millis("D", 1_500_000_000).unwrap(), 1500);
        assert_eq!(millis("D", 1).unwrap(), 1);
        assert!(millis("Delay", -1).unwrap_err().message.contains("Delay"));
    }
}
