//! Property tests of duration parsing: any string gives a duration or a sentence, and a
//! duration printed in Go's form reads back as itself.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_printed_duration_reads_back_as_itself(nanos in 0..=(i64::MAX as u64)) {
        let d = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn any_string_is_a_duration_or_a_sentence(
        s in prop_oneof![
            "[ ]?([0-9]{0,45}(\\.[0-9]{0,45})?(ns|us|µs|ms|s|m|h|d|w|x|days|min)?){1,3}[ ]?",
            any::<String>(),
        ],
    ) {
        match parse_duration(&s) {
            Ok(d) => prop_assert!(d <= MAX_DURATION),
            Err(e) => prop_assert!(e.to_string().starts_with("invalid duration \"")),
        }
        if let Err(e) = parse_flag_ms("--x", &s) {
            prop_assert!(e.to_string().contains("--x"), "{}", e);
        }
    }
}

#[test]
fn numbers_too_large_for_any_duration_are_refused_as_too_long() {
    // A fraction too large for u128 nanoseconds once overflowed the sum and panicked.
    let huge = format!("1s{}.5h", "9".repeat(40));
    let e = parse_duration(&huge).unwrap_err();
    assert!(e.to_string().contains("the longest is"), "{e}");
    let e = parse_duration(&format!("{}s", "9".repeat(40))).unwrap_err();
    assert!(e.to_string().contains("the longest is"), "{e}");
    // Still unreadable when the rest does not read.
    let e = parse_duration(&format!("{}sx", "9".repeat(40))).unwrap_err();
    assert!(e.to_string().contains("use a form like"), "{e}");
}
