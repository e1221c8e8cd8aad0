//! Networks: validation of a new overlay network, the rules of removing one, and resolving
//! the networks a service names.

use std::net::Ipv4Addr;

use proto::{IpamConfig, Network, NetworkSpec, ServiceSpec};
use tonic::Status;

use crate::allocator::ipam::Cidr;
use crate::allocator::{holds_addresses, ingress_network, networks_of};
use crate::status::{invalid, refused};
use crate::store::{ObjectStore, StoredObject};

/// The only driver skiff has.
pub const OVERLAY: &str = "overlay";

/// Fills in the driver and checks a new network against the cluster's others.
pub fn validate(store: &ObjectStore, mut spec: NetworkSpec) -> Result<NetworkSpec, Status> {
    if !super::service::valid_name(&spec.name) {
        return Err(invalid(format!(
            "invalid network name {:?}: use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit",
            spec.name
        )));
    }
    if spec.name == proto::container_options::HOST_NETWORK {
        return Err(invalid(
            "the network name \"host\" is reserved: services use it for their node's own network (--network host); choose another name",
        ));
    }
    if spec.driver.is_empty() {
        spec.driver = OVERLAY.into();
    }
    if spec.driver != OVERLAY {
        return Err(invalid(format!(
            "network driver {:?} is not supported; use -d overlay",
            spec.driver
        )));
    }
    if store.find_by_name::<Network>(&spec.name).is_some() {
        return Err(Status::already_exists(format!(
            "a network named {} already exists; choose another name",
            spec.name
        )));
    }
    if spec.ingress {
        if let Some(existing) = ingress_network(store) {
            return Err(refused(format!(
                "the cluster already has an ingress network ({}); there can be only one",
                existing.name().unwrap_or_default()
            )));
        }
    }
    match spec.ipam.as_mut_slice() {
        [] => {}
        [ipam] => check_ipam(store, ipam)?,
        _ => return Err(invalid("give at most one --subnet for a network")),
    }
    Ok(spec)
}

