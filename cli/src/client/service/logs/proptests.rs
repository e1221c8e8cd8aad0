//! Property tests of `service logs --tail/--since/--until`: any string is a value or a
//! sentence naming the flag, and times read as the instant they name.

use proptest::prelude::*;

use super::*;

/// A fixed "now" (2026-12-03T00:00:00Z) in milliseconds: no clock in a property.
const NOW_MS: i64 = 1_796_256_000_000;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_string_is_a_value_or_a_sentence_naming_the_flag(
        s in prop_oneof![
            "[ ]?(-?[0-9]{0,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?|inf|NaN|all)[ ]?",
            "[0-9]{1,5}(s|m|h|d|w)",
            any::<String>(),
        ],
    ) {
        match parse_time("--since", &s, NOW_MS) {
            Ok(ms) => prop_assert!(ms >= 0 || s.trim().ends_with(|c: char| c.is_ascii_alphabetic())),
            Err(e) => prop_assert!(e.to_string().contains("--since"), "{}", e),
        }
        match parse_tail(Some(&s)) {
            Ok(n) => prop_assert!(n >= -1),
            Err(e) => prop_assert!(e.to_string().contains("--tail"), "{}", e),
        }
    }

    #[test]
    fn rfc3339_times_unix_seconds_and_durations_read_as_their_instant(
        secs in 0u64..253_402_300_799,
        ago in 0u64..100_000,
    ) {
        let expected = i64::try_from(secs * 1000).unwrap();
        let rfc3339 = humantime::format_rfc3339_seconds(at(secs)).to_string();
        prop_assert_eq!(parse_time("--since", &rfc3339, NOW_MS).unwrap(), expected);
        prop_assert_eq!(parse_time("--since", &secs.to_string(), NOW_MS).unwrap(), expected);
        let before = parse_time("--since", &format!("{ago}s"), NOW_MS).unwrap();
        prop_assert_eq!(before, NOW_MS - i64::try_from(ago * 1000).unwrap());
        prop_assert_eq!(parse_tail(Some(&ago.to_string())).unwrap(), i64::try_from(ago).unwrap());
    }
}

/// The instant `secs` after the Unix epoch.
fn at(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}
