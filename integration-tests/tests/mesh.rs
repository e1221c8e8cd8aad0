//! The routing mesh end to end on test hosts: a published port answers on every host,
//! including hosts that run no task of the service, and spreads connections round-robin
//! over the tasks, which run in their own network namespaces on the ingress overlay.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use integration_tests::netns::TestNetwork;
use integration_tests::{wait_until, Cluster};

const CONVERGE: Duration = Duration::from_secs(60);

/// `GET /` sent from inside host `from`'s namespace to `to`; the body, if any.
fn get(cluster: &Cluster, from: usize, to: SocketAddr) -> Option<String> {
    let path = format!("/var/run/netns/{}", cluster.namespace(from)?);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(path).ok()?;
        // SAFETY: moves only this short-lived thread into the test host's namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        let timeout = Duration::from_secs(3);
        let mut conn = std::net::TcpStream::connect_timeout(&to, timeout).ok()?;
        conn.set_read_timeout(Some(timeout)).ok()?;
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply).ok()?;
        let (_, body) = reply.split_once("\r\n\r\n")?;
        Some(body.trim().to_owned())
    })
    .join()
    .ok()
    .flatten()
}

fn published(host: usize) -> SocketAddr {
    format!("{}:8080", TestNetwork::address(host))
        .parse()
        .expect("address")
}

#[test]
fn a_published_port_answers_on_every_host_and_spreads_over_the_tasks() {
    let mut cluster = Cluster::on_network(3);
    cluster.form(1);
    // Both tasks on host 3: hosts 1 and 2 run none.
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "2",
            "--constraint",
            "node.hostname==host3",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            // Each task serves a page with its own process ID.
            "d=$(mktemp -d); echo $$ > $d/index.html; exec busybox httpd -f -p 80 -h $d",
        ],
    );
    cluster.wait_running(1, "web", 2, CONVERGE);
    for (from, to) in [(1, 1), (2, 1), (1, 2), (3, 2), (2, 3)] {
        wait_until(
            &format!("host {to}:8080 to answer host {from}"),
            CONVERGE,
            || get(&cluster, from, published(to)),
        );
    }
    // Host 2 runs no task: its port spreads connections over both tasks on host 3.
    let mut pages: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let page = get(&cluster, 1, published(2)).expect("every request answered");
        *pages.entry(page).or_default() += 1;
    }
    assert_eq!(pages.len(), 2, "both tasks answer: {pages:?}");
    assert!(pages.values().all(|n| *n == 20), "round-robin: {pages:?}");
}
