//! Overlay networks and address allocation on loopback clusters (`process` runtime): the
//! network commands and their refusals, task and service addresses, published ports, and
//! allocation across a leader change. The data path (VXLAN, mesh, DNS) is not exercised.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(40);

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("JSON: {e}: {out}"))
}

/// The network as skiff's own JSON shows it (`network ls --format json`: `vni`, `ipam` as
/// allocated; `network inspect` prints Docker's JSON, which has no VNI field).
fn network(cluster: &Cluster, host: usize, name: &str) -> Value {
    let filter = format!("name={name}");
    let out = cluster.ok(
        host,
        &["network", "ls", "--format", "json", "--filter", &filter],
    );
    json(&out)
        .as_array()
        .and_then(|all| all.iter().find(|n| n["spec"]["name"] == name).cloned())
        .unwrap_or_else(|| panic!("network {name} listed: {out}"))
}

/// The network once the allocator has given it a subnet: (ID, subnet, gateway, VNI).
fn allocated(cluster: &Cluster, host: usize, name: &str) -> (String, String, String, u64) {
    wait_until(&format!("network {name} allocated"), CONVERGE, || {
        let n = network(cluster, host, name);
        let ipam = &n["ipam"][0];
        let vni = n["vni"].as_u64().unwrap_or(0);
        (vni != 0).then(|| {
            (
                n["meta"]["id"].as_str().unwrap_or("").to_owned(),
                ipam["subnet"].as_str().unwrap_or("").to_owned(),
                ipam["gateway"].as_str().unwrap_or("").to_owned(),
                vni,
            )
        })
    })
}

/// The service as skiff's own JSON shows it (`service ls --format json`).
fn service(cluster: &Cluster, host: usize, name: &str) -> Value {
    let filter = format!("name={name}");
    let out = cluster.ok(
        host,
        &["service", "ls", "--format", "json", "--filter", &filter],
    );
    json(&out)
        .as_array()
        .and_then(|all| all.iter().find(|s| s["spec"]["name"] == name).cloned())
        .unwrap_or_else(|| panic!("service {name} listed: {out}"))
}

