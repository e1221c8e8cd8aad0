use proto::service_spec::Mode;
use proto::{Meta, ReplicatedJob, ReplicatedService, TaskSpec, TaskStatus};

use super::*;

const STARTED: i64 = 10_000;

fn cfg(
    parallelism: u64,
    delay: u64,
    action: FailureAction,
    ratio: f32,
    order: UpdateOrder,
) -> UpdateConfig {
    UpdateConfig {
        parallelism: Some(parallelism),
        delay_ms: delay,
        failure_action: action as i32,
        monitor_ms: Some(5_000),
        max_failure_ratio: ratio,
        order: order as i32,
    }
}

fn spec(image: &str, update: UpdateConfig) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        mode: Some(Mode::Replicated(ReplicatedService { replicas: 6 })),
        task_template: Some(TaskSpec {
            container: Some(proto::ContainerSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_config: Some(update),
        rollback_config: Some(cfg(1, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst)),
        ..Default::default()
    }
}

/// A service at spec version 2 (image v2), updating since `STARTED`.
fn service(update: UpdateConfig) -> Service {
    Service {
        meta: Some(Meta {
            id: "svc".into(),
            ..Default::default()
        }),
        spec: Some(spec("v2", update)),
        previous_spec: Some(spec("v1", UpdateConfig::default())),
        spec_version: 2,
        update_status: Some(UpdateStatus {
            state: UpdateState::Updating as i32,
            started_at: STARTED,
            completed_at: 0,
            message: "update in progress".into(),
        }),
        ..Default::default()
    }
}

fn task(id: &str, version: u64, state: TaskState, created: i64, at: i64) -> Task {
    Task {
        meta: Some(Meta {
            id: id.into(),
            created_at: created,
            ..Default::default()
        }),
        service_id: "svc".into(),
        spec_version: version,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: state as i32,
            timestamp: at,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn failed(id: &str, created: i64, at: i64) -> Task {
    let mut t = task(id, 2, TaskState::Failed, created, at);
    t.status.as_mut().unwrap().err = "exit code 1".into();
    t.desired_state = TaskState::Shutdown as i32;
    t
}

/// `task` that had been running since `since`.
fn ran(mut task: Task, since: i64) -> Task {
    task.status.as_mut().unwrap().running_since = since;
    task
}

/// Slots 1..: each a live task (or none) and its history.
fn slots<'a>(tasks: &'a [Vec<&'a Task>], live: &[Option<&'a Task>]) -> Vec<Slot<'a, u64>> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, history)| Slot {
            key: i as u64 + 1,
            live: live[i],
            history: history.as_slice(),
        })
        .collect()
}

fn keys<K: Copy>(r: &Rollout<'_, K>) -> Vec<K> {
    r.replace.iter().map(|(k, _)| *k).collect()
}

