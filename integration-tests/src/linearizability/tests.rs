use super::*;

use rand::{Rng, SeedableRng};

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// An operation on key `k` by client `c` from `from` to `to` milliseconds (`None`: never
/// answered).
fn op(c: usize, k: &str, input: Input, output: Output, from: u64, to: Option<u64>) -> Operation {
    Operation {
        client: c,
        key: k.into(),
        input,
        output,
        invoked: ms(from),
        completed: to.map(ms),
    }
}

fn read(c: usize, seen: Option<(Value, Version)>, from: u64, to: u64) -> Operation {
    op(c, "k", Input::Read, Output::Read(seen), from, Some(to))
}

fn create(c: usize, value: Value, output: Output, from: u64, to: Option<u64>) -> Operation {
    op(c, "k", Input::Create(value), output, from, to)
}

fn cas(
    c: usize,
    expected: (Value, Version),
    value: Value,
    output: Output,
    from: u64,
    to: Option<u64>,
) -> Operation {
    let input = Input::Cas {
        expected_value: expected.0,
        expected_version: expected.1,
        value,
    };
    op(c, "k", input, output, from, to)
}

fn linearizable(history: &[Operation]) -> bool {
    let report = check(history);
    assert!(
        report.undecided.is_empty(),
        "undecided: {:?}",
        report.undecided
    );
    report.anomalies.is_empty()
}

#[test]
fn a_sequential_history_that_follows_the_register_is_linearizable() {
    let h = [
        read(1, None, 0, 1),
        create(1, 1, Output::Written(Some(5)), 2, Some(3)),
        read(2, Some((1, 5)), 4, 5),
        cas(2, (1, 5), 2, Output::Written(Some(7)), 6, Some(7)),
        cas(1, (1, 5), 3, Output::Conflict, 8, Some(9)),
        read(1, Some((2, 7)), 10, 11),
    ];
    assert!(linearizable(&h));
}

#[test]
fn two_updates_from_the_same_read_cannot_both_succeed() {
    let ok_and_conflict = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Written(Some(7)), 2, Some(6)),
        cas(2, (1, 5), 3, Output::Conflict, 3, Some(5)),
    ];
    assert!(linearizable(&ok_and_conflict));
    let both = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Written(Some(7)), 2, Some(6)),
        cas(2, (1, 5), 3, Output::Written(Some(8)), 3, Some(5)),
    ];
    assert!(!linearizable(&both));
}

#[test]
fn a_read_after_an_acknowledged_write_cannot_see_the_old_value() {
    let stale = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Written(Some(7)), 2, Some(3)),
        read(2, Some((1, 5)), 4, 5),
    ];
    assert!(!linearizable(&stale));
    let report = check(&stale);
    assert_eq!(report.anomalies.len(), 1);
    let shown = report.anomalies[0].to_string();
    assert!(
        shown.contains("not linearizable") && shown.contains("Read"),
        "{shown}"
    );
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in [(1, 5), (2, 7)] {
        let h = [
            create(1, 1, Output::Written(Some(5)), 0, Some(1)),
            cas(1, (1, 5), 2, Output::Written(Some(7)), 2, Some(6)),
            read(2, Some(seen), 3, 4),
        ];
        assert!(linearizable(&h), "reading {seen:?}");
    }
}

#[test]
fn reads_cannot_go_back_once_a_concurrent_write_was_seen() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Written(Some(7)), 2, Some(20)),
        read(2, Some((2, 7)), 3, 4),
        read(3, Some((1, 5)), 5, 6),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn an_acknowledged_create_cannot_vanish() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        read(2, None, 2, 3),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn a_value_is_read_with_one_version_only() {
    let h = [
        create(1, 1, Output::Written(None), 0, Some(1)),
        read(2, Some((1, 5)), 2, 3),
        read(2, Some((1, 6)), 4, 5),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn an_indeterminate_update_may_have_taken_effect_late() {
    // Client 1 timed out; its update shows up after later reads saw the old value.
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Unknown, 2, None),
        read(2, Some((1, 5)), 10, 11),
        read(2, Some((2, 9)), 20, 21),
        cas(2, (2, 9), 3, Output::Written(Some(12)), 22, Some(23)),
    ];
    assert!(linearizable(&h));
}

