//! Overlay networks across two nodes, each node a network namespace on a switch of the
//! test's own: tasks on one overlay reach each other across nodes through VXLAN; a task on
//! another overlay (another VNI, even with the same addresses) does not. Needs root.

use std::net::Ipv4Addr;
use std::process::Command;

use worker::net::overlay::{self, Node, Overlay};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every namespace the test made, removed on drop even when the test fails.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn pings(task_ns: &str, addr: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", task_ns, "busybox", "ping", "-c", "1", "-W", "2", addr,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn tasks_on_one_overlay_reach_each_other_across_nodes_and_no_other() {
    if !is_root() {
        eprintln!("skipped: overlay tests need root (network namespaces)");
        return;
    }
    let pid = std::process::id();
    let mut made = Namespaces(Vec::new());
    // The underlay: two nodes on a switch.
    let switch = format!("ovsw{pid}");
    ip(&["netns", "add", &switch]);
    made.0.push(switch.clone());
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &switch, "link", "set", "br0", "up"]);
    let mut nodes = Vec::new();
    for (i, letter) in ["a", "b"].iter().enumerate() {
        let ns = format!("ovnode{letter}{pid}");
        ip(&["netns", "add", &ns]);
        made.0.push(ns.clone());
        let port = format!("p{letter}");
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &switch,
        ]);
        ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
        let underlay = Ipv4Addr::new(192, 168, 77, 2 + i as u8);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{underlay}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        nodes.push((
            Node::new(&format!("{letter}{pid:07}"), underlay, Some(ns)),
            underlay,
        ));
    }
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
    let vteps: Vec<Ipv4Addr> = nodes.iter().map(|(_, u)| *u).collect();
    for (node, _) in &nodes {
        for net in [&front, &back] {
            let ns = node.ensure_network(net).expect("network namespace");
            made.0.push(ns);
            // Idempotent: a second pass changes nothing.
            node.ensure_network(net).expect("again");
            node.set_peers(net, &vteps).expect("peers");
            node.set_peers(net, &vteps).expect("peers again");
        }
    }
    let task = |name: &str| {
        let id = format!("{name}{pid}");
        overlay::create_task_namespace(&id).expect("task namespace");
        overlay::task_namespace(&id)
    };
    let (a1, b1, b2) = (task("a1"), task("b1"), task("b2"));
    made.0.extend([a1.clone(), b1.clone(), b2.clone()]);
    let (node_a, node_b) = (&nodes[0].0, &nodes[1].0);
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
    let b3 = task("b3");
    made.0.push(b3.clone());
    node_b
        .attach(&front, &b3, "eth0", "10.99.1.5/24", true)
        .expect("attach b3");
    assert!(!pings(&a1, "10.99.1.5"), "no peer, no path");
    node_a.set_peers(&front, &vteps).expect("peers back");
    assert!(pings(&a1, "10.99.1.5"), "peer back, path back");
}