#[test]
fn nothing_happens_without_a_rollout_in_progress() {
    let mut s = service(cfg(1, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    let old = task("a", 1, TaskState::Running, 0, 0);
    let h = vec![vec![&old]];
    for state in [
        UpdateState::Unknown,
        UpdateState::Paused,
        UpdateState::Completed,
        UpdateState::RollbackPaused,
    ] {
        s.update_status.as_mut().unwrap().state = state as i32;
        let r = decide(&s, &slots(&h, &[Some(&old)]), STARTED + 1);
        assert!(r.replace.is_empty() && r.status.is_none(), "{state:?}");
    }
}

#[test]
fn parallelism_bounds_the_slots_in_flight() {
    let olds: Vec<Task> = (0..6)
        .map(|i| task(&format!("o{i}"), 1, TaskState::Running, 0, 0))
        .collect();
    let h: Vec<Vec<&Task>> = olds.iter().map(|t| vec![t]).collect();
    let live: Vec<Option<&Task>> = olds.iter().map(Some).collect();
    let cases: Vec<(u64, Vec<u64>)> = vec![
        (1, vec![1]),
        (2, vec![1, 2]),
        (0, vec![1, 2, 3, 4, 5, 6]),
        (10, vec![1, 2, 3, 4, 5, 6]),
    ];
    for (p, want) in cases {
        let s = service(cfg(p, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
        let r = decide(&s, &slots(&h, &live), STARTED + 1);
        assert_eq!(keys(&r), want, "parallelism {p}");
        assert_eq!(r.order, UpdateOrder::StopFirst);
        assert!(r.status.is_none());
    }
}

#[test]
fn busy_slots_take_room_from_the_next_ones() {
    let s = service(cfg(2, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    let starting = task("n1", 2, TaskState::Starting, STARTED + 1, STARTED + 2);
    let running = task("n2", 2, TaskState::Running, STARTED + 1, STARTED + 3);
    let old3 = task("o3", 1, TaskState::Running, 0, 0);
    let old4 = task("o4", 1, TaskState::Running, 0, 0);
    let old5 = task("o5", 1, TaskState::Running, 0, 0);
    let h = vec![
        vec![&starting],
        vec![&running],
        vec![&old3],
        vec![&old4],
        vec![&old5],
    ];
    // Slot 1 starts: one slot of room.
    let r = decide(
        &s,
        &slots(
            &h,
            &[
                Some(&starting),
                Some(&running),
                Some(&old3),
                Some(&old4),
                Some(&old5),
            ],
        ),
        STARTED + 10,
    );
    assert_eq!(keys(&r), vec![3]);
    // Slot 3's old task is stopping (stop-first), slot 4 waits for its new one: no room.
    let r = decide(
        &s,
        &slots(
            &h,
            &[Some(&running), Some(&running), None, None, Some(&old5)],
        ),
        STARTED + 10,
    );
    assert_eq!(keys(&r), Vec::<u64>::new());
}

#[test]
fn an_unhealthy_or_starting_health_check_holds_the_slot() {
    let s = service(cfg(1, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    let mut new = task("n1", 2, TaskState::Running, STARTED + 1, STARTED + 2);
    let old = task("o2", 1, TaskState::Running, 0, 0);
    for (health, want) in [
        (HealthState::Starting, vec![]),
        (HealthState::Unhealthy, vec![]),
        (HealthState::Healthy, vec![2]),
        (HealthState::None, vec![2]),
    ] {
        new.status.as_mut().unwrap().health = health as i32;
        let h = vec![vec![&new], vec![&old]];
        let r = decide(&s, &slots(&h, &[Some(&new), Some(&old)]), STARTED + 10);
        assert_eq!(keys(&r), want, "{health:?}");
    }
}

#[test]
fn the_delay_runs_from_when_the_new_task_became_ready() {
    let s = service(cfg(
        1,
        3_000,
        FailureAction::Pause,
        0.0,
        UpdateOrder::StopFirst,
    ));
    let new = task("n1", 2, TaskState::Running, STARTED + 1, STARTED + 1_000);
    let old = task("o2", 1, TaskState::Running, 0, 0);
    let h = vec![vec![&new], vec![&old]];
    let live = [Some(&new), Some(&old)];
    let r = decide(&s, &slots(&h, &live), STARTED + 2_000);
    assert!(r.replace.is_empty());
    assert_eq!(r.wake_at, Some(STARTED + 4_000));
    let r = decide(&s, &slots(&h, &live), STARTED + 4_000);
    assert_eq!(keys(&r), vec![2]);
}

#[test]
fn completes_after_the_last_monitor_window() {
    let s = service(cfg(2, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    let a = task("n1", 2, TaskState::Running, STARTED + 1, STARTED + 100);
    let b = task("n2", 2, TaskState::Running, STARTED + 1, STARTED + 900);
    let h = vec![vec![&a], vec![&b]];
    let live = [Some(&a), Some(&b)];
    let r = decide(&s, &slots(&h, &live), STARTED + 1_000);
    assert!(r.status.is_none() && r.replace.is_empty());
    assert_eq!(r.wake_at, Some(STARTED + 5_900));
    let r = decide(&s, &slots(&h, &live), STARTED + 5_900);
    let status = r.status.unwrap();
    assert_eq!(status.state(), UpdateState::Completed);
    assert_eq!(
        (status.started_at, status.completed_at),
        (STARTED, STARTED + 5_900)
    );
    assert_eq!(status.message, "update completed");
}

#[test]
fn a_failure_pauses_with_the_reason() {
    let s = service(cfg(1, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    let bad = failed("n1", STARTED + 1, STARTED + 500);
    let old = task("o2", 1, TaskState::Running, 0, 0);
    let h = vec![vec![&bad], vec![&old]];
    let r = decide(&s, &slots(&h, &[None, Some(&old)]), STARTED + 600);
    assert!(r.replace.is_empty() && !r.rollback);
    let status = r.status.unwrap();
    assert_eq!(status.state(), UpdateState::Paused);
    assert_eq!(status.started_at, STARTED);
    assert_eq!(
        status.message,
        "update paused due to failure or early termination of task n1: exit code 1"
    );
}

#[test]
fn failures_outside_the_rollout_or_the_monitor_window_do_not_count() {
    let s = service(cfg(1, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    // Before the rollout started (a resumed update), and long after the task started.
    let before = failed("f0", STARTED - 100, STARTED - 50);
    let late = ran(
        failed("f1", STARTED + 1, STARTED + 60_000),
        STARTED + 50_000,
    );
    let new = task(
        "n1",
        2,
        TaskState::Running,
        STARTED + 60_001,
        STARTED + 60_100,
    );
    let old = task("o2", 1, TaskState::Running, 0, 0);
    let h = vec![vec![&before, &late, &new], vec![&old]];
    let r = decide(&s, &slots(&h, &[Some(&new), Some(&old)]), STARTED + 60_200);
    assert!(r.status.is_none());
    assert_eq!(keys(&r), vec![2]);
}

#[test]
fn the_failure_ratio_tolerates_some_failures() {
    let s = service(cfg(0, 0, FailureAction::Pause, 0.5, UpdateOrder::StopFirst));
    let fails: Vec<Task> = (0..4)
        .map(|i| failed(&format!("f{i}"), STARTED + 1, STARTED + 10 + i))
        .collect();
    let ok = task("n", 2, TaskState::Running, STARTED + 1, STARTED + 5);
    // 3 of 6 slots failed: not more than half.
    let h: Vec<Vec<&Task>> = (0..6)
        .map(|i| if i < 3 { vec![&fails[i]] } else { vec![&ok] })
        .collect();
    let live: Vec<Option<&Task>> = (0..6)
        .map(|i| if i < 3 { None } else { Some(&ok) })
        .collect();
    let r = decide(&s, &slots(&h, &live), STARTED + 100);
    assert!(r.status.is_none());
    // 4 of 6: past the ratio.
    let h: Vec<Vec<&Task>> = (0..6)
        .map(|i| if i < 4 { vec![&fails[i]] } else { vec![&ok] })
        .collect();
    let live: Vec<Option<&Task>> = (0..6)
        .map(|i| if i < 4 { None } else { Some(&ok) })
        .collect();
    let r = decide(&s, &slots(&h, &live), STARTED + 100);
    let status = r.status.unwrap();
    assert_eq!(status.state(), UpdateState::Paused);
    assert!(
        status.message.contains("task f3: exit code 1"),
        "{}",
        status.message
    );
}

#[test]
fn continue_moves_on_past_a_failed_slot() {
    let s = service(cfg(
        1,
        0,
        FailureAction::Continue,
        0.0,
        UpdateOrder::StartFirst,
    ));
    // Start-first: slot 1's new task failed, its old one still runs and is left alone.
    let bad = failed("n1", STARTED + 1, STARTED + 50);
    let old1 = task("o1", 1, TaskState::Running, 0, 0);
    let old2 = task("o2", 1, TaskState::Running, 0, 0);
    let h = vec![vec![&old1, &bad], vec![&old2]];
    let r = decide(&s, &slots(&h, &[Some(&old1), Some(&old2)]), STARTED + 100);
    assert!(r.status.is_none());
    assert_eq!(keys(&r), vec![2]);
    assert_eq!(r.order, UpdateOrder::StartFirst);

    // Stop-first: slot 1 is empty (or retrying) after its new task failed; slot 2 goes on.
    let s = service(cfg(
        1,
        0,
        FailureAction::Continue,
        0.0,
        UpdateOrder::StopFirst,
    ));
    let retry = task("n2", 2, TaskState::Starting, STARTED + 60, STARTED + 70);
    let h = vec![vec![&bad], vec![&old2]];
    let r = decide(&s, &slots(&h, &[None, Some(&old2)]), STARTED + 100);
    assert_eq!(keys(&r), vec![2]);
    let h = vec![vec![&bad, &retry], vec![&old2]];
    let r = decide(&s, &slots(&h, &[Some(&retry), Some(&old2)]), STARTED + 100);
    assert_eq!(keys(&r), vec![2]);
    // Once every other slot is done, the rollout completes around the failed one.
    let new2 = task("n3", 2, TaskState::Running, STARTED + 80, STARTED + 90);
    let h = vec![vec![&bad], vec![&new2]];
    let r = decide(&s, &slots(&h, &[None, Some(&new2)]), STARTED + 10_000);
    assert_eq!(r.status.unwrap().state(), UpdateState::Completed);
}

#[test]
fn failure_action_rollback_goes_back_to_the_previous_spec() {
    let s = service(cfg(
        1,
        0,
        FailureAction::Rollback,
        0.0,
        UpdateOrder::StopFirst,
    ));
    let bad = failed("n1", STARTED + 1, STARTED + 50);
    let old = task("o2", 1, TaskState::Running, 0, 0);
    let h = vec![vec![&bad], vec![&old]];
    let now = STARTED + 100;
    let r = decide(&s, &slots(&h, &[None, Some(&old)]), now);
    assert!(r.rollback && r.replace.is_empty());
    let status = r.status.unwrap();
    assert_eq!(status.state(), UpdateState::RollbackStarted);
    assert_eq!(status.started_at, now);
    assert!(
        status
            .message
            .starts_with("update rolled back due to failure or early termination of task n1"),
        "{}",
        status.message
    );
    let back = rolled_back(&s, status);
    assert_eq!(back.spec_version, 3);
    assert_eq!(
        back.spec.as_ref().unwrap().task_template,
        s.previous_spec.as_ref().unwrap().task_template
    );
    assert_eq!(back.previous_spec, s.spec);
    assert_eq!(
        back.update_status.unwrap().state(),
        UpdateState::RollbackStarted
    );
}

#[test]
fn a_rollback_uses_the_rollback_policy_and_pauses_on_failure() {
    // Rolled back to v1 (version 3) from v2, whose rollback config says parallelism 3.
    let mut s = service(UpdateConfig::default());
    let mut v2 = spec(
        "v2",
        cfg(1, 0, FailureAction::Rollback, 0.0, UpdateOrder::StopFirst),
    );
    v2.rollback_config = Some(cfg(
        3,
        0,
        FailureAction::Rollback,
        0.0,
        UpdateOrder::StartFirst,
    ));
    s.spec = Some(spec("v1", UpdateConfig::default()));
    s.previous_spec = Some(v2);
    s.spec_version = 3;
    s.update_status.as_mut().unwrap().state = UpdateState::RollbackStarted as i32;
    let olds: Vec<Task> = (0..4)
        .map(|i| task(&format!("o{i}"), 2, TaskState::Running, 0, 0))
        .collect();
    let h: Vec<Vec<&Task>> = olds.iter().map(|t| vec![t]).collect();
    let live: Vec<Option<&Task>> = olds.iter().map(Some).collect();
    let r = decide(&s, &slots(&h, &live), STARTED + 1);
    assert_eq!(keys(&r), vec![1, 2, 3]);
    assert_eq!(r.order, UpdateOrder::StartFirst);
    // A failure while rolling back pauses (there is nothing to roll back to).
    let mut bad = failed("r1", STARTED + 1, STARTED + 2);
    bad.spec_version = 3;
    let h = vec![vec![&bad], vec![&olds[1]]];
    let r = decide(&s, &slots(&h, &[None, Some(&olds[1])]), STARTED + 3);
    assert!(!r.rollback);
    let status = r.status.unwrap();
    assert_eq!(status.state(), UpdateState::RollbackPaused);
    assert!(
        status.message.starts_with("rollback paused"),
        "{}",
        status.message
    );
    // Done: rollback completed.
    let back = task("r2", 3, TaskState::Running, STARTED + 1, STARTED + 2);
    let h = vec![vec![&back]];
    let r = decide(&s, &slots(&h, &[Some(&back)]), STARTED + 10_000);
    let status = r.status.unwrap();
    assert_eq!(status.state(), UpdateState::RollbackCompleted);
    assert_eq!(status.message, "rollback completed: update in progress");
}

#[test]
fn applying_a_spec_starts_resumes_or_leaves_alone() {
    let mut s = service(UpdateConfig::default());
    s.update_status = None;
    let v3 = spec("v3", UpdateConfig::default());
    apply_spec(&mut s, v3.clone(), false, 50);
    assert_eq!(s.spec_version, 3);
    assert_eq!(
        s.previous_spec
            .as_ref()
            .unwrap()
            .task_template
            .as_ref()
            .unwrap()
            .container
            .as_ref()
            .unwrap()
            .image,
        "v2"
    );
    let st = s.update_status.clone().unwrap();
    assert_eq!((st.state(), st.started_at), (UpdateState::Updating, 50));

    // The same template again: a paused rollout resumes, a finished one stays finished.
    s.update_status.as_mut().unwrap().state = UpdateState::Paused as i32;
    apply_spec(&mut s, v3.clone(), false, 60);
    let st = s.update_status.clone().unwrap();
    assert_eq!(
        (st.state(), st.started_at, st.message.as_str()),
        (UpdateState::Updating, 60, "update resumed")
    );
    assert_eq!(s.spec_version, 3);
    s.update_status.as_mut().unwrap().state = UpdateState::RollbackPaused as i32;
    apply_spec(&mut s, v3.clone(), false, 70);
    assert_eq!(
        s.update_status.as_ref().unwrap().state(),
        UpdateState::RollbackStarted
    );
    s.update_status.as_mut().unwrap().state = UpdateState::Completed as i32;
    apply_spec(&mut s, v3.clone(), false, 80);
    assert_eq!(s.update_status.as_ref().unwrap().started_at, 70);

    // A forced update is a new template.
    let mut forced = v3.clone();
    forced.task_template.as_mut().unwrap().force_update += 1;
    apply_spec(&mut s, forced, false, 90);
    assert_eq!(
        (s.spec_version, s.update_status.as_ref().unwrap().state()),
        (4, UpdateState::Updating)
    );

    // A manual rollback.
    let previous = s.previous_spec.clone().unwrap();
    apply_spec(&mut s, previous, true, 100);
    let st = s.update_status.clone().unwrap();
    assert_eq!(
        (st.state(), st.message.as_str()),
        (UpdateState::RollbackStarted, "manually requested rollback")
    );

    // Jobs are not rolled out.
    let mut job = service(UpdateConfig::default());
    job.update_status = None;
    let mut jspec = spec("v9", UpdateConfig::default());
    jspec.mode = Some(Mode::ReplicatedJob(ReplicatedJob {
        max_concurrent: 1,
        total_completions: 1,
    }));
    apply_spec(&mut job, jspec, false, 5);
    assert!(job.update_status.is_none());
    assert_eq!(job.spec_version, 3);
}

#[test]
fn the_monitor_window_counts_from_the_start_not_the_creation() {
    let s = service(cfg(1, 0, FailureAction::Pause, 0.0, UpdateOrder::StopFirst));
    let old = task("o2", 1, TaskState::Running, 0, 0);
    // A slow start (a long image pull), then a crash 1 s after running: a failure.
    let crash = ran(failed("c", STARTED + 1, STARTED + 31_000), STARTED + 30_000);
    // A task that never ran, however long it tried: a failure.
    let never = failed("n", STARTED + 1, STARTED + 60_000);
    // A task that ran for longer than the monitor window: not a failure.
    let stable = ran(failed("s", STARTED + 1, STARTED + 20_000), STARTED + 1_000);
    for (t, paused) in [(&crash, true), (&never, true), (&stable, false)] {
        let h = vec![vec![t], vec![&old]];
        let r = decide(&s, &slots(&h, &[None, Some(&old)]), STARTED + 70_000);
        assert_eq!(r.status.is_some(), paused, "{}", t.id());
    }
}
