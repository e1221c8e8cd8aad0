//! The kernel routing mesh across two nodes: node a runs no task, node b runs two web
//! servers on the ingress overlay; connections to node a's published port reach both,
//! round-robin, and a task taken out of the rotation gets no more. Needs root and nftables.

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Command;

use common::{exec_in, is_root, nodes, task, Namespaces};
use worker::net::commands::{Commands, HostCommands};
use worker::net::mesh::{self, Protocol, Published};
use worker::net::overlay::{self, Overlay};

/// Starts busybox httpd in `ns` (it goes to the background; the namespace's removal ends
/// it) serving a page that says `name`.
fn web_server(ns: &str, name: &str, dir: &std::path::Path) {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), name).unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "httpd", "-p", "80", "-h"])
        .arg(&root)
        .status()
        .expect("start httpd");
    assert!(status.success(), "httpd did not start");
}

/// `GET /` from inside namespace `client_ns` (busybox wget, whose own `-T` crashes the
/// Debian build), the body if any.
fn get(client_ns: &str, addr: std::net::SocketAddr) -> Option<String> {
    let url = format!("http://{addr}/");
    exec_in(
        client_ns,
        &["timeout", "3", "busybox", "wget", "-q", "-O-", &url],
    )
    .map(|body| body.trim().to_owned())
}

#[test]
fn a_node_without_the_task_spreads_connections_over_tasks_elsewhere() {
    if !is_root() || Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipped: the mesh test needs root and nftables");
        return;
    }
    let pid = std::process::id();
    let mut made = Namespaces::default();
    let nodes = nodes("ms", 2, &mut made);
    let ingress = Overlay {
        id: format!("i{pid:07}"),
        vni: 6096 + pid % 1000,
        gateway: "10.99.3.1/24".into(),
        port: overlay::VXLAN_PORT,
    };
    let vteps: Vec<Ipv4Addr> = nodes.iter().map(|n| n.underlay).collect();
    // As the dispatcher lists them: node a's leg, the two tasks on node b.
    let endpoints = [
        (Ipv4Addr::new(10, 99, 3, 250), vteps[0]),
        (Ipv4Addr::new(10, 99, 3, 2), vteps[1]),
        (Ipv4Addr::new(10, 99, 3, 3), vteps[1]),
    ];
    for n in &nodes {
        made.0
            .push(n.node.ensure_network(&ingress).expect("ingress"));
        n.node
            .set_peers(&ingress, &vteps, &endpoints)
            .expect("peers");
    }
    let (node_a, node_b) = (&nodes[0], &nodes[1]);
    // As the data path does on a node with overlays, whatever the mesh's mode.
    HostCommands
        .nft(
            Some(&node_a.ns),
            &overlay::untracked_ruleset(overlay::VXLAN_PORT),
        )
        .expect("the untracked table");
    let leg = mesh::ensure_leg(&node_a.node, &ingress, "10.99.3.250/24").expect("leg");
    mesh::ensure_leg(&node_a.node, &ingress, "10.99.3.250/24").expect("leg again");
    // The leg's MAC follows from its address, as the other nodes' FDB entries expect.
    let mac = exec_in(
        &node_a.ns,
        &["cat", &format!("/sys/class/net/{leg}/address")],
    );
    assert_eq!(
        mac.as_deref(),
        Some(format!("{}\n", overlay::mac_of(Ipv4Addr::new(10, 99, 3, 250))).as_str())
    );

    let dir = tempfile::tempdir().unwrap();
    let (t1, t2) = (task("web1", &mut made), task("web2", &mut made));
    node_b
        .node
        .attach(&ingress, &t1, "eth0", "10.99.3.2/24", true)
        .unwrap();
    node_b
        .node
        .attach(&ingress, &t2, "eth0", "10.99.3.3/24", true)
        .unwrap();
    web_server(&t1, "one", dir.path());
    web_server(&t2, "two", dir.path());

    // Node a's mesh publishes TCP 8080 over `backends`.
    let publish = |backends: Vec<Ipv4Addr>| {
        let published = [Published {
            protocol: Protocol::Tcp,
            port: 8080,
            target_port: 80,
            backends,
        }];
        let rules = mesh::ruleset(&leg, &published, &[], &mesh::Protected::default());
        HostCommands.nft(Some(&node_a.ns), &rules).expect("rules");
    };
    let both = vec![Ipv4Addr::new(10, 99, 3, 2), Ipv4Addr::new(10, 99, 3, 3)];
    publish(both);

    // A client on node b's host connects to node a's address, which runs no task.
    let url = std::net::SocketAddr::from((node_a.underlay, 8080));
    let mut counts: HashMap<String, usize> = HashMap::new();
    // httpd may take a moment to listen.
    let first = (0..50)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            get(&node_b.ns, url)
        })
        .expect("the mesh answers");
    *counts.entry(first).or_default() += 1;
    for _ in 0..39 {
        let page = get(&node_b.ns, url).expect("every request answered");
        *counts.entry(page).or_default() += 1;
    }
    assert_eq!(counts.get("one"), Some(&20), "{counts:?}");
    assert_eq!(counts.get("two"), Some(&20), "{counts:?}");
    // Node a tracks the connections it forwarded, not the VXLAN packets that carry them.
    let tracked = exec_in(&node_a.ns, &["cat", "/proc/net/nf_conntrack"]).expect("conntrack");
    assert!(tracked.contains("dport=8080"), "{tracked}");
    assert!(
        // (the space: a client's port may start with the same digits)
        !tracked.contains(&format!("dport={} ", overlay::VXLAN_PORT)),
        "{tracked}"
    );

    // Task two leaves the rotation: every new connection goes to task one.
    let only_one = vec![Ipv4Addr::new(10, 99, 3, 2)];
    publish(only_one);
    for _ in 0..10 {
        assert_eq!(get(&node_b.ns, url).as_deref(), Some("one"));
    }
    // No task at all: refused at once, not a timeout.
    publish(vec![]);
    assert_eq!(get(&node_b.ns, url), None);
}
