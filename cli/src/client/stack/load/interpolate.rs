//! Variable interpolation as Compose does it, in every string value of a file (never in
//! keys): `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
//! `${VAR?message}`, `${VAR:+replacement}`, `${VAR+replacement}`, and `$$` for a literal
//! `$`. A default or replacement may itself hold variables.
//!
//! Interpolation runs on each file before the files are merged (as Compose), so an error
//! names the key where the variable was written.

use std::collections::HashMap;

use yaml_serde::Value;

/// The variables a file is interpolated from: this shell's environment over the `.env`
/// file beside the first Compose file (the shell wins, as in Compose).
pub type Variables = HashMap<String, String>;

/// Interpolates every string in `value` (keys excepted); `path` is where `value` sits, for
/// errors (`services.web.image`).
pub fn interpolate_tree(value: &mut Value, path: &str, vars: &Variables) -> Result<(), String> {
    match value {
        Value::String(s) => {
            *s = interpolate(s, vars).map_err(|e| format!("{path}: {e}"))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), vars)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => yaml_serde::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(v, &child, vars)?;
            }
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, path, vars)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Interpolates one string.
pub fn interpolate(s: &str, vars: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some(&n) if is_name_start(n) => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && is_name_char(chars[end]) {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
                i = end;
            }
            Some('{') => {
                // The matching brace, counting nested `${` (a `$$` is a literal `$`, so
                // `$${` opens nothing).
                let mut depth = 1;
                let mut j = i + 2;
                while j < chars.len() {
                    match chars[j] {
                        '$' if chars.get(j + 1) == Some(&'$') => j += 1,
                        '$' if chars.get(j + 1) == Some(&'{') => {
                            depth += 1;
                            j += 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!(
                        "invalid interpolation in {s:?}: a ${{ has no closing }}; write $$ for a literal $"
                    ));
                }
                let inner: String = chars[i + 2..j].iter().collect();
                out.push_str(&braced(&inner, s, vars)?);
                i = j + 1;
            }
            _ => {
                return Err(format!(
                    "invalid interpolation in {s:?}: a $ starts $VAR or ${{VAR}}; write $$ for a literal $"
                ))
            }
        }
    }
    Ok(out)
}

/// The value of `${inner}`.
fn braced(inner: &str, whole: &str, vars: &Variables) -> Result<String, String> {
    let name_end = inner
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map_or(inner.len(), |(i, _)| i);
    let (name, rest) = inner.split_at(name_end);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!(
            "invalid interpolation in {whole:?}: ${{{inner}}} names no variable; use ${{NAME}} with letters, digits and _"
        ));
    }
    let value = vars.get(name);
    let (colon, rest) = match rest.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // With a colon an empty value counts as unset.
    let set = value.is_some_and(|v| !colon || !v.is_empty());
    let Some(op) = rest.chars().next() else {
        if colon {
            return Err(format!(
                "invalid interpolation in {whole:?}: ${{{inner}}} needs -, ?, or + after the colon"
            ));
        }
        return Ok(value.cloned().unwrap_or_default());
    };
    let arg = &rest[op.len_utf8()..];
    match op {
        '-' if set => Ok(value.cloned().unwrap_or_default()),
        '-' => interpolate(arg, vars),
        '+' if set => interpolate(arg, vars),
        '+' => Ok(String::new()),
        '?' if set => Ok(value.cloned().unwrap_or_default()),
        '?' => {
            let message = interpolate(arg, vars)?;
            let what = if colon { "empty or unset" } else { "unset" };
            Err(if message.is_empty() {
                format!("required variable {name} is {what}; set it in the environment or in .env")
            } else {
                format!("required variable {name} is {what}: {message}")
            })
        }
        _ => Err(format!(
            "invalid interpolation in {whole:?}: ${{{inner}}} is not ${{VAR}}, ${{VAR:-default}}, ${{VAR-default}}, ${{VAR:?message}} or ${{VAR?message}}"
        )),
    }
}

