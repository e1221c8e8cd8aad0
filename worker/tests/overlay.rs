//! Overlay networks across two nodes, each node a network namespace on a switch of the
//! test's own: tasks on one overlay reach each other across nodes through VXLAN; a task on
//! another overlay (another VNI, even with the same addresses) does not. Needs root.

mod common;

use std::net::Ipv4Addr;

use common::{is_root, nodes, pings, task, Namespaces};
use worker::net::overlay::Overlay;

#[test]
fn tasks_on_one_overlay_reach_each_other_across_nodes_and_no_other() {
    if !is_root() {
        eprintln!("skipped: overlay tests need root (network namespaces)");
        return;
    }
    let pid = std::process::id();
    let mut made = Namespaces::default();
    let nodes = nodes("ov", 2, &mut made);
    let front = Overlay {
        id: format!("f{pid:07}"),
        vni: 4096 + pid % 1000,
        gateway: "10.99.1.1/24".into(),
    };
    let back = Overlay {
        id: format!("b{pid:07}"),
        vni: 5096 + pid % 1000,
        gateway: "10.99.1.1/24".into(),
    };
    let vteps: Vec<Ipv4Addr> = nodes.iter().map(|n| n.underlay).collect();
    for n in &nodes {
        for net in [&front, &back] {
            let ns = n.node.ensure_network(net).expect("network namespace");
            made.0.push(ns);
            // Idempotent: a second pass changes nothing.
            n.node.ensure_network(net).expect("again");
            n.node.set_peers(net, &vteps).expect("peers");
            n.node.set_peers(net, &vteps).expect("peers again");
        }
    }
    let (a1, b1, b2) = (
        task("a1", &mut made),
        task("b1", &mut made),
        task("b2", &mut made),
    );
    let (node_a, node_b) = (&nodes[0].node, &nodes[1].node);
    node_a
        .attach(&front, &a1, "eth0", "10.99.1.2/24", true)
        .expect("attach a1");
    node_b
        .attach(&front, &b1, "eth0", "10.99.1.3/24", true)
        .expect("attach b1");
    node_b
        .attach(&front, &b1, "eth0", "10.99.1.3/24", true)
        .expect("attach again");
    node_b
        .attach(&back, &b2, "eth0", "10.99.1.4/24", true)
        .expect("attach b2");

    assert!(
        pings(&a1, "10.99.1.3"),
        "a task on node a reaches one on node b over the overlay"
    );
    assert!(pings(&b1, "10.99.1.2"), "and back");
    assert!(
        !pings(&a1, "10.99.1.4"),
        "a task on another overlay is not reachable"
    );

    // Without its peer, node a's overlay no longer reaches node b (a fresh address, so no
    // cached neighbour helps).
    node_a.set_peers(&front, &[]).expect("no peers");
    let b3 = task("b3", &mut made);
    node_b
        .attach(&front, &b3, "eth0", "10.99.1.5/24", true)
        .expect("attach b3");
    assert!(!pings(&a1, "10.99.1.5"), "no peer, no path");
    node_a.set_peers(&front, &vteps).expect("peers back");
    assert!(pings(&a1, "10.99.1.5"), "peer back, path back");
}