#[test]
fn an_indeterminate_update_may_never_take_effect() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Unknown, 2, None),
        cas(2, (1, 5), 3, Output::Written(Some(8)), 10, Some(11)),
        read(2, Some((3, 8)), 20, 21),
    ];
    assert!(linearizable(&h));
}

#[test]
fn an_indeterminate_update_cannot_take_effect_before_it_was_sent() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        read(2, Some((2, 7)), 2, 3),
        cas(1, (1, 5), 2, Output::Unknown, 4, None),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn an_indeterminate_update_that_was_seen_cannot_be_undone() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Unknown, 2, None),
        read(2, Some((2, 7)), 3, 4),
        read(2, Some((1, 5)), 5, 6),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn an_indeterminate_create_gets_its_version_from_the_first_read() {
    let good = [
        create(1, 1, Output::Unknown, 0, None),
        read(2, Some((1, 5)), 2, 3),
        cas(2, (1, 5), 2, Output::Written(Some(7)), 4, Some(5)),
    ];
    assert!(linearizable(&good));
    let two_versions = [
        create(1, 1, Output::Unknown, 0, None),
        read(2, Some((1, 5)), 2, 3),
        read(3, Some((1, 6)), 4, 5),
    ];
    assert!(!linearizable(&two_versions));
}

#[test]
fn a_value_nobody_wrote_is_an_anomaly() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Unknown, 2, None),
        read(2, Some((3, 9)), 3, 4),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn a_conflict_while_the_expected_write_holds_is_an_anomaly() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(2, (1, 5), 2, Output::Conflict, 2, Some(3)),
        read(1, Some((1, 5)), 4, 5),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn keys_are_checked_apart_and_only_the_bad_one_is_reported() {
    let mut h = vec![
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        read(2, None, 2, 3),
    ];
    h.push(op(
        3,
        "other",
        Input::Create(9),
        Output::Written(Some(6)),
        0,
        Some(1),
    ));
    h.push(op(
        3,
        "other",
        Input::Read,
        Output::Read(Some((9, 6))),
        2,
        Some(3),
    ));
    h.push(op(4, "other", Input::Read, Output::Unknown, 2, None));
    let report = check(&h);
    assert_eq!(report.anomalies.len(), 1);
    assert_eq!(report.anomalies[0].key, "k");
}

#[test]
fn acknowledged_writes_off_the_final_chain_are_lost() {
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Written(Some(7)), 2, Some(3)),
        cas(2, (2, 7), 3, Output::Unknown, 4, None),
        cas(2, (2, 7), 4, Output::Unknown, 5, None),
        cas(3, (3, 8), 5, Output::Written(Some(9)), 6, Some(7)),
    ];
    let finals = |v: Option<Value>| HashMap::from([("k".to_owned(), v)]);
    // 1 <- 2 <- 3 <- 5: every acknowledged write is on the chain.
    assert!(lost_writes(&h, &finals(Some(5))).is_empty());
    // 1 <- 2 <- 4: the acknowledged 5 is gone (the indeterminate 3 may never have happened).
    let lost = lost_writes(&h, &finals(Some(4)));
    assert_eq!(lost, vec![h[4].clone()]);
    // The key is gone: every acknowledged write is lost.
    assert_eq!(lost_writes(&h, &finals(None)).len(), 3);
}

#[test]
fn a_write_reported_refused_that_took_effect_is_an_anomaly_but_loses_nothing() {
    // The update of 2 was told "conflict", yet 2 was read and replaced: the chain 1 <- 2 <- 3
    // still holds every acknowledged write.
    let h = [
        create(1, 1, Output::Written(Some(5)), 0, Some(1)),
        cas(1, (1, 5), 2, Output::Conflict, 2, Some(3)),
        read(2, Some((2, 7)), 4, 5),
        cas(2, (2, 7), 3, Output::Written(Some(9)), 6, Some(7)),
    ];
    assert!(!linearizable(&h));
    let finals = HashMap::from([("k".to_owned(), Some(3))]);
    assert!(lost_writes(&h, &finals).is_empty());
}

