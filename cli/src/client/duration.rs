//! Durations on the command line: parsed from Docker's (Go's) forms such as `5s`, `1m30s`,
//! `2160h0m0s`, `1.5h`, `500ms`, plus days and weeks (`90d`, `2w`) and humantime's long forms
//! (`90days`, `1hour 30min`); printed back in Go's form (`1m30s`).

use std::fmt;
use std::time::Duration;

/// A duration the user wrote that none of the accepted forms matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    too_long: bool,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.too_long {
            return write!(
                f,
                "invalid duration \"{}\": the longest is 2562047h (about 292 years)",
                self.input
            );
        }
        write!(
            f,
            "invalid duration \"{}\": use a form like 5s or 1m30s",
            self.input
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `s` as a duration (see the module docs for the accepted forms).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: s.to_string(),
        too_long: false,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    // Go accepts a bare zero without unit.
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let d = match parse_go(t) {
        Some(d) => d,
        None => humantime::parse_duration(t).map_err(|_| err())?,
    };
    if d > MAX_DURATION {
        return Err(DurationError {
            too_long: true,
            ..err()
        });
    }
    Ok(d)
}

/// The longest duration Docker (Go's `time.Duration`, i64 nanoseconds) can hold, about 292
/// years; anything longer is a typo, and would overflow where the cluster adds it to a time.
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Parses the value of flag `flag` (e.g. `--heartbeat-period`) as a duration, with an error
/// that names the flag: `invalid duration "abc" for --heartbeat-period: use a form like 5s or 1m30s`.
pub fn parse_flag(flag: &str, value: &str) -> anyhow::Result<Duration> {
    parse_duration(value).map_err(|e| {
        if e.too_long {
            anyhow::anyhow!("duration \"{value}\" for {flag} is too long: the longest is 2562047h (about 292 years)")
        } else {
            anyhow::anyhow!("invalid duration \"{value}\" for {flag}: use a form like 5s or 1m30s")
        }
    })
}

/// As [`parse_flag`], in whole milliseconds (the unit of every duration in the proto);
/// a duration that is not zero but below one millisecond is refused.
pub fn parse_flag_ms(flag: &str, value: &str) -> anyhow::Result<u64> {
    let d = parse_flag(flag, value)?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        anyhow::bail!("duration \"{value}\" for {flag} is too short: the smallest unit is 1ms");
    }
    u64::try_from(d.as_millis())
        .map_err(|_| anyhow::anyhow!("duration \"{value}\" for {flag} is too long"))
}

/// Go's `time.ParseDuration` forms (without sign), plus `d` and `w`.
fn parse_go(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total: f64 = 0.0;
    let mut total_nanos: u128 = 0;
    let mut exact = true;
    let mut overflow = false;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        // Number: digits, optional fraction.
        let num_len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            _ => return None,
        };
        if num.contains('.') {
            exact = false;
            let v: f64 = num.parse().ok()?;
            total += v * nanos_per as f64;
        } else {
            // Digits too many for any duration: too long (once the rest reads), not unreadable.
            match num
                .parse::<u128>()
                .ok()
                .and_then(|v| v.checked_mul(nanos_per))
                .and_then(|n| n.checked_add(total_nanos))
            {
                Some(nanos) => total_nanos = nanos,
                None => overflow = true,
            }
        }
    }
    let nanos = if overflow {
        None
    } else if exact {
        Some(total_nanos)
    } else {
        // `as` saturates a fraction beyond u128 (or infinite); the sum must not overflow.
        total_nanos.checked_add(total.round() as u128)
    };
    let Some(secs) = nanos.and_then(|n| u64::try_from(n / 1_000_000_000).ok()) else {
        return Some(Duration::MAX);
    };
    Some(Duration::new(
        secs,
        (nanos.unwrap_or(0) % 1_000_000_000) as u32,
    ))
}

/// Formats `d` as Go does (`1h30m0s`, `5s`, `1.5s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", frac(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let rem = nanos % 3_600_000_000_000;
    let minutes = rem / 60_000_000_000;
    let sec_nanos = rem % 60_000_000_000;
    let seconds = frac(sec_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// Formats a proto duration in milliseconds.
pub fn format_ms(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

/// `value / unit` with the fraction's trailing zeros dropped.
fn frac(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let part = value % unit;
    if part == 0 {
        return whole.to_string();
    }
    let digits = unit.to_string().len() - 1;
    let s = format!("{part:0digits$}");
    format!("{whole}.{}", s.trim_end_matches('0'))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn go_forms() {
        assert_eq!(parse_duration("5s").unwrap(), ms(5_000));
        assert_eq!(parse_duration("1m30s").unwrap(), ms(90_000));
        assert_eq!(parse_duration("2160h0m0s").unwrap(), ms(2160 * 3_600_000));
        assert_eq!(parse_duration("1.5h").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("1h2m3.5s").unwrap(), ms(3_723_500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn days_and_long_forms() {
        assert_eq!(parse_duration("90d").unwrap(), ms(90 * 86_400_000));
        assert_eq!(parse_duration("2w").unwrap(), ms(14 * 86_400_000));
        assert_eq!(parse_duration("90days").unwrap(), ms(90 * 86_400_000));
        assert_eq!(parse_duration("1hour 30min").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration(" 5s ").unwrap(), ms(5_000));
    }

    #[test]
    fn bad_input() {
        for bad in ["", "abc", "5", "-5s", "5x", "s", "1..5s", ".s", "5s3"] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid duration \"{bad}\": use a form like 5s or 1m30s")
            );
        }
    }

    #[test]
    fn durations_longer_than_go_can_hold_are_refused() {
        assert_eq!(
            parse_duration("2562047h").unwrap(),
            ms(2_562_047 * 3_600_000)
        );
        let e = parse_duration("99999999999h").unwrap_err();
        assert!(e.to_string().contains("the longest is"), "{e}");
        let e = parse_flag("--restart-delay", "99999999999h").unwrap_err();
        assert!(e.to_string().contains("--restart-delay is too long"), "{e}");
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let e = parse_flag("--heartbeat-period", "abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid duration \"abc\" for --heartbeat-period: use a form like 5s or 1m30s"
        );
        assert_eq!(
            parse_flag_ms("--cert-expiry", "90d").unwrap(),
            90 * 86_400_000
        );
        assert!(parse_flag_ms("--x", "10us")
            .unwrap_err()
            .to_string()
            .contains("too short"));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_ms(5_000), "5s");
        assert_eq!(format_ms(1_500), "1.5s");
        assert_eq!(format_ms(90_000), "1m30s");
        assert_eq!(format_ms(2160 * 3_600_000), "2160h0m0s");
        assert_eq!(format_ms(500), "500ms");
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_nanos(42)), "42ns");
        // Round trip.
        for s in ["1h30m0s", "5s", "1.25s", "250ms", "2160h0m0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
