//! A short Jepsen-style schedule in CI: three managers on test hosts, two clients on each
//! reading, creating and compare-and-setting configs while a seeded nemesis kills, cuts
//! (full, one-way, bridge) and pauses managers; then every key's history is linearizable,
//! no acknowledged write is lost and the managers agree. The seed is printed at the start;
//! `SEED=N` replays a run. `cargo bench -p integration-tests --bench faults` runs many.
//!
//! The same nemesis against services, workers included: once the faults heal, a replicated
//! service runs exactly its replicas (no slot twice) and a global one once per node, in the
//! managers' view and in the processes that actually run.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use integration_tests::faults::{self, Settings};
use integration_tests::linearizability::{self, Input, Output};
use integration_tests::{wait_until, Cluster};

/// `SEED` when set (a replay), else a new one.
fn seed() -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

#[test]
fn configs_stay_linearizable_under_kills_partitions_and_pauses() {
    let seed = seed();
    let settings = Settings {
        managers: 3,
        clients_per_manager: 2,
        keys: 3,
        duration: Duration::from_secs(20),
    };
    let mut cluster = Cluster::on_network(3);
    cluster.form(3);
    let outcome = faults::run(&mut cluster, "ci", seed, &settings);
    let writes = outcome
        .history
        .iter()
        .filter(|op| op.input != Input::Read)
        .count();
    eprintln!(
        "SEED={seed}: operations {}, writes {writes}, indeterminate {}, acknowledged {}, lost {}, anomalies {}",
        outcome.history.len(),
        outcome.indeterminate(),
        outcome.acknowledged,
        outcome.lost.len(),
        outcome.anomalies()
    );
    assert!(
        outcome.lost.is_empty() && outcome.anomalies() == 0,
        "SEED={seed} (replay with SEED={seed}):\n{}",
        outcome.problems()
    );
    // The checks can fail on this very history: the final read of a key turned back to its
    // first acknowledged write (later ones were acknowledged too) is an anomaly, and the
    // later writes are then lost.
    let first_and_more = outcome.history.iter().find_map(|first| {
        let Output::Written(Some(version)) = first.output else {
            return None;
        };
        let value = match first.input {
            Input::Create(v) | Input::Cas { value: v, .. } => v,
            Input::Read => return None,
        };
        let later = outcome.history.iter().filter(|op| {
            op.key == first.key
                && op.invoked > first.completed.unwrap_or_default()
                && op.input != Input::Read
                && matches!(op.output, Output::Written(_))
        });
        (later.count() > 0).then(|| (first.key.clone(), value, version))
    });
    let (key, value, version) = first_and_more.expect("a key written more than once");
    let mut forged = outcome.history.clone();
    let last_read = forged
        .iter_mut()
        .rev()
        .find(|op| op.key == key && op.input == Input::Read && op.completed.is_some())
        .expect("the final read");
    last_read.output = Output::Read(Some((value, version)));
    assert_eq!(linearizability::check(&forged).anomalies.len(), 1);
    let finals = HashMap::from([(key, Some(value))]);
    assert!(!linearizability::lost_writes(&forged, &finals).is_empty());
    // The run did something: the faults did not stop every client.
    assert!(
        outcome.acknowledged >= 10,
        "SEED={seed}: only {} writes acknowledged",
        outcome.acknowledged
    );
}

/// Processes on this machine whose command line is exactly `sleep <marker>`: the tasks
/// that really run, whatever the managers think.
fn processes_sleeping(marker: &str) -> usize {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

#[test]
fn services_run_exactly_their_replicas_after_kills_partitions_and_pauses() {
    let seed = seed();
    // 3 managers and 2 workers; the nemesis strikes all five.
    let mut cluster = Cluster::on_network(5);
    cluster.form(3);
    // A sleep no other test runs, to count the real processes.
    let replicated = (900_000_000 + std::process::id() * 2).to_string();
    let global = (900_000_001 + std::process::id() * 2).to_string();
    for (name, mode, marker) in [
        ("rep", ["--replicas", "4"], &replicated),
        ("glob", ["--mode", "global"], &global),
    ] {
        let mut args = vec!["service", "create", "--detach", "--name", name];
        args.extend(mode);
        args.extend(["busybox", "sleep", marker]);
        cluster.ok(1, &args);
    }
    cluster.wait_running(1, "rep", 4, Duration::from_secs(60));
    cluster.wait_running(1, "glob", 5, Duration::from_secs(60));

    faults::inject(&mut cluster, seed, 5, Duration::from_secs(15));

    // Within the reconciliation time: each slot once, each node once, in the managers'
    // view and on the machine.
    let within = Duration::from_secs(60);
    let running = cluster.wait_running(1, "rep", 4, within);
    let slots: BTreeSet<u64> = running.iter().map(|(slot, _)| *slot).collect();
    assert_eq!(
        slots.len(),
        4,
        "SEED={seed}: a slot runs twice: {running:?}"
    );
    let running = cluster.wait_running(1, "glob", 5, within);
    let nodes: BTreeSet<&str> = running.iter().map(|(_, node)| node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        5,
        "SEED={seed}: a node runs the global service twice: {running:?}"
    );
    for (service, marker, n) in [("rep", &replicated, 4), ("glob", &global, 5)] {
        wait_until(
            &format!("exactly {n} processes of {service} (SEED={seed})"),
            within,
            || (processes_sleeping(marker) == n).then_some(()),
        );
    }
    // Every manager agrees.
    for m in 2..=3 {
        wait_until(
            &format!("manager {m} to show 4 and 5 running tasks"),
            within,
            || {
                (cluster.running(m, "rep").len() == 4 && cluster.running(m, "glob").len() == 5)
                    .then_some(())
            },
        );
    }
}
