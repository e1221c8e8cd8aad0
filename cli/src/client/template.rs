//! Go templates for `--format`, as Docker's CLI runs them: `{{.Spec.Name}}`, `{{json .}}`,
//! `{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}`, with the functions
//! Docker adds to Go's (`json`, `join`, `split`, `upper`, `lower`, `title`, `pad`,
//! `truncate`) beside Go's own (`len`, `index`, `print`, `println`, `printf`, `eq`, `and`,
//! `or`, `not`, ...).
//!
//! The engine is the `gtmpl` crate (Go's `text/template` in Rust); this module gives it
//! Docker's functions, turns JSON values into its values, and words its errors as Docker
//! does ("template parsing error: ..."). What it does not do as Go does, recorded in
//! ARCHITECTURE.md: a list or map printed without `json` shows in Rust's form, and `range`
//! over a map visits keys in no fixed order.

use std::collections::HashMap;

use anyhow::anyhow;
use gtmpl::{Context, Func, FuncError, Value};
use serde_json::Value as Json;

/// A parsed `--format` template.
pub struct Template {
    inner: gtmpl::Template,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("text", &self.inner.text)
            .finish()
    }
}

impl Template {
    /// Parses `text` with Docker's functions; the error is one sentence, as Docker's.
    pub fn parse(text: &str) -> anyhow::Result<Template> {
        Self::with_funcs(text, FUNCS)
    }

    /// Parses `text` for a `table` format's header row, which Docker renders with
    /// functions that pass their first argument through (`{{upper .Name}}` heads its
    /// column with `NAME`, not `NAME` upper-cased or a JSON string).
    pub fn parse_header(text: &str) -> anyhow::Result<Template> {
        Self::with_funcs(text, HEADER_FUNCS)
    }

    fn with_funcs(text: &str, funcs: &[(&str, Func)]) -> anyhow::Result<Template> {
        let mut inner = gtmpl::Template::default();
        inner.add_funcs(funcs);
        // Go's builtin `len` does not measure maps; Docker's objects are maps.
        inner.add_func("len", len);
        inner
            .parse(text)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        inner.text = text.to_string();
        Ok(Template { inner })
    }

    /// Runs the template on `data`. `strict`: a missing field is an error (the rows of
    /// `ls` and `ps`, which Docker's formatters give as structs) rather than `<no value>`
    /// (inspect's objects, which Docker gives as maps).
    pub fn render(&self, data: &Json, strict: bool) -> anyhow::Result<String> {
        self.inner
            .render(&Context::from(to_value(data, strict)))
            .map_err(|e| anyhow!("template execution error: {e}"))
    }
}

/// A JSON value as a template value: objects as maps (a missing key reads as `<no value>`)
/// or, `strict`, as objects (a missing field is an error).
pub fn to_value(json: &Json, strict: bool) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(|i| to_value(i, strict)).collect()),
        Json::Object(map) => {
            let map: HashMap<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v, strict)))
                .collect();
            if strict {
                Value::Object(map)
            } else {
                Value::Map(map)
            }
        }
    }
}

/// A template value as JSON (for `json`): maps with sorted keys, as Go's encoder writes them.
fn to_json(value: &Value) -> Json {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64().map(Json::from).unwrap_or(Json::Null)
            }
        }
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Object(map) | Value::Map(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

const FUNCS: &[(&str, Func)] = &[
    ("json", json),
    ("join", join),
    ("split", split),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("pad", pad),
    ("truncate", truncate),
];

const HEADER_FUNCS: &[(&str, Func)] = &[
    ("json", first),
    ("join", first),
    ("split", first),
    ("upper", first),
    ("lower", first),
    ("title", first),
    ("pad", first),
    ("truncate", first),
];

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

/// A value as a string argument: strings as they are, anything else as printed.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(name: &str, v: &Value) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|u| u as usize)
            .ok_or_else(|| FuncError::Generic(format!("{name} needs a whole number, not {n}"))),
        other => Err(FuncError::Generic(format!(
            "{name} needs a number, not {other}"
        ))),
    }
}

