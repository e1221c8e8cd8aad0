//! Jepsen-style fault schedules, many in a row: three (or `MANAGERS`) managers on test hosts, two clients on
//! each reading, creating and compare-and-setting configs while a seeded nemesis kills -9,
//! partitions (full, one-way, bridge) and pauses managers; after each schedule every key's
//! history is checked for linearizability, lost acknowledged writes and the managers'
//! agreement. Each schedule prints its seed (replay one with `SEED=N SCHEDULES=1`).
//!
//! Run: `cargo build --release --bins && SCHEDULES=10 cargo bench -p integration-tests --bench faults`
//! (`SCHEDULE_SECS` sets each schedule's length, 20 s by default; `MANAGERS=5` runs five
//! managers, where partitions and bridges cut two-against-two). Ends with one line:
//! `schedules N, operations N, acknowledged N, lost N, anomalies N`; exits non-zero when
//! anything was lost or anomalous.

use std::time::Duration;

use integration_tests::faults::{self, Settings};
use integration_tests::Cluster;

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Copies every manager's log so far to a directory of its own, named in the output, for
/// the schedule that went wrong (the cluster's own directory goes when the bench ends).
fn keep_logs(cluster: &Cluster, managers: usize, seed: u64) {
    let dir = std::env::temp_dir().join(format!("skiff-faults-{seed}"));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for m in 1..=managers {
        let _ = std::fs::write(dir.join(format!("manager{m}.log")), cluster.log(m));
    }
    eprintln!("managers' logs: {}", dir.display());
}

fn main() {
    let schedules = setting("SCHEDULES").unwrap_or(3);
    let base = setting("SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let managers = setting("MANAGERS").unwrap_or(3) as usize;
    let settings = Settings {
        managers,
        clients_per_manager: 2,
        keys: 3,
        duration: Duration::from_secs(setting("SCHEDULE_SECS").unwrap_or(20)),
    };
    let mut cluster = Cluster::on_network(managers);
    cluster.form(managers);
    let (mut operations, mut acknowledged, mut lost, mut anomalies) = (0, 0, 0, 0);
    for i in 0..schedules {
        let seed = base.wrapping_add(i);
        let outcome = faults::run(&mut cluster, &format!("s{i}"), seed, &settings);
        eprintln!(
            "schedule {i} SEED={seed}: operations {}, indeterminate {}, acknowledged {}, lost {}, anomalies {}",
            outcome.history.len(),
            outcome.indeterminate(),
            outcome.acknowledged,
            outcome.lost.len(),
            outcome.anomalies()
        );
        if !outcome.lost.is_empty() || outcome.anomalies() > 0 {
            eprintln!("schedule {i} SEED={seed}:\n{}", outcome.problems());
            keep_logs(&cluster, managers, seed);
        }
        operations += outcome.history.len();
        acknowledged += outcome.acknowledged;
        lost += outcome.lost.len();
        anomalies += outcome.anomalies();
    }
    println!(
        "schedules {schedules}, operations {operations}, acknowledged {acknowledged}, lost {lost}, anomalies {anomalies}"
    );
    if lost > 0 || anomalies > 0 {
        drop(cluster);
        std::process::exit(1);
    }
}
