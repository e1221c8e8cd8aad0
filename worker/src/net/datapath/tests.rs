//! The data path's logic through the recording fake: what `apply`, `attach`, `serve` and
//! `detach` ask of the node, without root. That the commands do what they should on a real
//! node is for `worker/tests` and `integration-tests`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use proto::{
    assignment, Assignment, AssignmentAction, AssignmentChange, AssignmentsMessage,
    AssignmentsType, DiscoveryNetwork, DiscoveryService, DiscoveryState, Endpoint, IpamConfig,
    MeshService, MeshState, Meta, Network, NetworkAttachment, NetworkPeers, NetworkSpec,
    OverlayEndpoint, PortConfig, PublishMode, Task, WeightedPeer,
};

use super::{BridgeConfig, DataPath, MeshMode};
use crate::net::bridge::BridgeSubnets;
use crate::net::commands::NamespaceFile;
use crate::net::fake::FakeCommands;
use crate::net::overlay::{self, veth_name};

/// The node's underlay address (its VTEP).
const UNDERLAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
/// Another node's.
const PEER: &str = "192.168.1.11";
/// The cluster's data path port, not VXLAN's default.
const PORT: u32 = 7789;
/// Where `front`'s bridge is on this node.
const FRONT_NS: &str = "skn-node0001-front001";
/// Where `ingress`'s bridge is on this node.
const INGRESS_NS: &str = "skn-node0001-ingress1";

/// A data path of node `node0001...` in the kernel mode, over a fake on which no device
/// exists yet.
struct TestNode {
    fake: Arc<FakeCommands>,
    data_path: DataPath,
    _state: tempfile::TempDir,
}

fn test_node() -> TestNode {
    let fake = Arc::new(FakeCommands::default());
    fake.fail("link show", "Device does not exist.");
    let state = tempfile::tempdir().unwrap();
    let data_path = DataPath::with_commands(
        fake.clone(),
        "node0001abcdef",
        UNDERLAY,
        MeshMode::Kernel,
        BridgeConfig {
            subnets: BridgeSubnets::default(),
            state_dir: state.path().join("bridges"),
        },
    );
    fake.clear();
    TestNode {
        fake,
        data_path,
        _state: state,
    }
}