/// `json`: the value as compact JSON.
fn json(args: &[Value]) -> Result<Value, FuncError> {
    arity("json", args, 1)?;
    serde_json::to_string(&to_json(&args[0]))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

/// `join LIST SEP`.
fn join(args: &[Value]) -> Result<Value, FuncError> {
    arity("join", args, 2)?;
    let sep = text(&args[1]);
    match &args[0] {
        Value::Array(items) => Ok(Value::String(
            items.iter().map(text).collect::<Vec<_>>().join(&sep),
        )),
        Value::Nil | Value::NoValue => Ok(Value::String(String::new())),
        other => Err(FuncError::Generic(format!(
            "join needs a list, not {other}"
        ))),
    }
}

/// `split TEXT SEP`.
fn split(args: &[Value]) -> Result<Value, FuncError> {
    arity("split", args, 2)?;
    let (s, sep) = (text(&args[0]), text(&args[1]));
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    arity("upper", args, 1)?;
    Ok(Value::String(text(&args[0]).to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    arity("lower", args, 1)?;
    Ok(Value::String(text(&args[0]).to_lowercase()))
}

/// `title`: the first letter of every word upper-cased.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    arity("title", args, 1)?;
    let mut out = String::new();
    let mut start = true;
    for c in text(&args[0]).chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

/// `pad TEXT LEFT RIGHT`: spaces either side.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    arity("pad", args, 3)?;
    let (left, right) = (number("pad", &args[1])?, number("pad", &args[2])?);
    Ok(Value::String(format!(
        "{}{}{}",
        " ".repeat(left),
        text(&args[0]),
        " ".repeat(right)
    )))
}

/// `truncate TEXT N`: at most N characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    arity("truncate", args, 2)?;
    let n = number("truncate", &args[1])?;
    Ok(Value::String(text(&args[0]).chars().take(n).collect()))
}

/// `len`: of a string (bytes, as Go), a list or a map.
fn len(args: &[Value]) -> Result<Value, FuncError> {
    arity("len", args, 1)?;
    let n = match &args[0] {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Object(m) | Value::Map(m) => m.len(),
        Value::Nil | Value::NoValue => 0,
        other => return Err(FuncError::Generic(format!("cannot take len of {other}"))),
    };
    Ok(Value::from(n as u64))
}

/// A header function: its first argument, as it is.
fn first(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args.first().cloned().unwrap_or(Value::NoValue))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Json {
        json!({
            "ID": "abc",
            "Spec": {
                "Name": "web",
                "Labels": {"tier": "front"},
                "Mode": {"Replicated": {"Replicas": 3}},
                "TaskTemplate": {"ContainerSpec": {"Env": ["A=1", "B=2"]}},
            },
        })
    }

    fn render(text: &str, data: &Json) -> String {
        Template::parse(text).unwrap().render(data, false).unwrap()
    }

    #[test]
    fn fields_and_functions_as_docker_runs_them() {
        let s = service();
        for (text, want) in [
            ("{{.Spec.Name}}", "web"),
            ("{{json .Spec.Mode}}", r#"{"Replicated":{"Replicas":3}}"#),
            ("{{.Spec.Mode.Replicated.Replicas}}", "3"),
            (r#"{{index .Spec.Labels "tier"}}"#, "front"),
            (
                r#"{{join .Spec.TaskTemplate.ContainerSpec.Env ","}}"#,
                "A=1,B=2",
            ),
            (
                "{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}",
                "A=1\nB=2\n",
            ),
            ("{{len .Spec.TaskTemplate.ContainerSpec.Env}}", "2"),
            ("{{len .Spec.Labels}}", "1"),
            ("{{upper .Spec.Name}} {{lower \"WEB\"}}", "WEB web"),
            (r#"{{title "hello swarm-mode"}}"#, "Hello Swarm-Mode"),
            (r#"{{index (split "a:b" ":") 1}}"#, "b"),
            (r#"{{pad .Spec.Name 1 2}}|"#, " web  |"),
            ("{{truncate .ID 2}}", "ab"),
            ("{{if eq .Spec.Name \"web\"}}yes{{else}}no{{end}}", "yes"),
            ("{{.Spec.Nothing}}", "<no value>"),
        ] {
            assert_eq!(render(text, &s), want, "{text}");
        }
        // `json .` sorts keys, as Go's encoder does for a map.
        assert_eq!(
            render(
                "{{json .}}",
                &json!({"b": 1, "a": [true, null], "c": "x<y"})
            ),
            r#"{"a":[true,null],"b":1,"c":"x<y"}"#
        );
    }

    #[test]
    fn bad_templates_are_one_sentence() {
        for text in ["{{.Name", "{{nosuch .}}", "{{end}}"] {
            let e = Template::parse(text).unwrap_err().to_string();
            assert!(e.starts_with("template parsing error: "), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // A row has the fields Docker's formatter gives it, no others.
        let t = Template::parse("{{.Nope}}").unwrap();
        let e = t.render(&json!({"Name": "web"}), true).unwrap_err();
        assert!(
            e.to_string().starts_with("template execution error: "),
            "{e}"
        );
        assert!(Template::parse("{{join .X}}")
            .unwrap()
            .render(&json!({"X": []}), true)
            .is_err());
    }

    #[test]
    fn header_functions_pass_their_argument_through() {
        let t = Template::parse_header("{{upper .Name}}\t{{json .Replicas}}").unwrap();
        let headers = json!({"Name": "NAME", "Replicas": "REPLICAS"});
        assert_eq!(t.render(&headers, true).unwrap(), "NAME\tREPLICAS");
    }
}
