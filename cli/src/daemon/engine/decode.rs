//! Request bodies and query strings read as dockerd reads them.
//!
//! Go's `encoding/json` matches a JSON key to a struct field case-insensitively
//! (`"replicas"` fills `Replicas`), and Docker's clients rely on it. [`body`] does the same
//! over serde: a deserializer over the parsed JSON that renames each key of an object to
//! the struct field it matches, ignoring case, before the struct sees it. Unlike dockerd,
//! a key that matches no field is refused, naming where it is
//! (`unknown field "Foo" in TaskTemplate.ContainerSpec`), since a setting silently dropped
//! is worse than a refusal; type errors name their place the same way.
//!
//! [`Query`] reads query strings, with Docker's boolean rules, and [`Filters`] the
//! `filters` parameter in both of its JSON forms (`{"name":{"web":true}}` and the older
//! `{"name":["web"]}`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Why a body could not be read, with where.
#[derive(Debug)]
pub struct DecodeError {
    message: String,
    path: Option<String>,
}

impl DecodeError {
    fn at(mut self, path: &str) -> Self {
        if self.path.is_none() && !path.is_empty() {
            self.path = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} at {path}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            message: msg.to_string(),
            path: None,
        }
    }
}

/// Reads a JSON body into `T`, as Docker's decoder matches names; the error is a 400 that
/// says what is wrong and where.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?
    };
    value_as(value)
}

/// Reads an already parsed JSON value into `T` (see [`body`]).
pub fn value_as<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    T::deserialize(Walk {
        value,
        path: String::new(),
    })
    .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// A JSON value and where it is in the body.
