//! JSON output of proto messages, with their real field names (`desired_role`) and enum
//! names (`"NODE_ROLE_MANAGER"`), every scalar field present (zero values included, so an
//! enum at its first value still shows; unset sub-messages are left out), 64-bit integers
//! as numbers, fields in `.proto` order, pretty-printed.
//!
//! Conversion goes through the descriptor set the proto crate embeds, so it follows the
//! `.proto` file with no hand-written mapping. Private material is dropped before printing:
//! the root CA key (`root_ca.key_pem`) and secret payloads (`Secret.spec.data`).

use std::sync::OnceLock;

use anyhow::Context as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// A generated proto message that can be printed as JSON: it names its full proto type.
pub trait ProtoJson: prost::Message + Sized {
    /// Full proto name, e.g. `skiff.v1.Node`.
    const FULL_NAME: &'static str;
}

macro_rules! proto_json {
    ($($ty:ident),* $(,)?) => {
        $(impl ProtoJson for proto::$ty {
            const FULL_NAME: &'static str = concat!("skiff.v1.", stringify!($ty));
        })*
    };
}

proto_json!(
    Cluster,
    Node,
    Service,
    Task,
    Network,
    Secret,
    Config,
    InfoResponse,
    InitResponse,
    JoinResponse,
);

/// The decoded descriptor pool of `skiff.proto`.
fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("the built-in proto descriptors are unreadable ({e}); this skiff binary is broken, reinstall it"))
}

/// `msg` as a JSON value (see the module docs for the form), with private fields dropped.
/// Keys of a `Value` are sorted; [`array`] and [`object`] print them in `.proto` order.
pub fn to_value<M: ProtoJson>(msg: &M) -> anyhow::Result<Value> {
    Ok(convert(msg)?.1)
}

fn descriptor<M: ProtoJson>() -> anyhow::Result<MessageDescriptor> {
    pool()?.get_message_by_name(M::FULL_NAME).with_context(|| {
        format!(
            "the built-in proto descriptors lack {}; this skiff binary is broken, reinstall it",
            M::FULL_NAME
        )
    })
}

fn convert<M: ProtoJson>(msg: &M) -> anyhow::Result<(MessageDescriptor, Value)> {
    let desc = descriptor::<M>()?;
    let dynamic = DynamicMessage::decode(desc.clone(), msg.encode_to_vec().as_slice())
        .with_context(|| format!("cannot convert a {} to JSON", M::FULL_NAME))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    let mut value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("cannot convert a {} to JSON", M::FULL_NAME))?;
    redact(M::FULL_NAME, &mut value);
    Ok((desc, value))
}

