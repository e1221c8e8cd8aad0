//! Property tests of logging driver options: any options give a driver or a sentence, and
//! sizes read as Docker writes them.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn options() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "max-size",
            "max-file",
            "compress",
            "syslog-address",
            "syslog-facility",
            "syslog-format",
            "tag",
        ])
        .prop_map(String::from),
        "[a-z-]{1,8}",
    ];
    let value = prop_oneof![
        "[ ]?-?[0-9.]{0,6}[kmgbKMGBx]{0,2}[ ]?",
        "(udp|tcp|unix|unixgram|http)://[a-z0-9/.:]{0,8}",
        "(local[0-9]|daemon|bogus|rfc5424|rfc3164|true|false|0|1)",
        any::<String>(),
    ];
    proptest::collection::btree_map(key, value, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_options_give_a_driver_or_a_sentence(
        name in prop::sample::select(vec!["", "json-file", "local", "syslog", "journald", "none", "gelf"]),
        options in options(),
    ) {
        if let Err(e) = Driver::parse(name, &options) {
            prop_assert!(e.to_string().len() > 20 && !e.to_string().contains('\n'), "{}", e);
        }
    }

    #[test]
    fn sizes_read_in_powers_of_1024(
        n in 1u64..(1 << 30),
        unit in prop::sample::select(vec![("", 0u32), ("b", 0), ("k", 10), ("KB", 10), ("m", 20), ("G", 30)]),
        s in any::<String>(),
    ) {
        let (suffix, shift) = unit;
        prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Some(n << shift));
        let _ = parse_size(&s);
    }
}
