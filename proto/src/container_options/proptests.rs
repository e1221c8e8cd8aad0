//! Property tests of the container option rules: every value comes from a command line, a
//! Compose file or the Engine API, so any string must give a value or a sentence naming the
//! flag, and what is accepted must read back as itself.

use proptest::prelude::*;

use super::*;

/// Strings near the accepted forms (so both branches are reached) and arbitrary ones.
fn near(form: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![form, any::<String>()]
}

/// The error says which flag and how to write it (a sentence, not a bare code).
fn names_the_flag(e: &str) -> bool {
    e.contains("--x") && e.len() > 20
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ulimits_read_back_as_themselves(
        s in near("[ ]?(nofile|NPROC|core|bogus|)[ ]?=[ ]?-?[0-9]{1,20}(:-?[0-9]{1,20})?[ ]?")
    ) {
        match parse_ulimit("--x", &s) {
            Ok(u) => {
                prop_assert_eq!(parse_ulimit("--x", &format_ulimit(&u)), Ok(u.clone()));
                prop_assert_eq!(check_ulimit("--x", &u), Ok(()));
            }
            Err(e) => prop_assert!(names_the_flag(&e), "{}", e),
        }
    }

    #[test]
    fn capabilities_normalize_to_a_fixed_point(s in near("(CAP_)?(net_admin|SYS_PTRACE|all|bogus)")) {
        match normalize_capability("--x", &s) {
            Ok(c) => prop_assert_eq!(normalize_capability("--x", &c), Ok(c.clone())),
            Err(e) => prop_assert!(names_the_flag(&e), "{}", e),
        }
    }

    #[test]
    fn capability_sets_hold_no_duplicates(
        add in proptest::collection::vec(prop_oneof![Just(ALL.to_string()), "CAP_[A-Z_]{2,8}"], 0..5),
        drop in proptest::collection::vec(prop_oneof![Just(ALL.to_string()), "CAP_[A-Z_]{2,8}"], 0..5),
    ) {
        let caps = capabilities(&add, &drop);
        let mut unique = caps.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), caps.len());
    }

    #[test]
    fn sysctls_read_back_as_themselves(
        s in near("[ ]?(net|kernel|fs)\\.[a-z_.]{0,12}[ ]?=[ ]?[a-z0-9 \n]{0,5}")
    ) {
        match parse_sysctl("--x", &s) {
            Ok((name, value)) => {
                let again = parse_sysctl("--x", &format!("{name}={value}"));
                prop_assert_eq!(again, Ok((name.clone(), value.clone())));
            }
            Err(e) => prop_assert!(names_the_flag(&e), "{}", e),
        }
    }

    #[test]
    fn dns_values_read_back_as_themselves(s in near("[ ]?[0-9a-f:.]{1,20}[a-z.-]{0,10}[ ]?")) {
        for check in [check_dns_server, check_dns_search, check_dns_option] {
            match check("--x", &s) {
                Ok(v) => prop_assert_eq!(check("--x", &v), Ok(v.clone())),
                Err(e) => prop_assert!(names_the_flag(&e), "{}", e),
            }
        }
    }

    #[test]
    fn a_dns_config_keeps_the_lines_it_does_not_replace(
        base in "((nameserver|search|options|domain|#)[ a-z0-9.]{0,10}\n){0,6}",
        servers in proptest::collection::vec("[0-9.]{7,15}", 0..3),
        options in proptest::collection::vec("[a-z:0-9]{1,8}", 0..3),
    ) {
        let dns = DnsConfig { nameservers: servers.clone(), search: Vec::new(), options };
        let out = resolv_conf(&base, &dns);
        for line in base.lines() {
            let key = line.split_whitespace().next().unwrap_or("");
            let replaced = (key == "nameserver" && !servers.is_empty())
                || (key == "options" && !dns.options.is_empty());
            prop_assert_eq!(out.lines().any(|l| l == line), !replaced || line.is_empty());
        }
        for s in &servers {
            let expected = format!("nameserver {s}");
            prop_assert!(out.lines().any(|l| l == expected));
        }
    }

    #[test]
    fn hosts_are_stored_as_lines_that_check_and_match_their_name(
        s in near("[ ]?[a-z0-9._-]{1,12}[:=](10\\.0\\.0\\.[0-9]{1,3}|fd00::[0-9a-f]{1,4}|[a-z]{1,3})[ ]?")
    ) {
        match parse_host("--x", &s) {
            Ok(line) => {
                prop_assert_eq!(check_host_line(&line), Ok(()));
                let (ip, name) = line.split_once(' ').unwrap();
                prop_assert!(host_matches(&line, name));
                let removal = format!("{name}:{ip}");
                prop_assert!(host_matches(&line, &removal));
            }
            Err(e) => prop_assert!(names_the_flag(&e), "{}", e),
        }
        // Stored lines and removals are arbitrary too (the API takes them as they come).
        let _ = check_host_line(&s);
        let _ = host_matches(&s, &s);
    }

    #[test]
    fn groups_read_back_as_themselves(s in near("[ ]?[a-z0-9:]{0,8}[ ]?")) {
        match check_group("--x", &s) {
            Ok(g) => prop_assert_eq!(check_group("--x", &g), Ok(g.clone())),
            Err(e) => prop_assert!(names_the_flag(&e), "{}", e),
        }
    }

    #[test]
    fn oom_score_adj_is_within_its_range(v in any::<i64>()) {
        prop_assert_eq!(check_oom_score_adj(v).is_ok(), (-1000..=1000).contains(&v));
    }
}
