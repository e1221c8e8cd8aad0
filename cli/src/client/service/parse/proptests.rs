//! Property tests of the `service create`/`update` value parsers: any string gives a value
//! or one sentence naming the flag, and what is accepted reads back as itself from the
//! form the user would write for it.

use proptest::prelude::*;

use super::*;

/// Strings near the accepted forms (so both branches are reached) and arbitrary ones.
fn near(form: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![form, any::<String>()]
}

/// An error is one sentence that names the flag (or the value) and says what to write.
fn is_sentence(e: &anyhow::Error, names: &str) -> bool {
    let e = e.to_string();
    e.contains(names) && !e.contains('\n') && e.len() > 20
}

/// The long `--publish` form of a port.
fn long_port(p: &PortConfig) -> String {
    let protocol = if p.protocol() == PortProtocol::Udp {
        "udp"
    } else {
        "tcp"
    };
    let mode = if p.publish_mode() == PublishMode::Host {
        "host"
    } else {
        "ingress"
    };
    let published = if p.published_port == 0 {
        String::new()
    } else {
        format!("published={},", p.published_port)
    };
    format!(
        "{published}target={},protocol={protocol},mode={mode}",
        p.target_port
    )
}

/// The `--mount` form of a mount.
fn mount_form(m: &Mount) -> String {
    let kind = match m.r#type() {
        MountType::Bind => "bind",
        MountType::Volume => "volume",
        MountType::Tmpfs => "tmpfs",
    };
    let mut out = format!("type={kind},target={},readonly={}", m.target, m.read_only);
    if !m.source.is_empty() {
        out.push_str(&format!(",source={}", m.source));
    }
    if m.tmpfs_size_bytes > 0 {
        out.push_str(&format!(",tmpfs-size={}", m.tmpfs_size_bytes));
    }
    out
}