/// `msgs` as one pretty-printed JSON array (what `inspect` and `ls --format json` print).
pub fn array<M: ProtoJson>(msgs: &[M]) -> anyhow::Result<String> {
    let items = msgs
        .iter()
        .map(|m| convert(m).map(|(desc, v)| ordered(v, Some(&desc))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    serde_json::to_string_pretty(&Ordered::Array(items)).context("cannot format JSON output")
}

/// `msg` as one pretty-printed JSON object.
pub fn object<M: ProtoJson>(msg: &M) -> anyhow::Result<String> {
    let (desc, v) = convert(msg)?;
    serde_json::to_string_pretty(&ordered(v, Some(&desc))).context("cannot format JSON output")
}

/// A JSON value whose object keys keep a chosen order.
enum Ordered {
    Leaf(Value),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ordered::Leaf(v) => v.serialize(s),
            Ordered::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Orders the keys of `value` (a message of type `desc`, when known) as the `.proto`
/// declares its fields, recursively; map keys stay sorted.
fn ordered(value: Value, desc: Option<&MessageDescriptor>) -> Ordered {
    match (value, desc) {
        (Value::Object(mut map), Some(desc)) => {
            let mut fields = Vec::with_capacity(map.len());
            for field in desc.fields() {
                let Some(v) = map.remove(field.name()) else {
                    continue;
                };
                let kind = field.kind();
                let child = kind.as_message();
                let v = if field.is_map() {
                    let value_kind = child.map(|entry| entry.map_entry_value_field().kind());
                    let value_desc = value_kind.as_ref().and_then(|k| k.as_message());
                    match v {
                        Value::Object(entries) => Ordered::Object(
                            entries
                                .into_iter()
                                .map(|(k, e)| (k, ordered(e, value_desc)))
                                .collect(),
                        ),
                        other => Ordered::Leaf(other),
                    }
                } else if field.is_list() {
                    match v {
                        Value::Array(items) => {
                            Ordered::Array(items.into_iter().map(|i| ordered(i, child)).collect())
                        }
                        other => Ordered::Leaf(other),
                    }
                } else {
                    ordered(v, child)
                };
                fields.push((field.name().to_string(), v));
            }
            // Anything the descriptor does not name (there should be nothing) goes last.
            fields.extend(map.into_iter().map(|(k, v)| (k, ordered(v, None))));
            Ordered::Object(fields)
        }
        (Value::Object(map), None) => Ordered::Object(
            map.into_iter()
                .map(|(k, v)| (k, ordered(v, None)))
                .collect(),
        ),
        (Value::Array(items), _) => {
            Ordered::Array(items.into_iter().map(|i| ordered(i, None)).collect())
        }
        (leaf, _) => Ordered::Leaf(leaf),
    }
}

/// Pretty-prints any JSON value.
pub fn pretty(value: &Value) -> anyhow::Result<String> {
    serde_json::to_string_pretty(value).context("cannot format JSON output")
}

/// Drops private material wherever it appears.
fn redact(full_name: &str, value: &mut Value) {
    if full_name == "skiff.v1.Secret" {
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("data");
        }
    }
    drop_root_ca_keys(value);
}

/// Removes `key_pem` from every object held under a `root_ca` key, at any depth.
fn drop_root_ca_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "root_ca" {
                    if let Some(ca) = child.as_object_mut() {
                        ca.remove("key_pem");
                    }
                }
                drop_root_ca_keys(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_root_ca_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{
        Cluster, ManagerStatus, Meta, Node, NodeAvailability, NodeRole, NodeSpec, Reachability,
        RootCa,
    };

    #[test]
    fn node_has_field_and_enum_names() {
        let node = Node {
            meta: Some(Meta {
                id: "abc".into(),
                version: 7,
                created_at: 1_700_000_000_000,
                updated_at: 0,
            }),
            spec: Some(NodeSpec {
                labels: [("zone".to_string(), "east".to_string())].into(),
                desired_role: NodeRole::Manager as i32,
                availability: NodeAvailability::Active as i32,
            }),
            manager_status: Some(ManagerStatus {
                raft_id: 3,
                addr: "10.0.0.1:2377".into(),
                leader: true,
                reachability: Reachability::Reachable as i32,
            }),
            role: NodeRole::Manager as i32,
            ..Default::default()
        };
        let v = to_value(&node).unwrap();
        assert_eq!(v["meta"]["id"], "abc");
        assert_eq!(v["meta"]["version"], 7);
        assert_eq!(v["meta"]["created_at"], 1_700_000_000_000i64);
        assert_eq!(v["spec"]["desired_role"], "NODE_ROLE_MANAGER");
        // The zero value of an enum is printed too.
        assert_eq!(v["spec"]["availability"], "NODE_AVAILABILITY_ACTIVE");
        assert_eq!(v["spec"]["labels"]["zone"], "east");
        assert_eq!(
            v["manager_status"]["reachability"],
            "REACHABILITY_REACHABLE"
        );
        assert_eq!(v["manager_status"]["leader"], true);
        assert_eq!(v["role"], "NODE_ROLE_MANAGER");
        let text = array(std::slice::from_ref(&node)).unwrap();
        assert!(
            text.starts_with(
                "[\n  {\n    \"meta\": {\n      \"id\": \"abc\",\n      \"version\": 7,"
            ),
            "{text}"
        );
        // Fields in .proto order: meta, spec, ..., role.
        let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("meta") < pos("spec") && pos("spec") < pos("manager_status"));
        assert!(pos("desired_role") < pos("availability"));
        assert!(pos("manager_status") < pos("role"));
        // Unset sub-messages are left out.
        assert!(v.get("certificate").is_none());
    }

    #[test]
    fn root_ca_key_is_dropped() {
        let cluster = Cluster {
            root_ca: Some(RootCa {
                cert_pem: "CERT".into(),
                key_pem: "-----BEGIN PRIVATE KEY-----".into(),
                digest: "d".into(),
            }),
            ..Default::default()
        };
        let v = to_value(&cluster).unwrap();
        assert_eq!(v["root_ca"]["cert_pem"], "CERT");
        assert!(v["root_ca"].get("key_pem").is_none());
        let text = object(&cluster).unwrap();
        assert!(!text.contains("key_pem") && !text.contains("PRIVATE KEY"));
    }

    #[test]
    fn secret_data_is_dropped() {
        let secret = proto::Secret {
            spec: Some(proto::SecretSpec {
                name: "s".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = to_value(&secret).unwrap();
        assert_eq!(v["spec"]["name"], "s");
        assert!(v["spec"].get("data").is_none());
    }
}
