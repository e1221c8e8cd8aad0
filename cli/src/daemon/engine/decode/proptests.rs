//! Property tests of Engine API decoding: any JSON (or bytes) is a value or a 400 that
//! says what is wrong, keys match fields whatever their case, and a Docker type encoded by
//! skiff decodes to itself.

use http::StatusCode;
use proptest::prelude::*;
use proto::service_spec::Mode as ProtoMode;
use serde_json::{Map, Value};

use super::*;
use crate::daemon::engine::types::network::CreateRequest as NetworkCreate;
use crate::daemon::engine::types::node::NodeSpec;
use crate::daemon::engine::types::secret::BlobSpec;
use crate::daemon::engine::types::service::{ServiceSpec, UpdateConfig};
use crate::daemon::engine::types::swarm::SwarmSpec;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[A-Za-z0-9 .:=-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        // Field names of the types decoded, in any case, and others.
                        prop::sample::select(vec![
                            "Name",
                            "name",
                            "LABELS",
                            "TaskTemplate",
                            "ContainerSpec",
                            "Image",
                            "Mode",
                            "Replicated",
                            "Replicas",
                            "Global",
                            "EndpointSpec",
                            "Ports",
                            "UpdateConfig",
                            "Parallelism",
                            "Delay",
                            "Order",
                            "Networks",
                            "Resources",
                            "Limits",
                            "NanoCPUs",
                            "Mounts",
                            "Env",
                            "Args",
                            "Healthcheck",
                            "Test",
                            "Driver",
                            "Options",
                            "Orchestration",
                        ])
                        .prop_map(String::from),
                        "[A-Za-z]{1,6}",
                    ],
                    inner,
                ),
                0..6,
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every field name (a key starting upper-case, as Docker's are) with its letters' case
/// flipped where `flips` says; map keys (labels, options: lower-case here) are data and
/// stay.
fn recase(value: Value, flips: &mut impl Iterator<Item = bool>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, v)| {
                    let key = if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                        key.chars()
                            .map(|c| {
                                if flips.next().unwrap_or(false) {
                                    c.to_ascii_lowercase()
                                } else {
                                    c
                                }
                            })
                            .collect()
                    } else {
                        key
                    };
                    (key, recase(v, flips))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| recase(v, flips)).collect()),
        other => other,
    }
}

fn specs() -> impl Strategy<Value = proto::ServiceSpec> {
    (
        "[a-z][a-z0-9-]{0,8}",
        proptest::collection::hash_map("[a-z][a-z0-9.-]{0,5}", "[ -~]{0,6}", 0..3),
        "[a-z]{1,8}(:[0-9]{1,2})?",
        proptest::collection::vec("[ -~]{0,6}", 0..3),
        proptest::collection::vec("[A-Z]{1,4}=[ -~]{0,4}", 0..3),
        proptest::option::of(0..10u64),
        proptest::collection::vec((1..65535u32, 0..65535u32), 0..3),
    )
        .prop_map(
            |(name, labels, image, args, env, replicas, ports)| proto::ServiceSpec {
                name,
                labels: labels.into_iter().collect(),
                task_template: Some(proto::TaskSpec {
                    container: Some(proto::ContainerSpec {
                        image,
                        args,
                        env,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(match replicas {
                    Some(replicas) => ProtoMode::Replicated(proto::ReplicatedService { replicas }),
                    None => ProtoMode::Global(proto::GlobalService {}),
                }),
                endpoint: Some(proto::EndpointSpec {
                    mode: proto::ResolutionMode::Vip as i32,
                    ports: ports
                        .into_iter()
                        .map(|(target_port, published_port)| proto::PortConfig {
                            protocol: proto::PortProtocol::Tcp as i32,
                            target_port,
                            published_port,
                            ..Default::default()
                        })
                        .collect(),
                }),
                ..Default::default()
            },
        )
}

/// A refusal is a 400 with one sentence.
fn is_refusal(e: &ApiError) -> bool {
    e.status == StatusCode::BAD_REQUEST && !e.message.is_empty() && !e.message.contains('\n')
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_json_decodes_or_is_refused_with_a_sentence(value in json()) {
        let results = [
            value_as::<ServiceSpec>(value.clone()).err(),
            value_as::<UpdateConfig>(value.clone()).err(),
            value_as::<SwarmSpec>(value.clone()).err(),
            value_as::<NetworkCreate>(value.clone()).err(),
            value_as::<NodeSpec>(value.clone()).err(),
            value_as::<BlobSpec>(value.clone()).err(),
            value_as::<BTreeMap<String, Vec<u32>>>(value.clone()).err(),
        ];
        for e in results.into_iter().flatten() {
            prop_assert!(is_refusal(&e), "{:?}", e);
        }
        // Under a service's task template too, where most of the types are.
        let nested = serde_json::json!({"Name": "web", "TaskTemplate": {"ContainerSpec": value}});
        if let Err(e) = value_as::<ServiceSpec>(nested) {
            prop_assert!(is_refusal(&e), "{:?}", e);
        }
    }

    #[test]
    fn any_body_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = body::<ServiceSpec>(&bytes) {
            prop_assert!(is_refusal(&e), "{:?}", e);
        }
    }

    #[test]
    fn a_service_spec_decodes_to_itself_whatever_the_case_of_its_keys(
        spec in specs(),
        flips in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let docker = ServiceSpec::from_proto(&spec);
        let json = serde_json::to_value(&docker).unwrap();
        prop_assert_eq!(&value_as::<ServiceSpec>(json.clone()).unwrap(), &docker);
        let recased = recase(json, &mut flips.into_iter());
        prop_assert_eq!(&value_as::<ServiceSpec>(recased).unwrap(), &docker);
        // And back to the spec it came from.
        prop_assert_eq!(docker.to_proto().unwrap(), spec);
    }

    #[test]
    fn filters_read_the_same_in_both_forms(
        filters in proptest::collection::btree_map(
            "[a-z]{1,6}",
            proptest::collection::btree_set("[ -~]{1,6}", 0..3),
            0..4,
        ),
        raw in any::<String>(),
    ) {
        let as_sets: Map<String, Value> = filters
            .iter()
            .map(|(k, vs)| (k.clone(), vs.iter().map(|v| (v.clone(), Value::Bool(true))).collect::<Map<_, _>>().into()))
            .collect();
        let as_lists: Map<String, Value> = filters
            .iter()
            .map(|(k, vs)| (k.clone(), vs.iter().cloned().collect::<Vec<_>>().into()))
            .collect();
        let sets = Filters::parse(&Value::Object(as_sets).to_string()).unwrap();
        let lists = Filters::parse(&Value::Object(as_lists).to_string()).unwrap();
        prop_assert_eq!(&sets, &lists);
        for (name, values) in &filters {
            let got: std::collections::BTreeSet<String> = sets.values(name).iter().cloned().collect();
            prop_assert_eq!(&got, values);
        }
        // Anything else is a filter or a refusal.
        if let Err(e) = Filters::parse(&raw) {
            prop_assert!(is_refusal(&e), "{:?}", e);
        }
        let query = Query::parse(Some(&raw));
        let _ = query.bool("x");
        if let Err(e) = query.version() {
            prop_assert!(is_refusal(&e), "{:?}", e);
        }
    }
}