/// A word quoted for [`shell_words`] (single quotes; a quote itself as `'\''`).
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn numbers_read_back_as_themselves(n in any::<u64>(), s in near("[ ]?[0-9]{0,22}[ x-]?")) {
        prop_assert_eq!(count("--x", &n.to_string()).unwrap(), n);
        for result in [
            count("--x", &s).map(|_| ()),
            positive("--x", &s).map(|_| ()),
            count_u32("--x", &s).map(|_| ()),
            pids("--x", &s).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(is_sentence(&e, "--x"), "{}", e);
            }
        }
        if let Ok(n) = pids("--x", &s) {
            prop_assert!(n >= 0);
        }
    }

    #[test]
    fn ratios_are_between_0_and_1(s in near("[ ]?[0-9.]{0,6}[ ]?")) {
        match ratio("--x", &s) {
            Ok(r) => prop_assert!((0.0..=1.0).contains(&r)),
            Err(e) => prop_assert!(is_sentence(&e, "--x"), "{}", e),
        }
    }

    #[test]
    fn memory_sizes_read_back_in_bytes(
        n in 0u64..(1 << 40),
        unit in prop::sample::select(vec![("", 0), ("b", 0), ("k", 1), ("m", 2), ("g", 3), ("KiB", 1), ("MB", 2)]),
        s in near("[ ]?[0-9.]{0,25}[ ]?[kmgtpbiKMGTPBI]{0,3}"),
    ) {
        let (suffix, power) = unit;
        let expected = n.checked_mul(1024u64.pow(power)).filter(|b| *b < (1 << 53));
        if let Some(bytes) = expected {
            prop_assert_eq!(memory("--x", &format!("{n}{suffix}")).unwrap(), bytes as i64);
        }
        match memory("--x", &s) {
            Ok(bytes) => prop_assert!(bytes >= 0),
            Err(e) => prop_assert!(is_sentence(&e, "--x"), "{}", e),
        }
    }

    #[test]
    fn cpus_read_back_in_billionths(
        nanos in 0i64..i64::MAX,
        s in near("[ ]?[0-9]{0,21}(\\.[0-9]{0,12})?[ ]?"),
    ) {
        let written = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
        prop_assert_eq!(cpus("--x", &written).unwrap(), nanos);
        if let Err(e) = cpus("--x", &s) {
            prop_assert!(is_sentence(&e, "--x"), "{}", e);
        }
    }

    #[test]
    fn signals_normalize_to_a_fixed_point(s in near("[ ]?(SIG|sig)?(TERM|int|RTMIN|RTMAX|bogus|[0-9]{1,3})([+-][0-9]{1,4})?")) {
        match signal(&s) {
            Ok(sig) => prop_assert_eq!(signal(&sig).unwrap(), sig),
            Err(e) => prop_assert!(is_sentence(&e, "--stop-signal"), "{}", e),
        }
    }

    #[test]
    fn quoted_words_split_back_into_themselves(
        words in proptest::collection::vec(any::<String>(), 0..5),
        s in any::<String>(),
    ) {
        let line: Vec<String> = words.iter().map(|w| quoted(w)).collect();
        prop_assert_eq!(shell_words("--x", &line.join(" ")).unwrap(), words);
        if let Err(e) = shell_words("--x", &s) {
            prop_assert!(is_sentence(&e, "--x"), "{}", e);
        }
    }

    #[test]
    fn published_ports_read_back_from_their_long_form(
        s in near("([0-9]{1,5}(-[0-9]{1,5})?:)?[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|UDP|sctp))?"),
    ) {
        match publish(&s) {
            Ok(ports) => {
                prop_assert!(!ports.is_empty());
                for p in &ports {
                    prop_assert!((1..=65535).contains(&p.target_port));
                    prop_assert!(p.published_port <= 65535);
                    prop_assert_eq!(&publish(&long_port(p)).unwrap(), &vec![p.clone()]);
                }
            }
            Err(e) => prop_assert!(is_sentence(&e, "--publish"), "{}", e),
        }
    }

    #[test]
    fn long_published_ports_read_back(
        s in near("(published=[0-9]{1,5},)?(target=[0-9]{1,6})?(,protocol=(tcp|udp|x))?(,mode=(host|ingress|x))?(,bogus=1)?"),
    ) {
        match publish(&s) {
            Ok(ports) => {
                prop_assert_eq!(ports.len(), 1);
                prop_assert_eq!(&publish(&long_port(&ports[0])).unwrap(), &ports);
            }
            Err(e) => prop_assert!(is_sentence(&e, "--publish"), "{}", e),
        }
    }

    #[test]
    fn mounts_read_back_as_themselves(
        s in near("(type=(bind|volume|tmpfs|x),)?((source|src)=/?[a-z]{0,4},)?((target|dst)=/?[a-z]{0,4},)?(ro|readonly=(true|0|x))?(,tmpfs-size=[0-9]{1,4}[mkx]?)?"),
    ) {
        match mount("--x", &s) {
            Ok(m) => {
                prop_assert!(m.target.starts_with('/'));
                prop_assert_eq!(mount("--x", &mount_form(&m)).unwrap(), m);
            }
            Err(e) => prop_assert!(is_sentence(&e, "--x"), "{}", e),
        }
    }

    #[test]
    fn networks_read_back_as_themselves(
        s in near("[ ]?((name|target)=[a-z]{0,4}(,alias=[a-z]{0,3}){0,2}|[a-z]{1,5})[ ]?"),
    ) {
        match network(&s) {
            Ok(n) => {
                prop_assert!(!n.target.is_empty());
                // A bare name may hold a comma (as Docker takes it); the long form cannot.
                let mut form = if n.target.contains(',') {
                    n.target.clone()
                } else {
                    format!("name={}", n.target)
                };
                for alias in &n.aliases {
                    form.push_str(&format!(",alias={alias}"));
                }
                prop_assert_eq!(network(&form).unwrap(), n);
            }
            Err(e) => prop_assert!(is_sentence(&e, "--network"), "{}", e),
        }
    }

    #[test]
    fn secret_and_config_references_read_back(
        s in near("[ ]?((source|src)=[a-z]{0,4}(,target=[a-z/]{1,4})?(,uid=[0-9]{1,11})?(,gid=[0-9]{1,3})?(,mode=0?[0-9]{1,4})?|[a-z,]{0,5})[ ]?"),
    ) {
        match secret("--secret", &s) {
            Ok(r) => {
                let form = format!(
                    "source={},target={},uid={},gid={},mode={:o}",
                    r.secret_name, r.target, r.uid, r.gid, r.mode
                );
                let again = secret("--secret", &form).unwrap();
                prop_assert_eq!(again, r);
            }
            Err(e) => prop_assert!(is_sentence(&e, "--secret"), "{}", e),
        }
        if let Err(e) = config("--config", &s) {
            prop_assert!(is_sentence(&e, "--config"), "{}", e);
        }
    }

    #[test]
    fn constraints_read_back_from_their_canonical_form(
        s in near("[ ]?(node\\.(id|ROLE|hostname|platform\\.os|labels\\.[a-z!=]{0,3})|bogus)[ ]?(==|!=|=)[ ]?[a-z=!]{0,5}[ ]?"),
    ) {
        match constraint(&s) {
            Ok(c) => prop_assert_eq!(constraint(&c).unwrap(), c),
            Err(e) => prop_assert!(is_sentence(&e, "constraint"), "{}", e),
        }
        match placement_pref(&s) {
            Ok(attribute) => {
                let again = placement_pref(&format!("spread={attribute}")).unwrap();
                prop_assert_eq!(again, attribute);
            }
            Err(e) => prop_assert!(is_sentence(&e, "placement preference"), "{}", e),
        }
    }

    #[test]
    fn other_values_never_panic(s in any::<String>()) {
        let _ = env(&s, |_| None);
        let _ = label("--x", &s);
        let _ = restart_condition(&s);
    }
}
