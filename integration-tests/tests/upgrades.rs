//! Upgrades on loopback: the Raft entry format gate (`manager::raft::format`). One of three
//! managers simulates the previous release (`skiffd --raft-entry-format 1`, a hidden,
//! test-only flag): the cluster is formed on it, as on the previous release; while it runs,
//! a leader of this release writes format 1 and it applies everything; restarted as this
//! release, the leader moves to format 2; restarted as the previous release again (a
//! downgrade), it stops at the first format-2 entry with a message saying to upgrade.

use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);
/// `skiffd` arguments that make a manager read and report Raft entry format 1 only.
const PREVIOUS_RELEASE: &[&str] = &["--raft-entry-format", "1"];

/// Host `i`'s Raft status (`skiff info`), if it answers.
fn raft(cluster: &Cluster, i: usize) -> Option<Value> {
    let out = cluster.skiff(i, &["info", "--format", "json"]);
    if !out.status.success() {
        return None;
    }
    let info: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(info["raft"].clone())
}

fn number(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// Waits until one of `hosts` leads and writes entries in `format`; returns it.
fn leader_writing(cluster: &Cluster, hosts: &[usize], format: u64) -> usize {
    wait_until(
        &format!("a leader among hosts {hosts:?} writing Raft entry format {format}"),
        SETTLE,
        || {
            hosts.iter().copied().find(|&i| {
                raft(cluster, i).is_some_and(|r| {
                    number(&r, "raft_id") != 0
                        && number(&r, "raft_id") == number(&r, "leader_raft_id")
                        && number(&r, "entry_format") == format
                })
            })
        },
    )
}

/// Creates configs `from..to` through `leader`, all at once so that their batches meet in
/// the leader's proposal queue.
fn create_configs(cluster: &Cluster, leader: usize, names: std::ops::Range<usize>) {
    std::thread::scope(|s| {
        let writers: Vec<_> = names
            .map(|n| {
                s.spawn(move || {
                    let name = format!("c{n}");
                    let out =
                        cluster.skiff_input(leader, &["config", "create", &name, "-"], "setting");
                    assert!(
                        out.status.success(),
                        "config create {name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
    });
}

/// Waits until host `i` has applied everything `leader` had applied when called, and
/// shows `configs` configs.
fn caught_up(cluster: &Cluster, i: usize, leader: usize, configs: usize) {
    let target = raft(cluster, leader).map_or(0, |r| number(&r, "applied_index"));
    assert!(target > 0);
    wait_until(&format!("host {i} to apply up to {target}"), SETTLE, || {
        (raft(cluster, i).map_or(0, |r| number(&r, "applied_index")) >= target).then_some(())
    });
    let listed = cluster.ok(i, &["config", "ls", "-q"]);
    assert_eq!(listed.lines().count(), configs, "{listed}");
}

const STOPPED: &str = "this manager understands Raft entries up to format 1 but entry";

#[test]
fn the_leader_writes_a_newer_entry_format_only_once_every_manager_reads_it() {
    // The cluster starts on the previous release: host 1 reads format 1 only, and leads.
    let mut cluster = Cluster::new(3).with_daemon_args(1, PREVIOUS_RELEASE);
    cluster.form(3);
    let old = raft(&cluster, 1).expect("host 1 answers");
    assert_eq!(number(&old, "entry_format_understood"), 1, "{old}");
    let leader = leader_writing(&cluster, &[1], 1);
    create_configs(&cluster, leader, 0..8);

    // Hosts 2 and 3 run this release; leadership moves to one of them while host 1 restarts,
    // still on the previous release. The new leader writes format 1 (one batch per entry,
    // however many writers meet) and host 1 applies every entry.
    let host1 = number(&old, "raft_id");
    cluster.kill(1);
    wait_until("hosts 2 and 3 to elect a leader", SETTLE, || {
        raft(&cluster, 2)
            .map(|r| number(&r, "leader_raft_id"))
            .filter(|&l| l != 0 && l != host1)
    });
    cluster.start(1);
    let leader = leader_writing(&cluster, &[2, 3], 1);
    create_configs(&cluster, leader, 8..32);
    caught_up(&cluster, 1, leader, 32);
    assert!(!cluster.log(1).contains(STOPPED), "{}", cluster.log(1));

    // Upgraded: every manager reads format 2 now, and the leader writes it.
    cluster.stop(1);
    cluster.set_daemon_args(1, &[]);
    cluster.start(1);
    let leader = leader_writing(&cluster, &[1, 2, 3], 2);
    create_configs(&cluster, leader, 32..56);
    let follower = if leader == 1 { 2 } else { 1 };
    caught_up(&cluster, follower, leader, 56);
    for i in 1..=3 {
        assert!(
            !cluster.log(i).contains("upgrade skiffd"),
            "{}",
            cluster.log(i)
        );
    }

    // Started as the previous release again, host 1 meets the format-2 entries in its log
    // and stops at the first one, saying what to do, instead of reading them as empty.
    cluster.stop(1);
    cluster.set_daemon_args(1, PREVIOUS_RELEASE);
    cluster.start(1);
    let line = wait_until("host 1 to stop at a format-2 entry", SETTLE, || {
        cluster
            .log(1)
            .lines()
            .find(|l| l.contains(STOPPED))
            .map(str::to_owned)
    });
    assert!(
        line.contains("is format 2: upgrade skiffd"),
        "one line saying what to do: {line}"
    );
    // It never rejoins (so the leader keeps the last format it reported); hosts 2 and 3
    // still make a quorum.
    let leader = leader_writing(&cluster, &[2, 3], 2);
    create_configs(&cluster, leader, 56..58);
}
