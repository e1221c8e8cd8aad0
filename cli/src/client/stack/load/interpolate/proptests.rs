//! Property tests of Compose interpolation: any string interpolates or fails with a
//! sentence, `$$` gives back the text it escapes, and the defaults and replacements of
//! every form follow Compose.

use proptest::prelude::*;

use super::*;

/// `text` written so that interpolation gives it back: every `$` doubled.
fn escaped(text: &str) -> String {
    text.replace('$', "$$")
}

fn variables() -> impl Strategy<Value = Variables> {
    proptest::collection::hash_map("[A-Z_][A-Z0-9_]{0,3}", any::<String>(), 0..4)
}

/// Text for a default or replacement: anything but `}`, which ends it (Compose has no way
/// to write one there).
fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z${: -]{0,6}",
        any::<String>().prop_map(|s| s.replace('}', "")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_string_interpolates_or_fails_with_a_sentence(
        s in prop_oneof![
            "([a-z ]|\\$\\$?|\\$\\{|\\}|[A-Z_]{1,3}|:?[-?+]){0,12}",
            any::<String>(),
        ],
        vars in variables(),
    ) {
        if let Err(e) = interpolate(&s, &vars) {
            prop_assert!(
                e.starts_with("invalid interpolation in") || e.starts_with("required variable"),
                "{}", e
            );
        }
    }

    #[test]
    fn doubled_dollars_give_back_the_text(text in any::<String>(), vars in variables()) {
        prop_assert_eq!(interpolate(&escaped(&text), &vars), Ok(text));
    }

    #[test]
    fn variables_give_their_values_as_they_are(vars in variables(), name in "[A-Z_][A-Z0-9_]{0,3}") {
        let value = vars.get(&name).cloned().unwrap_or_default();
        prop_assert_eq!(interpolate(&format!("${{{name}}}"), &vars), Ok(value.clone()));
        // `$NAME` ends at the first character that cannot be in a name.
        prop_assert_eq!(interpolate(&format!("${name}/"), &vars), Ok(format!("{value}/")));
    }

    #[test]
    fn defaults_and_replacements_follow_compose(
        vars in variables(),
        name in "[A-Z_][A-Z0-9_]{0,3}",
        arg in argument(),
    ) {
        let value = vars.get(&name).cloned();
        let set = value.is_some();
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let value = value.unwrap_or_default();
        let arg_text = escaped(&arg);
        let run = |op: &str| interpolate(&format!("${{{name}{op}{arg_text}}}"), &vars);
        prop_assert_eq!(run(":-"), Ok(if non_empty { value.clone() } else { arg.clone() }));
        prop_assert_eq!(run("-"), Ok(if set { value.clone() } else { arg.clone() }));
        prop_assert_eq!(run(":+"), Ok(if non_empty { arg.clone() } else { String::new() }));
        prop_assert_eq!(run("+"), Ok(if set { arg.clone() } else { String::new() }));
        match run(":?") {
            Ok(v) => prop_assert!(non_empty && v == value),
            Err(e) => {
                prop_assert!(!non_empty);
                prop_assert!(e.contains(&format!("required variable {name}")), "{}", e);
            }
        }
    }

    #[test]
    fn env_files_parse_or_name_the_line(text in any::<String>()) {
        if let Err(e) = parse_env_file(&text, ".env") {
            prop_assert!(e.starts_with(".env, line "), "{}", e);
        }
    }
}

#[test]
fn an_escaped_dollar_before_a_brace_opens_no_variable_in_a_default() {
    // `$${` in a default once counted as a nested `${` and left the default unclosed.
    let vars = Variables::new();
    assert_eq!(interpolate("${X:-$${}", &vars), Ok("${".to_string()));
    assert_eq!(
        interpolate("${X:-a$${b}c}", &vars),
        Ok("a${bc}".to_string())
    );
}