/// A history made by running a real register under random overlapping operations, in
/// rounds of one operation per client, each taking effect at a random instant within its
/// interval; some never answered (half of those never took effect).
fn simulated(seed: u64, clients: usize, rounds: usize) -> Vec<Operation> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut register: Option<(Value, Version)> = None;
    // Versions are log indexes: they grow, with gaps.
    let mut next_version = 1;
    let mut next_value = 1;
    // The last (value, version) each client read.
    let mut known: Vec<Option<(Value, Version)>> = vec![None; clients];
    let mut round_start = 0;
    let mut history = Vec::new();
    for _ in 0..rounds {
        let mut round = Vec::new();
        for (c, seen) in known.iter().enumerate() {
            let from = round_start + rng.gen_range(0..5);
            let to = from + rng.gen_range(1..20);
            let at = rng.gen_range(from..=to);
            let input = match (seen, rng.gen_range(0..3)) {
                (None, 0) => Input::Create(next_value),
                (Some((v, ver)), 1 | 2) => Input::Cas {
                    expected_version: *ver,
                    expected_value: *v,
                    value: next_value,
                },
                _ => Input::Read,
            };
            next_value += 1;
            round.push((at, c, input, from, to));
        }
        round_start = round.iter().map(|r| r.4).max().unwrap_or(round_start) + 1;
        round.sort_by_key(|r| r.0);
        for (_, c, input, from, to) in round {
            let answered = rng.gen_bool(0.95);
            let effect = answered || rng.gen_bool(0.5);
            next_version += rng.gen_range(1..3);
            let output = match &input {
                Input::Read => Output::Read(register),
                Input::Create(v) if register.is_none() => {
                    if effect {
                        register = Some((*v, next_version));
                    }
                    Output::Written(Some(next_version))
                }
                Input::Create(_) => Output::Exists,
                Input::Cas {
                    expected_version,
                    value,
                    ..
                } => match register {
                    None => Output::Missing,
                    Some((_, ver)) if ver == *expected_version => {
                        if effect {
                            register = Some((*value, next_version));
                        }
                        Output::Written(Some(next_version))
                    }
                    Some(_) => Output::Conflict,
                },
            };
            if let (true, Output::Read(seen @ Some(_))) = (answered, &output) {
                known[c] = *seen;
            }
            let (output, completed) = if answered {
                (output, Some(ms(to)))
            } else {
                (Output::Unknown, None)
            };
            history.push(Operation {
                client: c,
                key: "k".into(),
                input,
                output,
                invoked: ms(from),
                completed,
            });
        }
    }
    history
}

#[test]
fn simulated_histories_of_a_real_register_are_linearizable_and_a_forged_read_is_not() {
    for seed in 0..20 {
        let mut h = simulated(seed, 6, 40);
        let report = check(&h);
        assert!(
            report.is_linearizable(),
            "seed {seed}: {:?}",
            report.anomalies
        );
        // A read of a value no write ever made.
        let Some(i) = h
            .iter()
            .position(|op| matches!(op.output, Output::Read(Some(_))))
        else {
            continue;
        };
        h[i].output = Output::Read(Some((1_000_000, 1_000_000)));
        assert!(
            !check(&h).is_linearizable(),
            "seed {seed}: forged read passed"
        );
    }
}

#[test]
fn simulated_histories_hold_every_kind_of_operation() {
    let h = simulated(1, 6, 40);
    let count = |f: &dyn Fn(&Operation) -> bool| h.iter().filter(|op| f(op)).count();
    let updates = count(&|op| {
        matches!(op.input, Input::Cas { .. }) && matches!(op.output, Output::Written(_))
    });
    let conflicts = count(&|op| op.output == Output::Conflict);
    let unknown = count(&|op| op.output == Output::Unknown);
    let reads = count(&|op| matches!(op.output, Output::Read(Some(_))));
    assert!(
        updates > 10 && conflicts > 10 && unknown > 3 && reads > 10,
        "{updates} {conflicts} {unknown} {reads}"
    );
}