struct Walk {
    value: Value,
    path: String,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

macro_rules! null_is_zero {
    ($($method:ident => $visit:ident($zero:expr),)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
                if self.value.is_null() {
                    let path = self.path;
                    return visitor.$visit::<DecodeError>($zero).map_err(|e| e.at(&path));
                }
                self.deserialize_any(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Walk {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let path = self.path;
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.into_iter().enumerate(),
                path: path.clone(),
            }),
            Value::Object(map) => visitor.visit_map(Fields {
                entries: map.into_iter().collect::<Vec<_>>().into_iter(),
                pending: None,
                path: path.clone(),
            }),
        };
        result.map_err(|e| e.at(&path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.value.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let path = self.path;
        let map = match self.value {
            Value::Object(map) => map,
            // Go decodes null into a struct as "leave it as it is".
            Value::Null => Map::new(),
            other => {
                return Err(<DecodeError as de::Error>::custom(format!(
                    "expected an object, found {}",
                    kind(&other)
                ))
                .at(&path))
            }
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            let name = fields
                .iter()
                .find(|f| **f == key)
                .or_else(|| fields.iter().find(|f| f.eq_ignore_ascii_case(&key)));
            match name {
                Some(name) => entries.push((name.to_string(), value)),
                None if path.is_empty() => {
                    return Err(de::Error::custom(format!(
                        "unknown field \"{key}\"; skiff has no such setting, remove it"
                    )))
                }
                None => {
                    return Err(de::Error::custom(format!(
                        "unknown field \"{key}\" in {path}; skiff has no such setting, remove it"
                    )))
                }
            }
        }
        visitor
            .visit_map(Fields {
                entries: entries.into_iter(),
                pending: None,
                path: path.clone(),
            })
            .map_err(|e| e.at(&path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::String(s) => visitor
                .visit_enum(s.into_deserializer())
                .map_err(|e: DecodeError| e.at(&self.path)),
            other => Err(<DecodeError as de::Error>::custom(format!(
                "expected a string, found {}",
                kind(&other)
            ))
            .at(&self.path)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    // Go decodes `null` into anything as "leave it at its zero value"; Go clients send it
    // for nil maps and slices.
    null_is_zero! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.value.is_null() {
            return visitor.visit_seq(Seq {
                items: Vec::new().into_iter().enumerate(),
                path: self.path,
            });
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.value.is_null() {
            return visitor.visit_map(Fields {
                entries: Vec::new().into_iter(),
                pending: None,
                path: self.path,
            });
        }
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

struct Seq {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: String,
}

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = DecodeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.items.next() {
            Some((i, value)) => seed
                .deserialize(Walk {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Fields {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<(String, Value)>,
    path: String,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = DecodeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.entries.next() {
            Some((key, value)) => {
                let k = seed.deserialize(key.clone().into_deserializer())?;
                self.pending = Some((key, value));
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| <DecodeError as de::Error>::custom("a value without a key"))?;
        seed.deserialize(Walk {
            value,
            path: child(&self.path, &key),
        })
    }
}

/// Whether a JSON value is Go's zero value for its type (`false`, `0`, `""`, `null`, `[]`,
/// `{}`, or an object of zero values): what a Go client sends for a field it did not set.
pub fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// Refuses the first of `fields` (a name, as the request spells its place, and the value
/// sent) that is set to anything but its zero value: skiff has no place for it, and
/// dropping it silently would run something other than what was asked.
pub fn refuse_unsupported(fields: &[(&str, &Option<Value>)]) -> Result<(), ApiError> {
    for (name, value) in fields {
        if let Some(v) = value {
            if !is_zero(v) {
                return Err(ApiError::bad_request(format!(
                    "{name} is not supported by skiff; remove it from the request"
                )));
            }
        }
    }
    Ok(())
}

/// A query string.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw` (the part after `?`).
    pub fn parse(raw: Option<&str>) -> Self {
        Self {
            pairs: raw
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Docker's boolean: absent, empty, `0`, `no`, `false` and `none` are false.
    pub fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    /// The `version` an update names.
    pub fn version(&self) -> Result<u64, ApiError> {
        let raw = self.get("version").unwrap_or("");
        raw.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid version \"{raw}\": give the Version.Index the object was read at"
            ))
        })
    }

    /// The `filters` parameter.
    pub fn filters(&self) -> Result<Filters, ApiError> {
        Filters::parse(self.get("filters").unwrap_or(""))
    }
}

/// Docker's `filters`: a name to the values asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses both of Docker's forms; empty means no filter.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let bad = |why: &str| {
            ApiError::bad_request(format!(
                "invalid filters \"{raw}\": {why}; send JSON such as {{\"name\":{{\"web\":true}}}}"
            ))
        };
        let value: Value = serde_json::from_str(raw).map_err(|e| bad(&e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(bad("not a JSON object"));
        };
        let mut filters = BTreeMap::new();
        for (name, values) in map {
            let list: Vec<String> = match values {
                Value::Object(set) => set
                    .into_iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(v, _)| v)
                    .collect(),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        other => Err(bad(&format!("{name} holds {}", kind(&other)))),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(bad(&format!("{name} holds {}", kind(&other)))),
            };
            filters.insert(name, list);
        }
        Ok(Self(filters))
    }

    /// The values of `name` (empty if it is not there).
    pub fn values(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Refuses a filter name outside `known`, as dockerd does.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!(
                "invalid filter '{k}'; use one of: {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Whether `value` passes the filter `name`: true when there is no such filter or
    /// `accept` holds for one of its values.
    pub fn matches(&self, name: &str, accept: impl Fn(&str) -> bool) -> bool {
        let values = self.values(name);
        values.is_empty() || values.iter().any(|v| accept(v))
    }

    /// Docker's label filter over `labels`: each value is `KEY` (present) or `KEY=VALUE`;
    /// every one must hold.
    pub fn labels_match(
        &self,
        name: &str,
        labels: &std::collections::HashMap<String, String>,
    ) -> bool {
        self.values(name)
            .iter()
            .all(|want| match want.split_once('=') {
                Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
                None => labels.contains_key(want.as_str()),
            })
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Inner {
        replicas: Option<u64>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Outer {
        name: String,
        mode: Option<Inner>,
        labels: std::collections::HashMap<String, String>,
        list: Vec<Inner>,
    }

    #[test]
    fn field_names_match_ignoring_case_as_gos_decoder() {
        let got: Outer =
            body(br#"{"name":"web","MODE":{"replicas":3},"labels":{"a":"B"}}"#).unwrap();
        assert_eq!(got.name, "web");
        assert_eq!(got.mode, Some(Inner { replicas: Some(3) }));
        // Map keys are data, not field names: kept as sent.
        assert_eq!(got.labels["a"], "B");
    }

    #[test]
    fn unknown_fields_are_refused_naming_where_they_are() {
        let e = body::<Outer>(br#"{"Mode":{"Replicas":1,"Bogus":2}}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("unknown field \"Bogus\" in Mode"), "{e}");
        let e = body::<Outer>(br#"{"List":[{},{"Nope":1}]}"#).unwrap_err();
        assert!(
            e.message.contains("unknown field \"Nope\" in List[1]"),
            "{e}"
        );
        let e = body::<Outer>(br#"{"Top":1}"#).unwrap_err();
        assert!(e.message.contains("unknown field \"Top\""), "{e}");
    }

    #[test]
    fn wrong_types_are_refused_naming_where_they_are() {
        let e = body::<Outer>(br#"{"Mode":{"Replicas":"three"}}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("Mode.Replicas"), "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = body::<Outer>(b"{not json").unwrap_err();
        assert!(e.message.contains("not JSON"), "{e}");
    }

    #[test]
    fn an_empty_body_is_an_empty_object_and_null_a_zero_struct() {
        assert_eq!(body::<Outer>(b"").unwrap(), Outer::default());
        assert_eq!(
            body::<Outer>(br#"{"Mode":null,"Labels":null,"List":null,"Name":null}"#).unwrap(),
            Outer::default()
        );
    }

    #[test]
    fn zero_values_of_unsupported_fields_pass_and_others_are_refused() {
        for zero in [
            r#"false"#,
            "0",
            r#""""#,
            "{}",
            "[]",
            "null",
            r#"{"A":{"B":[]}}"#,
        ] {
            let v: Value = serde_json::from_str(zero).unwrap();
            assert!(is_zero(&v), "{zero}");
            refuse_unsupported(&[("TTY", &Some(v))]).unwrap();
        }
        let e = refuse_unsupported(&[("ContainerSpec.TTY", &Some(Value::Bool(true)))]).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(
            e.message.starts_with("ContainerSpec.TTY is not supported"),
            "{e}"
        );
    }

    #[test]
    fn filters_read_both_forms_and_docker_booleans() {
        let f = Filters::parse(r#"{"name":{"web":true,"db":false},"role":["manager"]}"#).unwrap();
        assert_eq!(f.values("name"), ["web"]);
        assert_eq!(f.values("role"), ["manager"]);
        assert!(f.matches("name", |v| v == "web"));
        assert!(f.matches("id", |_| false));
        assert!(f.allow_only(&["name"]).is_err());
        assert!(Filters::parse("[1]").is_err());
        let q = Query::parse(Some("force=1&insertDefaults=false&x=no"));
        assert!(q.bool("force"));
        assert!(!q.bool("insertDefaults"));
        assert!(!q.bool("x"));
        assert!(!q.bool("missing"));
        assert!(Query::parse(Some("version=abc")).version().is_err());
        assert_eq!(Query::parse(Some("version=12")).version().unwrap(), 12);
    }
}