/// The service's allocated endpoint once it has one: (VIPs as (network ID, address),
/// published ports).
fn endpoint(cluster: &Cluster, host: usize, name: &str) -> (Vec<(String, String)>, Vec<u64>) {
    wait_until(&format!("endpoint of {name}"), CONVERGE, || {
        let e = service(cluster, host, name)["endpoint"].clone();
        if e.is_null() {
            return None;
        }
        let vips = e["virtual_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["network_id"].as_str().unwrap_or("").to_owned(),
                    v["addr"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let ports = e["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["published_port"].as_u64().unwrap_or(0))
            .collect();
        Some((vips, ports))
    })
}

/// The addresses of the running tasks of `service` on `network_id`, once `n` run.
fn task_addresses(
    cluster: &Cluster,
    host: usize,
    service: &str,
    network_id: &str,
    n: usize,
) -> Vec<String> {
    wait_until(&format!("{n} running tasks of {service}"), CONVERGE, || {
        let tasks = json(&cluster.ok(host, &["service", "ps", "--format", "json", service]));
        let running: Vec<&Value> = tasks
            .as_array()?
            .iter()
            .filter(|t| {
                t["desired_state"] == "TASK_STATE_RUNNING"
                    && t["status"]["state"] == "TASK_STATE_RUNNING"
            })
            .collect();
        if running.len() != n {
            return None;
        }
        running
            .iter()
            .map(|t| {
                t["networks"]
                    .as_array()?
                    .iter()
                    .find(|a| a["network_id"] == network_id)?["addresses"][0]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    })
}

/// Whether `addr` (CIDR form) is a host address of `subnet` other than the gateway.
fn in_subnet(addr: &str, subnet: &str, gateway: &str) -> bool {
    let ip = |s: &str| -> u32 {
        s.split('/')
            .next()
            .unwrap()
            .parse::<Ipv4Addr>()
            .unwrap()
            .into()
    };
    let (base, len) = subnet.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = u32::MAX << (32 - len);
    let a = ip(addr);
    a & mask == ip(base) && a != ip(base) && a != ip(base) | !mask && a != ip(gateway)
}

fn all_unique(addrs: &[String]) -> bool {
    addrs.iter().collect::<HashSet<_>>().len() == addrs.len()
}

fn create_service(cluster: &Cluster, host: usize, args: &[&str]) {
    let mut line = vec!["service", "create", "--detach"];
    line.extend_from_slice(args);
    line.extend_from_slice(&["busybox", "sleep", "600"]);
    cluster.ok(host, &line);
}

#[test]
fn networks_commands_addresses_ports_and_refusals() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);

    // `ingress` exists from `swarm init`, with the first subnet of the default pool.
    let (ingress_id, ingress_subnet, _, _) = allocated(&cluster, 1, "ingress");
    assert_eq!(ingress_subnet, "10.0.0.0/24");
    let ls = cluster.ok(1, &["network", "ls"]);
    assert!(ls.starts_with("ID"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.contains("ingress") && l.contains("overlay") && l.contains("swarm")),
        "{ls}"
    );

    let id = cluster
        .ok(
            1,
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.50.0.0/24",
                "back",
            ],
        )
        .trim()
        .to_owned();
    assert!(cluster
        .ok(1, &["network", "ls", "-q"])
        .lines()
        .any(|l| l == id));
    let listed = json(&cluster.ok(1, &["network", "ls", "--format", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let (back_id, subnet, gateway, vni) = allocated(&cluster, 1, "back");
    assert_eq!(
        (back_id.as_str(), subnet.as_str(), gateway.as_str()),
        (id.as_str(), "10.50.0.0/24", "10.50.0.1")
    );
    assert!(vni >= 4096);
    let (_, auto_subnet, _, auto_vni) = {
        cluster.ok(1, &["network", "create", "front"]);
        allocated(&cluster, 1, "front")
    };
    assert_eq!(
        auto_subnet, "10.0.1.0/24",
        "the next /24 of the default pool"
    );
    assert_ne!(auto_vni, vni);

    // Refusals, each one sentence that says what to do.
    let err = cluster.fails(1, &["network", "create", "-d", "bridge", "x"]);
    assert!(err.contains("not supported; use -d overlay"), "{err}");
    let err = cluster.fails(1, &["network", "create", "--subnet", "10.50.0.128/25", "x"]);
    assert!(
        err.contains("overlaps subnet 10.50.0.0/24 of network back"),
        "{err}"
    );
    let err = cluster.fails(1, &["network", "rm", "ingress"]);
    assert!(err.contains("cannot be removed"), "{err}");
    let err = cluster.fails(
        1,
        &["service", "create", "--network", "nope", "busybox", "true"],
    );
    assert!(
        err.contains("network nope not found; create it with skiff network create -d overlay nope"),
        "{err}"
    );

    // Tasks get unique addresses in the subnet; the service a VIP there too.
    create_service(
        &cluster,
        1,
        &["--name", "web", "--network", "back", "--replicas", "4"],
    );
    let addrs = task_addresses(&cluster, 1, "web", &id, 4);
    assert!(all_unique(&addrs), "{addrs:?}");
    assert!(
        addrs.iter().all(|a| in_subnet(a, &subnet, &gateway)),
        "{addrs:?}"
    );
    let (vips, _) = endpoint(&cluster, 1, "web");
    let vip = vips
        .iter()
        .find(|(n, _)| *n == id)
        .expect("a VIP on back")
        .1
        .clone();
    assert!(
        in_subnet(&vip, &subnet, &gateway) && !addrs.contains(&vip),
        "{vip} {addrs:?}"
    );
    let err = cluster.fails(1, &["network", "rm", "back"]);
    assert!(err.contains("in use by service web"), "{err}");

    // Published ports: explicit, conflicting, automatic; the mesh's VIP on ingress.
    create_service(&cluster, 1, &["--name", "pub", "-p", "8080:80"]);
    let (pub_vips, ports) = endpoint(&cluster, 1, "pub");
    assert_eq!(ports, [8080]);
    assert!(
        pub_vips.iter().any(|(n, _)| *n == ingress_id),
        "{pub_vips:?}"
    );
    let err = cluster.fails(
        1,
        &[
            "service",
            "create",
            "--name",
            "other",
            "-p",
            "published=8080,target=81",
            "busybox",
            "true",
        ],
    );
    assert!(
        err.contains("port 8080/tcp is already published by service pub"),
        "{err}"
    );
    create_service(
        &cluster,
        1,
        &["--name", "auto", "-p", "target=80,protocol=udp"],
    );
    let (_, ports) = endpoint(&cluster, 1, "auto");
    assert!(
        ports.len() == 1 && (30000..=32767).contains(&ports[0]),
        "{ports:?}"
    );
    let auto_port = ports[0].to_string();
    let err = cluster.fails(
        1,
        &[
            "service",
            "create",
            "--name",
            "other",
            "-p",
            &format!("{auto_port}:53/udp"),
            "busybox",
            "true",
        ],
    );
    assert!(err.contains("already published by service auto"), "{err}");
    // A port of the mesh cannot also be a host-mode port elsewhere (every node has it)...
    let err = cluster.fails(
        1,
        &[
            "service",
            "create",
            "--name",
            "other",
            "-p",
            "published=8080,target=80,mode=host",
            "busybox",
            "true",
        ],
    );
    assert!(
        err.contains("port 8080/tcp is already published by service pub"),
        "{err}"
    );
    // ...while services may share a host-mode port (the scheduler keeps their tasks apart).
    for name in ["host-a", "host-b"] {
        create_service(
            &cluster,
            1,
            &["--name", name, "-p", "published=9090,target=80,mode=host"],
        );
    }
    cluster.ok(1, &["service", "rm", "host-a", "host-b"]);
    // A subnet the allocator chose is as taken as one asked for.
    let err = cluster.fails(1, &["network", "create", "--subnet", "10.0.1.0/24", "x"]);
    assert!(
        err.contains("overlaps subnet 10.0.1.0/24 of network front"),
        "{err}"
    );

    // A removed service's VIP and port can be reused at once.
    cluster.ok(1, &["service", "rm", "web", "pub"]);
    create_service(
        &cluster,
        1,
        &["--name", "web2", "--network", "back", "-p", "8080:80"],
    );
    let (vips2, ports2) = endpoint(&cluster, 1, "web2");
    assert_eq!(ports2, [8080]);
    assert!(
        vips2.contains(&(id.clone(), vip.clone())),
        "{vips2:?} should reuse {vip}"
    );
    cluster.ok(1, &["service", "rm", "web2"]);
    // Refused while the removed service's tasks stop (if they have not yet), then done.
    cluster.ok(1, &["network", "rm", "front"]);
    cluster.eventually_ok(1, &["network", "rm", "back"], CONVERGE);
    let ls = cluster.ok(1, &["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 1, "only ingress is left: {ls}");
}

#[test]
fn allocation_survives_a_leader_kill_without_duplicates() {
    let mut cluster = Cluster::new(3);
    cluster.form(3);
    cluster.ok(1, &["network", "create", "--subnet", "10.60.0.0/24", "net"]);
    let (id, subnet, gateway, _) = allocated(&cluster, 1, "net");
    create_service(
        &cluster,
        1,
        &["--name", "s", "--network", "net", "--replicas", "4"],
    );
    let before = task_addresses(&cluster, 2, "s", &id, 4);
    let (vips, _) = endpoint(&cluster, 1, "s");

    let leader = (1..=3)
        .find(|i| {
            cluster
                .ok(*i, &["node", "ls"])
                .lines()
                .any(|l| l.contains(&format!("host{i}")) && l.contains("Leader") && l.contains('*'))
        })
        .expect("a leader");
    let other = (1..=3).find(|i| *i != leader).unwrap();
    cluster.kill(leader);
    cluster.eventually_ok(other, &["service", "scale", "--detach", "s=9"], CONVERGE);
    // Tasks on the dead node are replaced, so count the running ones on live nodes only.
    let after = task_addresses(&cluster, other, "s", &id, 9);
    assert!(
        all_unique(&after),
        "an address was handed out twice: {after:?}"
    );
    assert!(
        after.iter().all(|a| in_subnet(a, &subnet, &gateway)),
        "{after:?}"
    );
    assert!(!after.contains(&vips[0].1), "a task got the VIP: {after:?}");
    let kept = before.iter().filter(|a| after.contains(a)).count();
    assert!(
        kept > 0,
        "tasks on live nodes keep their addresses: {before:?} {after:?}"
    );
}

#[test]
fn three_hundred_tasks_in_turn_never_exhaust_a_slash_24() {
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    cluster.ok(
        1,
        &["network", "create", "--subnet", "10.70.0.0/24", "churn"],
    );
    let (id, subnet, gateway, _) = allocated(&cluster, 1, "churn");
    // 300 short tasks, 20 at a time: more than the 252 addresses the subnet has left after
    // its gateway and the service's VIP, so they all run only if ended tasks free theirs.
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "churn",
            "--network",
            "churn",
            "--mode",
            "replicated-job",
            "--replicas",
            "300",
            "--max-concurrent",
            "20",
            "busybox",
            "true",
        ],
    );
    let addrs = wait_until("300 completed tasks", Duration::from_secs(300), || {
        let tasks = json(&cluster.ok(1, &["service", "ps", "--format", "json", "churn"]));
        let tasks = tasks.as_array()?;
        let done: Vec<&Value> = tasks
            .iter()
            .filter(|t| t["status"]["state"] == "TASK_STATE_COMPLETE")
            .collect();
        (done.len() == 300).then(|| {
            done.iter()
                .map(|t| {
                    t["networks"]
                        .as_array()
                        .and_then(|n| n.iter().find(|a| a["network_id"] == id.as_str()))
                        .and_then(|a| a["addresses"][0].as_str())
                        .unwrap_or("")
                        .to_owned()
                })
                .collect::<Vec<String>>()
        })
    });
    assert!(
        addrs.iter().all(|a| in_subnet(a, &subnet, &gateway)),
        "{addrs:?}"
    );
    let distinct: HashSet<&String> = addrs.iter().collect();
    assert!(
        distinct.len() <= 252,
        "{} distinct addresses",
        distinct.len()
    );
}

#[test]
fn swarm_init_address_pool_sets_the_subnets() {
    let mut cluster = Cluster::new(1);
    cluster.start_all();
    let addr = cluster.host(1).addr.clone();
    cluster.ok(
        1,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &addr,
            "--default-addr-pool",
            "10.20.0.0/16",
            "--default-addr-pool-mask-length",
            "26",
        ],
    );
    let (_, ingress, gateway, _) = allocated(&cluster, 1, "ingress");
    assert_eq!(
        (ingress.as_str(), gateway.as_str()),
        ("10.20.0.0/26", "10.20.0.1")
    );
    cluster.ok(1, &["network", "create", "next"]);
    assert_eq!(allocated(&cluster, 1, "next").1, "10.20.0.64/26");
}
