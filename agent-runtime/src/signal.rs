//! Stop signals as task specs name them and as people read them, shared by every backend:
//! a spec says `SIGINT`, `int` or `2` (as Docker accepts), the runtime sends a number, and an
//! exit message says `SIGINT` again.

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::RuntimeError;

/// Parses a stop signal as Docker accepts it: `SIGTERM`, `TERM`, `sigterm` or `15`; empty
/// means SIGTERM.
pub(crate) fn parse_signal(s: &str) -> Result<Signal, RuntimeError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Signal::SIGTERM);
    }
    let parsed = match s.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let upper = s.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&name).ok()
        }
    };
    parsed.ok_or_else(|| {
        RuntimeError::InvalidSpec(format!(
            "stop signal '{s}' is not a signal: use a name like SIGTERM or a number"
        ))
    })
}

/// `SIGTERM` for 15; `signal 64` for numbers without a name.
pub(crate) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_parse_as_docker_writes_them() {
        for (text, want) in [
            ("", Signal::SIGTERM),
            ("SIGINT", Signal::SIGINT),
            ("int", Signal::SIGINT),
            ("QUIT", Signal::SIGQUIT),
            ("9", Signal::SIGKILL),
        ] {
            assert_eq!(parse_signal(text).unwrap(), want, "{text}");
        }
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
        assert_eq!(signal_name(15), "SIGTERM");
    }
}
