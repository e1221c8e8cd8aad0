//! Service discovery end to end on test hosts: from inside a task's namespace, the names of
//! the services on its networks resolve at 127.0.0.11 (a VIP, or the tasks for `dnsrr`;
//! `tasks.SERVICE` every task), the VIP spreads connections over the tasks, tasks on other
//! nodes are reachable over the overlay, and nothing of another overlay is; other names are
//! forwarded to the host's resolvers.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::netns::TestNetwork;
use integration_tests::{wait_until, Cluster, RunningTask};
use worker::net::dns::{self, Records, ServiceRecord};

const CONVERGE: Duration = Duration::from_secs(60);

/// Each task serves a page with its own process ID on port 80.
const SERVE: &str = "d=$(mktemp -d); echo $$ > $d/index.html; exec busybox httpd -f -p 80 -h $d";

/// The IPv4 addresses `busybox nslookup NAME 127.0.0.11` finds in `task`'s namespace,
/// sorted; `None` when the name does not resolve.
fn lookup(cluster: &Cluster, task: &RunningTask, name: &str) -> Option<Vec<String>> {
    // The trailing dot keeps any search domain of the machine out of the question.
    let fqdn = format!("{name}.");
    let out = cluster.in_task(
        task.host,
        &task.id,
        &["busybox", "nslookup", &fqdn, "127.0.0.11"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut addrs: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(str::trim)
        .filter(|a| !a.starts_with("127.0.0.11") && a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_owned)
        .collect();
    addrs.sort();
    (out.status.success() && !addrs.is_empty()).then_some(addrs)
}

/// `GET /` from `task`'s namespace to `addr`; the page, if any answered.
fn get(cluster: &Cluster, task: &RunningTask, addr: &str) -> Option<String> {
    let url = format!("http://{addr}/");
    let out = cluster.in_task(
        task.host,
        &task.id,
        &["timeout", "3", "busybox", "wget", "-q", "-O-", &url],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn create(cluster: &Cluster, args: &[&str]) {
    let mut line = vec!["service", "create", "--detach"];
    line.extend_from_slice(args);
    cluster.ok(1, &line);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn tasks_resolve_and_reach_the_services_of_their_networks() {
    discovery("kernel");
}

#[test]
fn names_resolve_in_the_userspace_data_path_too() {
    discovery("userspace");
}

fn discovery(mode: &'static str) {
    let mut cluster = Cluster::on_network(3).with_data_path(mode);
    cluster.form(1);
    cluster.ok(1, &["network", "create", "-d", "overlay", "front"]);
    cluster.ok(1, &["network", "create", "-d", "overlay", "other"]);
    let front = cluster.network_id(1, "front");
    let other = cluster.network_id(1, "other");
    create(
        &cluster,
        &[
            "--name",
            "web",
            "--network",
            "front",
            "--replicas",
            "3",
            "--replicas-max-per-node",
            "1",
            "busybox",
            "sh",
            "-c",
            SERVE,
        ],
    );
    create(
        &cluster,
        &[
            "--name",
            "db",
            "--network",
            "front",
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "2",
            "busybox",
            "sleep",
            "600",
        ],
    );
    create(
        &cluster,
        &[
            "--name",
            "lonely",
            "--network",
            "other",
            "--constraint",
            "node.hostname==host2",
            "busybox",
            "sh",
            "-c",
            SERVE,
        ],
    );
    cluster.wait_running(1, "web", 3, CONVERGE);
    cluster.wait_running(1, "db", 2, CONVERGE);
    cluster.wait_running(1, "lonely", 1, CONVERGE);
    let web = cluster.running_tasks(1, "web");
    let db = cluster.running_tasks(1, "db");
    let lonely = &cluster.running_tasks(1, "lonely")[0];
    let on = |host: usize| -> &RunningTask {
        web.iter()
            .find(|t| t.host == host)
            .unwrap_or_else(|| panic!("no web task on host {host}: {web:?}"))
    };
    let client = on(1);
    let web_addrs = sorted(
        web.iter()
            .map(|t| t.address_on(&front).to_owned())
            .collect(),
    );
    let db_addrs = sorted(db.iter().map(|t| t.address_on(&front).to_owned()).collect());

    // tasks.SERVICE lists every running task, wherever it runs.
    wait_until("tasks.web to list every task", CONVERGE, || {
        (lookup(&cluster, client, "tasks.web")? == web_addrs).then_some(())
    });
    assert_eq!(lookup(&cluster, client, "tasks.db"), Some(db_addrs.clone()));
    assert_eq!(
        lookup(&cluster, client, "DB"),
        Some(db_addrs),
        "dnsrr: the tasks, any case"
    );
    // A service of a network the task is not on is not one of its names.
    assert_eq!(
        lookup(&cluster, client, "lonely"),
        None,
        "lonely is not on front"
    );
    assert_eq!(lookup(&cluster, client, "tasks.lonely"), None);

    let pages: Vec<String> = web
        .iter()
        .map(|t| get(&cluster, client, t.address_on(&front)))
        .collect::<Option<_>>()
        .expect("every web task answers over the overlay, on its own node and others");
    assert_eq!(
        pages.iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "{pages:?}"
    );

    if mode == "kernel" {
        // The DNS server has ports of its own behind 127.0.0.11:53: a task may listen on
        // port 53 of every address itself (as a DNS service would).
        let out = cluster.in_task(
            client.host,
            &client.id,
            &["timeout", "1", "busybox", "nc", "-l", "-p", "53"],
        );
        assert_eq!(
            out.status.code(),
            Some(124),
            "nc listened until the timeout: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(lookup(&cluster, client, "web").map(|a| a.len()), Some(1));

        let vip = cluster.vip(1, "web", &front);
        assert_eq!(
            lookup(&cluster, client, "web"),
            Some(vec![vip.clone()]),
            "web resolves to its VIP"
        );
        // The VIP spreads new connections round-robin over the three tasks.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for _ in 0..9 {
            let page = get(&cluster, client, &vip).expect("the VIP answers");
            *seen.entry(page).or_default() += 1;
        }
        assert_eq!(seen.len(), 3, "every task behind the VIP: {seen:?}");
        assert!(seen.values().all(|n| *n == 3), "round-robin: {seen:?}");
        assert!(
            pages.iter().all(|p| seen.contains_key(p)),
            "{pages:?} {seen:?}"
        );
    } else {
        // No VIP without nftables: the name gives the tasks themselves.
        assert_eq!(lookup(&cluster, client, "web"), Some(web_addrs.clone()));
    }

    // Host 1's daemon restarts (its DNS servers die with it): its task keeps running and
    // gets its DNS server back.
    cluster.stop(1);
    cluster.start(1);
    wait_until("the adopted task to resolve again", CONVERGE, || {
        (lookup(&cluster, client, "tasks.web")? == web_addrs).then_some(())
    });

    // Nothing of another overlay is reachable, not even on the same node.
    let lonely_addr = lonely.address_on(&other);
    assert_eq!(
        get(&cluster, on(2), lonely_addr),
        None,
        "other's task from front"
    );
    assert!(
        get(&cluster, lonely, lonely_addr).is_some(),
        "lonely itself answers"
    );

    // A task that stops leaves tasks.SERVICE.
    cluster.ok(1, &["service", "scale", "--detach", "web=2"]);
    cluster.wait_running(1, "web", 2, CONVERGE);
    let left = sorted(
        cluster
            .running_tasks(1, "web")
            .iter()
            .map(|t| t.address_on(&front).to_owned())
            .collect(),
    );
    let asker = &db[0];
    wait_until("tasks.web to drop the stopped task", CONVERGE, || {
        (lookup(&cluster, asker, "tasks.web")? == left).then_some(())
    });
}

#[test]
fn other_names_are_forwarded_to_the_hosts_resolvers() {
    // The test hosts' resolver: a DNS server on host 1's address that knows one name.
    let mut cluster = Cluster::on_network(2).with_resolver(1);
    let records = Records::default();
    records.set(HashMap::from([(
        "outside.example".to_owned(),
        ServiceRecord {
            vip: Some(Ipv4Addr::new(192, 0, 2, 7)),
            tasks: Vec::new(),
        },
    )]));
    let socket = cluster
        .on_host(1, || {
            std::net::UdpSocket::bind((TestNetwork::address(1).as_str(), 53))
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
        })
        .join()
        .expect("binding thread")
        .expect("bind host 1's port 53");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let socket = {
        let _entered = runtime.enter();
        tokio::net::UdpSocket::from_std(socket).expect("tokio socket")
    };
    runtime.spawn(dns::serve_udp(socket, records, Vec::new()));

    cluster.form(1);
    cluster.ok(1, &["network", "create", "-d", "overlay", "front"]);
    create(
        &cluster,
        &[
            "--name",
            "client",
            "--network",
            "front",
            "--constraint",
            "node.hostname==host2",
            "busybox",
            "sleep",
            "600",
        ],
    );
    cluster.wait_running(1, "client", 1, CONVERGE);
    let client = &cluster.running_tasks(1, "client")[0];
    // Asked on host 2, answered by host 1's resolver: forwarded from host 2's namespace.
    let found = wait_until(
        "outside.example through the host's resolver",
        CONVERGE,
        || lookup(&cluster, client, "outside.example"),
    );
    assert_eq!(found, ["192.0.2.7"]);
    assert_eq!(lookup(&cluster, client, "nowhere.example"), None);
    // The service's own name is still skiff's to answer.
    assert_eq!(lookup(&cluster, client, "client").map(|a| a.len()), Some(1));
}
