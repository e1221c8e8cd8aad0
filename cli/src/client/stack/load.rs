//! The Compose files as one YAML tree: each file parsed (a syntax error names the file,
//! line and column), its `<<` merge keys applied, its values interpolated, then the files
//! merged in the order given (`interpolate`, `merge`). Pure: the caller reads the files.

pub mod interpolate;
pub mod merge;

use yaml_serde::Value;

use interpolate::Variables;

/// One Compose file: its name as given (for errors) and its text.
pub struct Source {
    pub name: String,
    pub text: String,
}

/// The files merged into one interpolated tree.
pub fn load(files: &[Source], vars: &Variables) -> Result<Value, String> {
    let mut merged: Option<Value> = None;
    for file in files {
        let mut tree: Value = yaml_serde::from_str(&file.text).map_err(|e| match e.location() {
            Some(at) => format!(
                "{}, line {}, column {}: invalid YAML: {}",
                file.name,
                at.line(),
                at.column(),
                strip_location(&e.to_string())
            ),
            None => format!("{}: invalid YAML: {e}", file.name),
        })?;
        if tree.is_null() {
            return Err(format!(
                "{} is empty: a Compose file needs a services section",
                file.name
            ));
        }
        if !tree.is_mapping() {
            return Err(format!(
                "{}: a Compose file is a mapping of top-level keys (services, networks, ...)",
                file.name
            ));
        }
        tree.apply_merge()
            .map_err(|e| format!("{}: invalid merge key (<<): {e}", file.name))?;
        interpolate::interpolate_tree(&mut tree, "", vars)
            .map_err(|e| format!("{}: {e}", file.name))?;
        merged = Some(match merged {
            None => tree,
            Some(base) => {
                merge::merge_files(base, tree).map_err(|e| format!("{}: {e}", file.name))?
            }
        });
    }
    let mut tree = merged.ok_or("give a Compose file with -c FILE")?;
    merge::resolve_tags(&mut tree);
    Ok(tree)
}

/// The parser's message without its own " at line L column C" (said first instead).
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => {
            let rest = &message[i + 1..];
            // Keep what follows the position (", while parsing ...").
            match rest.find(',') {
                Some(j) => format!("{}{}", &message[..i], &rest[j..]),
                None => message[..i].to_string(),
            }
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_syntax_error_names_the_file_line_and_column() {
        let e = load(
            &[source(
                "compose.yml",
                "services:\n  web:\n    image: [a\n  db: x\n",
            )],
            &Variables::new(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("compose.yml, line 4, column 5: invalid YAML: "),
            "{e}"
        );
        assert!(!e.contains("at line 4 column 5"), "said once: {e}");
    }

    #[test]
    fn merge_keys_apply_before_interpolation_and_files_merge_in_order() {
        let base = "x-common: &common\n  image: app:${TAG}\n  environment: {A: '1'}\nservices:\n  web:\n    <<: *common\n    command: [serve]\n  worker:\n    <<: *common\n";
        let over = "services:\n  web:\n    image: app:${TAG:-x}-debug\n";
        let vars = [("TAG".to_string(), "2".to_string())].into_iter().collect();
        let tree = load(&[source("a.yml", base), source("b.yml", over)], &vars).unwrap();
        assert_eq!(tree["services"]["web"]["image"], "app:2-debug");
        assert_eq!(tree["services"]["web"]["command"][0], "serve");
        assert_eq!(tree["services"]["worker"]["image"], "app:2");
        assert_eq!(tree["services"]["worker"]["environment"]["A"], "1");
    }

    #[test]
    fn an_empty_file_or_a_list_is_refused() {
        for text in ["", "[a, b]"] {
            let e = load(&[source("c.yml", text)], &Variables::new()).unwrap_err();
            assert!(e.starts_with("c.yml"), "{e}");
        }
    }
}