fn check_ipam(store: &ObjectStore, ipam: &mut IpamConfig) -> Result<(), Status> {
    if ipam.subnet.is_empty() {
        if !ipam.gateway.is_empty() {
            return Err(invalid("--gateway needs --subnet"));
        }
        return Ok(());
    }
    let subnet = Cidr::parse_strict(&ipam.subnet).map_err(|e| invalid(e.to_string()))?;
    if !(8..=30).contains(&subnet.prefix_len()) {
        return Err(invalid(format!(
            "subnet {subnet} has a prefix length out of range: use /8 to /30"
        )));
    }
    ipam.subnet = subnet.to_string();
    if !ipam.gateway.is_empty() {
        let gateway: Ipv4Addr = ipam.gateway.parse().map_err(|_| {
            invalid(format!(
                "invalid gateway {:?}: use an IPv4 address inside the subnet",
                ipam.gateway
            ))
        })?;
        let broadcast = u64::from(u32::from(gateway))
            == u64::from(u32::from(subnet.network())) + subnet.size() - 1;
        if !subnet.contains(gateway) || gateway == subnet.network() || broadcast {
            return Err(invalid(format!(
                "gateway {gateway} is not a host address of subnet {subnet}"
            )));
        }
    }
    for other in store.list::<Network>() {
        let theirs = other
            .ipam
            .iter()
            .chain(other.spec.iter().flat_map(|s| &s.ipam))
            .filter_map(|i| i.subnet.parse::<Cidr>().ok());
        for taken in theirs {
            if taken.overlaps(&subnet) {
                return Err(refused(format!(
                    "subnet {subnet} overlaps subnet {taken} of network {}; choose another --subnet",
                    other.name().unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// Refuses removing the ingress network, or a network a service uses (naming them).
pub fn check_removable(store: &ObjectStore, network: &Network) -> Result<(), Status> {
    let name = network.name().unwrap_or_default();
    if network.spec.as_ref().is_some_and(|s| s.ingress) {
        return Err(refused(format!(
            "network {name} carries the routing mesh and cannot be removed"
        )));
    }
    let users: Vec<&str> = store
        .list::<proto::Service>()
        .filter(|s| {
            let spec = s.spec.as_ref();
            networks_of(spec.and_then(|s| s.task_template.as_ref()), None, None)
                .iter()
                .any(|id| id == network.id())
        })
        .filter_map(|s| s.name())
        .collect();
    if !users.is_empty() {
        return Err(refused(format!(
            "network {name} is in use by service {}; remove the services or their --network first",
            users.join(", ")
        )));
    }
    // Tasks of removed services may still be stopping on their nodes, inside the network.
    let attached = store
        .list::<proto::Task>()
        .filter(|t| holds_addresses(t) && t.networks.iter().any(|a| a.network_id == network.id()))
        .count();
    if attached > 0 {
        return Err(refused(format!(
            "network {name} still has {attached} task(s) attached that are stopping; try again once they have stopped"
        )));
    }
    Ok(())
}

/// Replaces the network names in a service's spec by IDs, refusing unknown networks and the
/// ingress network (services join it by publishing ports, never by name).
pub fn resolve_service_networks(store: &ObjectStore, spec: &mut ServiceSpec) -> Result<(), Status> {
    let Some(template) = spec.task_template.as_mut() else {
        return Ok(());
    };
    let mut seen: Vec<String> = Vec::new();
    for attachment in template.networks.iter_mut() {
        let target = attachment.target.trim();
        if target == proto::container_options::HOST_NETWORK {
            // Not a network of the cluster: the node's own (checked with the spec).
            attachment.target = target.to_owned();
            continue;
        }
        let network = store.resolve::<Network>(target).map_err(|_| {
            Status::not_found(format!(
                "network {target} not found; create it with skiff network create -d overlay {target}"
            ))
        })?;
        if network.spec.as_ref().is_some_and(|s| s.ingress) {
            return Err(invalid(format!(
                "a service cannot join the ingress network {target} by name; publish a port with -p instead"
            )));
        }
        if seen.iter().any(|s| s == network.id()) {
            return Err(invalid(format!(
                "network {target} is given twice; give each network once"
            )));
        }
        seen.push(network.id().to_owned());
        attachment.target = network.id().to_owned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::create;
    use proto::{Meta, StoreBatch};

    fn store_with(networks: &[(&str, &str, Option<&str>)]) -> ObjectStore {
        let mut store = ObjectStore::default();
        let actions = networks
            .iter()
            .map(|(id, name, subnet)| {
                create(Network {
                    meta: Some(Meta {
                        id: (*id).into(),
                        ..Default::default()
                    }),
                    spec: Some(NetworkSpec {
                        name: (*name).into(),
                        driver: OVERLAY.into(),
                        ingress: *name == "ingress",
                        ..Default::default()
                    }),
                    ipam: subnet
                        .map(|s| IpamConfig {
                            subnet: s.into(),
                            ..Default::default()
                        })
                        .into_iter()
                        .collect(),
                    ..Default::default()
                })
            })
            .collect();
        store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        store
    }

    fn spec(name: &str, driver: &str, subnet: &str, gateway: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            driver: driver.into(),
            ipam: if subnet.is_empty() && gateway.is_empty() {
                vec![]
            } else {
                vec![IpamConfig {
                    subnet: subnet.into(),
                    gateway: gateway.into(),
                    ..Default::default()
                }]
            },
            ..Default::default()
        }
    }

    #[test]
    fn new_networks_are_checked() {
        let store = store_with(&[
            ("i", "ingress", Some("10.0.0.0/24")),
            ("b", "back", Some("10.0.1.0/24")),
        ]);
        let ok = validate(&store, spec("front", "", "10.1.0.0/16", "10.1.0.254")).unwrap();
        assert_eq!(ok.driver, "overlay");
        let cases = [
            (
                spec("front", "bridge", "", ""),
                "not supported; use -d overlay",
            ),
            (spec("back", "", "", ""), "already exists"),
            (spec("-x", "", "", ""), "invalid network name"),
            (
                spec("f", "", "10.0.0.128/25", ""),
                "overlaps subnet 10.0.0.0/24 of network ingress",
            ),
            (
                spec("f", "", "10.0.1.128/25", ""),
                "overlaps subnet 10.0.1.0/24 of network back",
            ),
            (spec("f", "", "10.2.0.1/24", ""), "host bits"),
            (
                spec("f", "", "10.2.0.0/24", "10.3.0.1"),
                "not a host address",
            ),
            (
                spec("f", "", "10.2.0.0/24", "10.2.0.255"),
                "not a host address",
            ),
            (spec("f", "", "", "10.2.0.1"), "--gateway needs --subnet"),
            (spec("f", "", "fd00::/64", ""), "IPv4 CIDR"),
            (spec("f", "", "0.0.0.0/0", ""), "use /8 to /30"),
            (spec("host", "", "", ""), "\"host\" is reserved"),
            (spec("f", "", "10.9.0.0/31", ""), "use /8 to /30"),
        ];
        for (s, want) in cases {
            let err = validate(&store, s).unwrap_err();
            assert!(err.message().contains(want), "{want}: {}", err.message());
        }
    }

    #[test]
    fn ingress_is_protected_and_cannot_be_joined_by_name() {
        let store = store_with(&[("i", "ingress", None), ("b", "back", None)]);
        let ingress = store.get::<Network>("i").unwrap();
        assert!(check_removable(&store, ingress).is_err());
        let back = store.get::<Network>("b").unwrap().clone();
        check_removable(&store, &back).unwrap();
        let mut with_task = store.clone();
        let task = proto::Task {
            meta: Some(Meta {
                id: "t".into(),
                ..Default::default()
            }),
            node_id: "n".into(),
            desired_state: proto::TaskState::Shutdown as i32,
            status: Some(proto::TaskStatus {
                state: proto::TaskState::Running as i32,
                ..Default::default()
            }),
            networks: vec![proto::NetworkAttachment {
                network_id: "b".into(),
                addresses: vec!["10.0.1.2/24".into()],
                aliases: vec![],
            }],
            ..Default::default()
        };
        with_task
            .apply(
                &StoreBatch {
                    actions: vec![create(task)],
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        let err = check_removable(&with_task, &back).unwrap_err();
        assert!(
            err.message().contains("still has 1 task(s) attached"),
            "{}",
            err.message()
        );
        let mut s = ServiceSpec {
            task_template: Some(proto::TaskSpec {
                networks: vec![proto::NetworkAttachmentConfig {
                    target: "ingress".into(),
                    aliases: vec![],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(resolve_service_networks(&store, &mut s).is_err());
        s.task_template.as_mut().unwrap().networks[0].target = "host".into();
        resolve_service_networks(&store, &mut s).unwrap();
        assert_eq!(s.task_template.as_ref().unwrap().networks[0].target, "host");
        s.task_template.as_mut().unwrap().networks[0].target = "back".into();
        resolve_service_networks(&store, &mut s).unwrap();
        assert_eq!(s.task_template.as_ref().unwrap().networks[0].target, "b");
        s.task_template.as_mut().unwrap().networks[0].target = "nope".into();
        let err = resolve_service_networks(&store, &mut s).unwrap_err();
        assert_eq!(
            err.message(),
            "network nope not found; create it with skiff network create -d overlay nope"
        );
    }
}
