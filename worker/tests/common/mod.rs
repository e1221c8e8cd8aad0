//! Two test nodes, each a network namespace with an underlay address on a switch of the
//! test's own; everything made is removed on drop, even when the test fails.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;

use worker::net::commands::HostCommands;
use worker::net::overlay::{self, Node};

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Every namespace the test made (with its processes), removed on drop in reverse order.
#[derive(Default)]
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A test node: its overlay handle, underlay address and namespace.
pub struct TestNode {
    pub node: Node,
    pub underlay: Ipv4Addr,
    pub ns: String,
}

/// `n` nodes on a fresh switch, named after `tag` and this process.
pub fn nodes(tag: &str, n: usize, made: &mut Namespaces) -> Vec<TestNode> {
    let pid = std::process::id();
    let switch = format!("{tag}sw{pid}");
    ip(&["netns", "add", &switch]);
    made.0.push(switch.clone());
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &switch, "link", "set", "br0", "up"]);
    (0..n)
        .map(|i| {
            let ns = format!("{tag}n{i}{pid}");
            ip(&["netns", "add", &ns]);
            made.0.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &switch,
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
            TestNode {
                node: Node::new(
                    &format!("{tag}{i}{pid:06}"),
                    underlay,
                    Some(ns.clone()),
                    Arc::new(HostCommands),
                ),
                underlay,
                ns,
            }
        })
        .collect()
}

/// A task namespace, recorded for removal.
pub fn task(name: &str, made: &mut Namespaces) -> String {
    let id = format!("{name}{}", std::process::id());
    overlay::create_task_namespace(&HostCommands, &id).expect("task namespace");
    let ns = overlay::task_namespace(&id);
    made.0.push(ns.clone());
    ns
}

/// Runs `args` inside namespace `ns`; its output if it succeeds.
pub fn exec_in(ns: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn pings(ns: &str, addr: &str) -> bool {
    exec_in(ns, &["busybox", "ping", "-c", "1", "-W", "2", addr]).is_some()
}
