//! A short Jepsen-style schedule in CI: three managers on test hosts, two clients on each
//! reading, creating and compare-and-setting configs while a seeded nemesis kills, cuts
//! (full, one-way, bridge) and pauses managers; then every key's history is linearizable,
//! no acknowledged write is lost and the managers agree. The seed is printed at the start;
//! `SEED=N` replays a run. `cargo bench -p integration-tests --bench faults` runs many.

use std::time::Duration;

use integration_tests::faults::{self, Settings};
use integration_tests::Cluster;

#[test]
fn configs_stay_linearizable_under_kills_partitions_and_pauses() {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
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
        .filter(|op| op.input != integration_tests::linearizability::Input::Read)
        .count();
    eprintln!(
        "SEED={seed}: operations {}, writes {writes}, acknowledged {}, lost {}, anomalies {}",
        outcome.history.len(),
        outcome.acknowledged,
        outcome.lost.len(),
        outcome.anomalies()
    );
    assert!(
        outcome.lost.is_empty() && outcome.anomalies() == 0,
        "SEED={seed} (replay with SEED={seed}):\n{}",
        outcome.problems()
    );
    // The run did something: the faults did not stop every client.
    assert!(
        outcome.acknowledged >= 10,
        "SEED={seed}: only {} writes acknowledged",
        outcome.acknowledged
    );
}
