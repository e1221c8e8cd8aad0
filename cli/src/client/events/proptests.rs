//! Property tests of `events --since/--until`: any string is a time or a sentence naming
//! the flag, and RFC 3339 times and Unix seconds read as the instant they name.

use proptest::prelude::*;

use super::*;

/// A fixed "now" (2026-12-03T00:00:00Z): no clock in a property.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_256_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_string_is_a_time_or_a_sentence_naming_the_flag(
        s in prop_oneof![
            "[ ]?(-?[0-9]{0,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?|inf|-inf|NaN|infinity)[ ]?",
            "[0-9]{1,5}(s|m|h|d|w)",
            any::<String>(),
        ],
    ) {
        match time("--since", &s, now()) {
            Ok(nanos) => prop_assert!(nanos >= 0),
            Err(e) => prop_assert!(e.to_string().contains("--since"), "{}", e),
        }
    }

    #[test]
    fn rfc3339_times_and_unix_seconds_read_as_their_instant(secs in 0u64..253_402_300_799) {
        let at = UNIX_EPOCH + Duration::from_secs(secs);
        let expected = i64::try_from(u128::from(secs) * 1_000_000_000).unwrap_or(i64::MAX);
        let rfc3339 = humantime::format_rfc3339_seconds(at).to_string();
        prop_assert_eq!(time("--since", &rfc3339, now()).unwrap(), expected);
        prop_assert_eq!(time("--since", &secs.to_string(), now()).unwrap(), expected);
    }
}

#[test]
fn seconds_no_duration_can_hold_are_refused_not_a_panic() {
    // `Duration::from_secs_f64` panicked on these, and adding a huge one to the epoch too.
    for value in ["inf", "1e300", "18446744073709551616"] {
        let e = time("--since", value, now()).unwrap_err();
        assert!(e.to_string().contains("--since"), "{e}");
    }
}