/// Reads a `.env` file: `KEY=VALUE` lines, `#` comments, blank lines, an optional
/// `export `, values in single quotes (as written) or double quotes (with `\n`, `\"`,
/// `\\`), and an unquoted value's trailing ` # comment` removed.
pub fn parse_env_file(text: &str, file: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{file}, line {}: {line:?} is not KEY=VALUE", n + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.starts_with(is_name_start) || !key.chars().all(is_name_char) {
            return Err(format!(
                "{file}, line {}: {key:?} is not a variable name (letters, digits and _)",
                n + 1
            ));
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v.replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        vars.push((key.to_string(), value));
    }
    Ok(vars)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        [("TAG", "1.2"), ("EMPTY", ""), ("NAME", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_form_interpolates_as_compose_does() {
        let v = vars();
        let cases = [
            ("app:$TAG", "app:1.2"),
            ("app:${TAG}", "app:1.2"),
            ("$NAME-x", "web-x"),
            ("${MISSING}", ""),
            ("$MISSING/x", "/x"),
            ("${MISSING:-latest}", "latest"),
            ("${EMPTY:-latest}", "latest"),
            ("${EMPTY-latest}", ""),
            ("${MISSING-latest}", "latest"),
            ("${TAG:-latest}", "1.2"),
            ("${TAG:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${MISSING+set}", ""),
            ("${TAG:?need a tag}", "1.2"),
            ("${EMPTY?fine when set}", ""),
            ("${MISSING:-${NAME}-default}", "web-default"),
            ("cost: $$5 and $${TAG}", "cost: $5 and ${TAG}"),
            ("$$$TAG", "$1.2"),
            ("no dollars", "no dollars"),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, &v).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn required_and_malformed_variables_are_refused_with_the_reason() {
        let v = vars();
        let cases = [
            (
                "${MISSING:?give a tag}",
                "required variable MISSING is empty or unset: give a tag",
            ),
            (
                "${EMPTY:?give a tag}",
                "required variable EMPTY is empty or unset: give a tag",
            ),
            (
                "${MISSING?}",
                "required variable MISSING is unset; set it in the environment or in .env",
            ),
            ("${TAG", "has no closing }"),
            ("price $5", "write $$ for a literal $"),
            ("${}", "names no variable"),
            ("${TAG:}", "needs -, ?, or + after the colon"),
            ("${TAG%x}", "is not ${VAR}"),
        ];
        for (input, want) in cases {
            let e = interpolate(input, &v).unwrap_err();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn a_tree_is_interpolated_in_values_only_and_errors_name_the_path() {
        let v = vars();
        let mut tree: Value = yaml_serde::from_str(
            "services:\n  $NAME:\n    image: app:${TAG}\n    command: [echo, $$HOME]\n    replicas: 3\n",
        )
        .unwrap();
        interpolate_tree(&mut tree, "", &v).unwrap();
        let service = &tree["services"]["$NAME"];
        assert_eq!(service["image"], "app:1.2");
        assert_eq!(service["command"][1], "$HOME");
        let mut bad: Value =
            yaml_serde::from_str("services:\n  web:\n    ports: [\"${P:?publish a port}\"]\n")
                .unwrap();
        let e = interpolate_tree(&mut bad, "", &v).unwrap_err();
        assert_eq!(
            e,
            "services.web.ports[0]: required variable P is empty or unset: publish a port"
        );
    }

    #[test]
    fn env_files_read_as_compose_reads_them() {
        let text = "# settings\n\nTAG=1.2\nexport NAME = web \nQUOTED=\"a b\\nc\"\nRAW='$x y'\nEMPTY=\nNOTE=on # a comment\n";
        let vars = parse_env_file(text, ".env").unwrap();
        let want = [
            ("TAG", "1.2"),
            ("NAME", "web"),
            ("QUOTED", "a b\nc"),
            ("RAW", "$x y"),
            ("EMPTY", ""),
            ("NOTE", "on"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        let e = parse_env_file("A=1\njust words\n", "/srv/.env").unwrap_err();
        assert_eq!(e, "/srv/.env, line 2: \"just words\" is not KEY=VALUE");
    }
}