fn network(id: &str, vni: u32, subnet: &str, gateway: &str, ingress: bool) -> Network {
    Network {
        meta: Some(Meta {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(NetworkSpec {
            ingress,
            ..Default::default()
        }),
        vni,
        ipam: vec![IpamConfig {
            subnet: subnet.into(),
            gateway: gateway.into(),
            ..Default::default()
        }],
    }
}

fn front() -> Network {
    network("front001", 4097, "10.0.1.0/24", "10.0.1.1", false)
}

fn ingress() -> Network {
    network("ingress1", 4096, "10.255.0.0/16", "10.255.0.1", true)
}

fn change(action: AssignmentAction, network: &Network) -> AssignmentChange {
    AssignmentChange {
        action: action as i32,
        assignment: Some(Assignment {
            item: Some(assignment::Item::Network(network.clone())),
        }),
    }
}

/// A complete message naming exactly `networks`.
fn complete(networks: &[Network]) -> AssignmentsMessage {
    AssignmentsMessage {
        r#type: AssignmentsType::Complete as i32,
        changes: networks
            .iter()
            .map(|n| change(AssignmentAction::Update, n))
            .collect(),
        data_path_port: PORT,
        ..Default::default()
    }
}

fn incremental() -> AssignmentsMessage {
    AssignmentsMessage {
        r#type: AssignmentsType::Incremental as i32,
        ..Default::default()
    }
}

/// `network_id`'s other nodes (their VTEPs, cluster port 2377) and the addresses they hold.
fn peers(network_id: &str, vteps: &[&str], endpoints: &[(&str, &str)]) -> NetworkPeers {
    NetworkPeers {
        network_id: network_id.into(),
        peers: vteps
            .iter()
            .map(|addr| WeightedPeer {
                addr: (*addr).into(),
                cluster_port: 2377,
                ..Default::default()
            })
            .collect(),
        endpoints: endpoints
            .iter()
            .map(|(address, vtep)| OverlayEndpoint {
                address: (*address).into(),
                vtep: (*vtep).into(),
            })
            .collect(),
    }
}

/// The mesh with the node's leg at 10.255.0.2, publishing TCP 8080 over two tasks' port 80.
fn mesh() -> MeshState {
    MeshState {
        leg_address: "10.255.0.2/16".into(),
        services: vec![MeshService {
            service_id: "web".into(),
            ports: vec![PortConfig {
                target_port: 80,
                published_port: 8080,
                ..Default::default()
            }],
            backends: vec!["10.255.0.3".into(), "10.255.0.4".into()],
        }],
    }
}

/// Task `id` with an address on each of `networks` (ID, CIDR).
fn task(id: &str, networks: &[(&str, &str)]) -> Task {
    Task {
        meta: Some(Meta {
            id: id.into(),
            ..Default::default()
        }),
        networks: networks
            .iter()
            .map(|(network, address)| NetworkAttachment {
                network_id: (*network).into(),
                addresses: vec![(*address).into()],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Where `line` is among `lines`; fails, showing them all, where it is not.
fn at(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no `{line}` in:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn a_network_gets_a_namespace_a_bridge_and_a_vxlan_device_on_the_cluster_s_port() {
    let node = test_node();
    node.data_path.apply(&complete(&[front()]));
    let ns = FRONT_NS;
    let in_ns = format!("ip netns exec {ns} sysctl -w");
    assert_eq!(
        node.fake.lines(),
        [
            format!("ip netns add {ns}"),
            format!("ip -n {ns} link set lo up"),
            format!("{in_ns} net.bridge.bridge-nf-call-iptables=0"),
            format!("{in_ns} net.bridge.bridge-nf-call-ip6tables=0"),
            format!("{in_ns} net.bridge.bridge-nf-call-arptables=0"),
            format!("{in_ns} net.ipv6.conf.all.disable_ipv6=1"),
            format!("{in_ns} net.ipv6.conf.default.disable_ipv6=1"),
            format!("ip -n {ns} link add br0 type bridge"),
            format!("ip -n {ns} addr add 10.0.1.1/24 dev br0"),
            format!("ip -n {ns} link set br0 mtu 1450 up"),
            // A device left in the node's namespace by a move that failed goes first.
            "ip link del vx4097".into(),
            "ip link add vx4097 type vxlan id 4097 local 192.168.1.10 dstport 7789 nolearning"
                .into(),
            format!("ip link set vx4097 netns {ns}"),
            format!("ip -n {ns} link set vx4097 mtu 1450 master br0 up"),
            // The node's VXLAN packets skip conntrack.
            "nft -f -".into(),
            // No peers yet: nothing to program, but it looks.
            format!("bridge -n {ns} fdb show dev vx4097"),
        ]
    );
    assert_eq!(
        node.fake.scripts(None),
        [overlay::untracked_ruleset(PORT as u16)]
    );

    // The next complete message lists it again: it is there, on the right port.
    node.fake.clear();
    node.data_path.apply(&complete(&[front()]));
    assert_eq!(
        node.fake.lines(),
        [format!("bridge -n {ns} fdb show dev vx4097")]
    );
}

#[tokio::test]
async fn a_network_found_on_another_port_gets_its_vxlan_device_again_and_keeps_its_bridge() {
    let node = test_node();
    // Made by an earlier skiffd before the cluster's data path port reached the node.
    node.fake.set_namespace(FRONT_NS, NamespaceFile::Live);
    node.fake.reply(
        "-d link show vx4097",
        "7: vx4097: <BROADCAST> mtu 1450\n    vxlan id 4097 local 192.168.1.10 dstport 4789 nolearning\n",
    );
    node.data_path.apply(&complete(&[front()]));
    let lines = node.fake.lines();
    let del = at(&lines, &format!("ip -n {FRONT_NS} link del vx4097"));
    let add = at(
        &lines,
        "ip link add vx4097 type vxlan id 4097 local 192.168.1.10 dstport 7789 nolearning",
    );
    assert!(del < add, "{lines:#?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("netns add") || l.contains("br0 type bridge")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_network_that_cannot_be_set_up_is_tried_again_with_the_next_message() {
    let node = test_node();
    node.fake
        .fail(&format!("ip netns add {FRONT_NS}"), "Permission denied");
    node.data_path.apply(&complete(&[front()]));
    let task_on_front = task("t1", &[("front001", "10.0.1.5/24")]);
    let err = node.data_path.attach(&task_on_front).unwrap_err();
    assert!(
        err.to_string()
            .contains("network front001 is not set up on this node yet"),
        "{err}"
    );

    node.fake.reply(&format!("ip netns add {FRONT_NS}"), "");
    node.fake.clear();
    // An incremental message that says nothing of the network.
    node.data_path.apply(&incremental());
    let lines = node.fake.lines();
    at(&lines, &format!("ip netns add {FRONT_NS}"));
    at(&lines, &format!("ip link set vx4097 netns {FRONT_NS}"));
}

#[tokio::test]
async fn networks_go_when_removed_or_left_out_of_a_complete_message() {
    let node = test_node();
    node.data_path.apply(&complete(&[front(), ingress()]));

    node.fake.clear();
    let mut removal = incremental();
    removal.changes = vec![change(AssignmentAction::Remove, &front())];
    node.data_path.apply(&removal);
    assert_eq!(node.fake.lines()[0], format!("ip netns del {FRONT_NS}"));

    node.fake.clear();
    node.data_path.apply(&complete(&[]));
    assert_eq!(node.fake.lines(), [format!("ip netns del {INGRESS_NS}")]);
}

#[tokio::test]
async fn peers_are_programmed_and_only_what_changed_is_reprogrammed() {
    let node = test_node();
    let mut message = complete(&[front()]);
    message.network_peers = vec![peers(
        "front001",
        &[PEER, "192.168.1.10"],
        &[("10.0.1.5", PEER), ("10.0.1.6", "192.168.1.10")],
    )];
    node.data_path.apply(&message);
    let lines = node.fake.lines();
    let fdb = |rest: &str| format!("bridge -n {FRONT_NS} fdb {rest}");
    at(
        &lines,
        &fdb("append 00:00:00:00:00:00 dev vx4097 dst 192.168.1.11"),
    );
    at(
        &lines,
        &fdb("replace 02:42:0a:00:01:05 dev vx4097 dst 192.168.1.11 self permanent"),
    );
    assert!(
        !lines.iter().any(|l| l.contains("dst 192.168.1.10")),
        "the node's own VTEP and addresses are not its peers: {lines:#?}"
    );

    // The peer leaves and another comes, with another task.
    node.fake.reply(
        "fdb show dev vx4097",
        "00:00:00:00:00:00 dst 192.168.1.11 self permanent\n\
         02:42:0a:00:01:05 dst 192.168.1.11 self permanent\n\
         02:42:0a:00:01:07 master br0\n",
    );
    node.fake.clear();
    let mut update = incremental();
    update.network_peers = vec![peers(
        "front001",
        &["192.168.1.12"],
        &[("10.0.1.8", "192.168.1.12")],
    )];
    node.data_path.apply(&update);
    assert_eq!(
        node.fake.lines(),
        [
            fdb("show dev vx4097"),
            fdb("del 00:00:00:00:00:00 dev vx4097 dst 192.168.1.11"),
            fdb("append 00:00:00:00:00:00 dev vx4097 dst 192.168.1.12"),
            fdb("del 02:42:0a:00:01:05 dev vx4097 self"),
            fdb("replace 02:42:0a:00:01:08 dev vx4097 dst 192.168.1.12 self permanent"),
        ]
    );
}

#[tokio::test]
async fn the_mesh_is_programmed_through_the_node_s_leg_and_again_when_the_cluster_grows() {
    let node = test_node();
    // The conntrack table is not there yet.
    node.fake.fail(
        "nft list table ip skiffconntrack",
        "No such file or directory",
    );
    let mut message = complete(&[ingress()]);
    message.network_peers = vec![peers("ingress1", &[PEER], &[])];
    message.mesh = Some(mesh());
    node.data_path.apply(&message);

    let lines = node.fake.lines();
    let leg = at(
        &lines,
        &format!("ip link add skin0 address 02:42:0a:ff:00:02 mtu 1450 type veth peer name leg0 netns {INGRESS_NS}"),
    );
    assert!(
        at(&lines, &format!("ip netns add {INGRESS_NS}")) < leg,
        "{lines:#?}"
    );
    at(
        &lines,
        &format!("ip -n {INGRESS_NS} link set leg0 master br0 up"),
    );
    at(&lines, "ip addr add 10.255.0.2/16 dev skin0");
    at(&lines, "sysctl -w net.ipv4.ip_forward=1");
    let scripts = node.fake.scripts(None);
    assert_eq!(
        scripts.len(),
        3,
        "the untracked VXLAN packets, the conntrack table, then the mesh"
    );
    assert_eq!(scripts[0], overlay::untracked_ruleset(PORT as u16));
    assert!(
        scripts[1].contains("ct timeout forwarded"),
        "{}",
        scripts[1]
    );
    let rules = &scripts[2];
    for rule in [
        "fib daddr type local tcp dport 8080 dnat to numgen inc mod 2 map { 0 : 10.255.0.3, 1 : 10.255.0.4 } : 80",
        "oifname \"skin0\" masquerade",
        // The cluster's own traffic passes: the node's and its peer's cluster port, and the
        // data path port.
        "ip daddr { 192.168.1.10, 192.168.1.11 } tcp dport { 2377 } accept",
        "ip daddr { 192.168.1.10, 192.168.1.11 } udp dport { 7789 } accept",
    ] {
        assert!(rules.contains(rule), "{rule} in:\n{rules}");
    }

    // Nothing changed: the mesh stays as it is.
    node.fake.reply(
        "nft list table ip skiffconntrack",
        "table ip skiffconntrack {",
    );
    node.fake.clear();
    node.data_path.apply(&incremental());
    assert_eq!(node.fake.scripts(None).len(), 0);

    // A node joins: the same mesh is programmed again, leaving its address alone too.
    let mut joined = incremental();
    joined.network_peers = vec![peers("ingress1", &[PEER, "192.168.1.12"], &[])];
    node.data_path.apply(&joined);
    let scripts = node.fake.scripts(None);
    assert_eq!(scripts.len(), 1, "the conntrack table is there now");
    assert!(
        scripts[0].contains("ip daddr { 192.168.1.10, 192.168.1.11, 192.168.1.12 } tcp dport"),
        "{}",
        scripts[0]
    );
}

#[tokio::test]
async fn a_task_without_networks_gets_a_namespace_on_the_default_bridge() {
    let node = test_node();
    let ports = node.data_path.attach(&task("t1", &[])).unwrap();
    assert!(ports.is_empty());
    let veth = veth_name("skt-t1", "eth0");
    assert_eq!(
        node.fake.lines(),
        [
            "ip netns add skt-t1".to_owned(),
            // The bridge, made once: its subnet must not be a route of the node's.
            "ip link show skiff0".into(),
            "ip -4 route show".into(),
            "ip link add skiff0 type bridge".into(),
            "ip addr replace 172.17.0.1/16 dev skiff0".into(),
            "ip link set skiff0 up".into(),
            "sysctl -w net.ipv4.ip_forward=1".into(),
            "nft -f -".into(),
            // The task's leg, its MAC from its leased address.
            format!("ip link show {veth}"),
            format!("ip link add {veth} type veth peer name eth0 address 02:42:ac:11:00:02 netns skt-t1"),
            format!("ip link set {veth} master skiff0 up"),
            "ip -n skt-t1 link set lo up".into(),
            "ip -n skt-t1 addr replace 172.17.0.2/16 dev eth0".into(),
            "ip -n skt-t1 link set eth0 up".into(),
            "ip -n skt-t1 route replace default via 172.17.0.1".into(),
        ]
    );
    assert!(node.fake.scripts(None)[0].contains("table ip skiffnat {"));
}

#[tokio::test]
async fn a_task_on_overlays_joins_each_and_goes_out_through_the_gateway_bridge() {
    let node = test_node();
    node.data_path.apply(&complete(&[front()]));
    node.fake.clear();
    node.data_path
        .attach(&task("t2", &[("front001", "10.0.1.5/24")]))
        .unwrap();
    let lines = node.fake.lines();
    let (overlay_leg, bridge_leg) = (veth_name("skt-t2", "eth0"), veth_name("skt-t2", "eth1"));
    let joined = at(
        &lines,
        &format!("ip -n {FRONT_NS} link add {overlay_leg} mtu 1450 type veth peer name eth0 address 02:42:0a:00:01:05 netns skt-t2"),
    );
    assert!(at(&lines, "ip netns add skt-t2") < joined);
    for line in [
        format!("ip -n {FRONT_NS} link set {overlay_leg} master br0 up"),
        "ip netns exec skt-t2 sysctl -w net.ipv6.conf.eth0.disable_ipv6=1".into(),
        "ip -n skt-t2 addr add 10.0.1.5/24 dev eth0".into(),
        "ip -n skt-t2 link set eth0 mtu 1450 up".into(),
        // The way out: the gateway bridge, isolated from the other tasks on it.
        "ip link add skiff_gwbridge type bridge".into(),
        format!("ip link set {bridge_leg} master skiff_gwbridge up"),
        format!("ip link set {bridge_leg} type bridge_slave isolated on"),
        "ip -n skt-t2 addr replace 172.18.0.2/16 dev eth1".into(),
        "ip -n skt-t2 route replace default via 172.18.0.1".into(),
    ] {
        at(&lines, &line);
    }
    assert!(
        !lines.iter().any(|l| l.contains("via 10.0.1.1")),
        "the overlay is not the default route: {lines:#?}"
    );
}

#[tokio::test]
async fn serve_joins_an_adopted_task_again_with_its_vips_and_host_ports() {
    let node = test_node();
    let mut message = complete(&[ingress(), front()]);
    message.mesh = Some(mesh());
    message.discovery = Some(DiscoveryState {
        networks: vec![DiscoveryNetwork {
            network_id: "front001".into(),
            services: vec![DiscoveryService {
                name: "api".into(),
                vip: "10.0.1.100".into(),
                tasks: vec!["10.0.1.5".into()],
                ..Default::default()
            }],
        }],
    });
    node.data_path.apply(&message);
    let mut adopted = task(
        "t3",
        &[("ingress1", "10.255.0.7/16"), ("front001", "10.0.1.5/24")],
    );
    adopted.endpoint = Some(Endpoint {
        ports: vec![PortConfig {
            target_port: 80,
            published_port: 0,
            publish_mode: PublishMode::Host as i32,
            ..Default::default()
        }],
        ..Default::default()
    });

    // Its namespace went with the daemon before: nothing to serve.
    node.fake.clear();
    assert!(node.data_path.serve(&adopted).unwrap().is_empty());
    assert!(node.fake.lines().is_empty(), "{:#?}", node.fake.lines());

    node.fake.set_namespace("skt-t3", NamespaceFile::Live);
    let ports = node.data_path.serve(&adopted).unwrap();
    let bound = ports[0].published_port;
    assert_ne!(bound, 0, "a port asked as 0 gets a number");
    let lines = node.fake.lines();
    assert!(!lines.iter().any(|l| l.contains("netns add")), "{lines:#?}");
    for line in [
        "ip -n skt-t3 addr add 10.255.0.7/16 dev eth0",
        "ip -n skt-t3 addr add 10.0.1.5/24 dev eth1",
        "ip -n skt-t3 addr replace 172.18.0.2/16 dev eth2",
    ] {
        at(&lines, line);
    }
    let vips = node.fake.scripts(Some("skt-t3"));
    assert!(
        vips.iter().any(|s| s.contains(
            "ip daddr 10.0.1.100 meta l4proto { tcp, udp } dnat to numgen inc mod 1 map { 0 : 10.0.1.5 }"
        )),
        "{vips:#?}"
    );
    let host_port = format!("fib daddr type local tcp dport {bound} dnat to 10.255.0.7:80");
    let meshes = node.fake.scripts(None);
    assert!(
        meshes.last().is_some_and(|s| s.contains(&host_port)),
        "{meshes:#?}"
    );

    // Served already: the same ports, nothing asked of the node.
    node.fake.clear();
    assert_eq!(node.data_path.serve(&adopted).unwrap(), ports);
    assert!(node.fake.lines().is_empty(), "{:#?}", node.fake.lines());

    // It goes: the DNAT first, then its namespace.
    node.data_path.detach("t3");
    let lines = node.fake.lines();
    assert!(
        node.fake
            .scripts(None)
            .last()
            .is_some_and(|s| !s.contains(&host_port)),
        "{lines:#?}"
    );
    assert!(at(&lines, "nft -f -") < at(&lines, "ip netns del skt-t3"));
}

#[tokio::test]
async fn a_task_namespace_left_by_an_earlier_daemon_is_made_again() {
    // (namespace as found, what `attach` asks, what `adopt` asks)
    let cases: [(NamespaceFile, &[&str], &[&str]); 3] = [
        (
            NamespaceFile::Missing,
            &["ip netns add skt-t4"],
            &["ip netns attach skt-t4 1234"],
        ),
        (
            NamespaceFile::Stale,
            &["ip netns del skt-t4", "ip netns add skt-t4"],
            &["ip netns del skt-t4", "ip netns attach skt-t4 1234"],
        ),
        (NamespaceFile::Live, &[], &[]),
    ];
    for (found, attach, adopt) in cases {
        let node = test_node();
        node.fake.set_namespace("skt-t4", found);
        node.data_path.attach(&task("t4", &[])).unwrap();
        let lines = node.fake.lines();
        assert_eq!(&lines[..attach.len()], attach, "{found:?}");
        assert!(!lines[attach.len()..].iter().any(|l| l.contains("ip netns")));

        let node = test_node();
        node.fake.set_namespace("skt-t4", found);
        node.data_path.adopt(&task("t4", &[]), 1234).unwrap();
        assert_eq!(node.fake.lines(), adopt, "{found:?}");
    }
}

#[tokio::test]
async fn a_host_network_task_gets_no_namespace_bridge_dns_or_bound_port() {
    let node = test_node();
    node.data_path.apply(&complete(&[front()]));
    node.fake.clear();
    let mut t = task("hosttask0001", &[]);
    t.spec = Some(
        proto::TaskSpec {
            networks: vec![proto::NetworkAttachmentConfig {
                target: proto::container_options::HOST_NETWORK.into(),
                aliases: vec![],
            }],
            ..Default::default()
        }
        .into(),
    );
    let port = PortConfig {
        target_port: 8080,
        published_port: 8080,
        publish_mode: PublishMode::Host as i32,
        ..Default::default()
    };
    t.endpoint = Some(Endpoint {
        ports: vec![port.clone()],
        ..Default::default()
    });
    assert_eq!(
        node.data_path.attach(&t).unwrap(),
        std::slice::from_ref(&port)
    );
    assert_eq!(node.data_path.serve(&t).unwrap(), [port]);
    node.data_path.adopt(&t, 4242).unwrap();
    assert!(
        node.fake.lines().is_empty(),
        "nothing is made for it: {:#?}",
        node.fake.lines()
    );
}

#[test]
fn a_task_s_dns_servers_replace_the_node_s_as_upstreams() {
    let node: Vec<std::net::SocketAddr> = vec!["192.0.2.53:53".parse().unwrap()];
    let mut t = task("t", &[]);
    assert_eq!(super::task_upstreams(&t, &node), node);
    t.spec = Some(
        proto::TaskSpec {
            container: Some(proto::ContainerSpec {
                dns_config: Some(proto::DnsConfig {
                    nameservers: vec!["198.51.100.1".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into(),
    );
    assert_eq!(
        super::task_upstreams(&t, &node),
        ["198.51.100.1:53".parse::<std::net::SocketAddr>().unwrap()]
    );
}

#[tokio::test]
async fn the_vxlan_packets_are_untracked_with_the_userspace_mesh_too_once_per_port() {
    let fake = Arc::new(FakeCommands::default());
    fake.fail("link show", "Device does not exist.");
    let state = tempfile::tempdir().unwrap();
    // nftables is there, so the bridges' NAT turns conntrack on; the mesh is in userspace.
    let data_path = DataPath::with_commands(
        fake.clone(),
        "node0001abcdef",
        UNDERLAY,
        MeshMode::Userspace,
        BridgeConfig {
            subnets: BridgeSubnets::default(),
            state_dir: state.path().join("bridges"),
        },
    );
    // No overlay yet: nothing to leave untracked.
    data_path.apply(&complete(&[]));
    assert_eq!(fake.scripts(None), Vec::<String>::new());
    data_path.apply(&complete(&[front()]));
    assert_eq!(
        fake.scripts(None),
        [overlay::untracked_ruleset(PORT as u16)]
    );
    // Already in place for this port: not applied again.
    fake.clear();
    data_path.apply(&complete(&[front()]));
    assert_eq!(fake.scripts(None), Vec::<String>::new());
    // The cluster's data path port changes: the table follows it.
    let mut moved = complete(&[front()]);
    moved.data_path_port = 4790;
    data_path.apply(&moved);
    assert_eq!(fake.scripts(None), [overlay::untracked_ruleset(4790)]);
    // The node leaves: the table goes.
    fake.clear();
    data_path.remove_all();
    assert!(
        fake.scripts(None)
            .iter()
            .any(|s| s == "table ip skiffvxlan\ndelete table ip skiffvxlan\n"),
        "{:#?}",
        fake.lines()
    );
}
