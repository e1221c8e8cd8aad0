//! The restart policy: whether, and when, a slot whose task ended gets a new one.

use proto::{RestartCondition, RestartPolicy, Task, TaskState};

use super::task::{exited, status_time};
use crate::lifecycle::observed;

/// What to do with a slot that has no running task.
#[derive(Debug, PartialEq, Eq)]
pub enum Restart {
    /// Start a new task now.
    Now,
    /// Decide again at this time (Unix ms): the restart delay has not passed yet, or an exit
    /// is about to leave the window of `max_attempts`.
    At(i64),
    /// Leave the slot empty: the policy says no more.
    Never,
}

/// Decides for a slot from its tasks (any order) and the policy.
pub fn decide(policy: Option<&RestartPolicy>, history: &[&Task], now: i64) -> Restart {
    let Some(last) = history.iter().max_by_key(|t| status_time(t)) else {
        return Restart::Now;
    };
    // A task that did not exit by itself (its node died or was drained, or it was scaled
    // or updated away) is replaced at once, whatever the policy.
    if !exited(last) {
        return Restart::Now;
    }
    let default = RestartPolicy::default();
    let policy = policy.unwrap_or(&default);
    let condition = RestartCondition::try_from(policy.condition).unwrap_or(RestartCondition::Any);
    let succeeded = observed(last) == TaskState::Complete as i32;
    match condition {
        RestartCondition::None => return Restart::Never,
        RestartCondition::OnFailure if succeeded => return Restart::Never,
        _ => {}
    }
    if policy.max_attempts > 0 {
        let since = if policy.window_ms > 0 {
            now - policy.window_ms as i64
        } else {
            i64::MIN
        };
        // Every exit after the first run is a restart attempt.
        let mut exits: Vec<i64> = history
            .iter()
            .filter(|t| exited(t) && status_time(t) >= since)
            .map(|t| status_time(t))
            .collect();
        if exits.len() as u64 > policy.max_attempts {
            if policy.window_ms == 0 {
                return Restart::Never;
            }
            // Exits leave the window as time passes: look again once one too many has.
            // Rounds run on changes, and nothing changes when that happens.
            exits.sort_unstable_by(|a, b| b.cmp(a));
            return Restart::At(exits[policy.max_attempts as usize] + policy.window_ms as i64 + 1);
        }
    }
    let at = status_time(last) + delay_ms(policy, history);
    if at > now {
        Restart::At(at)
    } else {
        Restart::Now
    }
}

/// The shortest wait before a rejected task's replacement, even with a restart delay of 0.
const MIN_REJECTED_DELAY_MS: i64 = 1_000;
/// The longest wait a run of rejections makes a slot wait.
const MAX_REJECTED_DELAY_MS: i64 = 5 * 60 * 1_000;

/// How long after the last task ended its replacement starts: the policy's delay, doubled
/// for each rejection in a row beyond the first. A task is rejected when its node cannot
/// even start it (a reference no registry has, an image missing with `--pull never`):
/// retrying that every few seconds for ever fills logs and hammers registries, while a
/// cause that goes away (an image pushed later) is still picked up within minutes.
fn delay_ms(policy: &RestartPolicy, history: &[&Task]) -> i64 {
    let delay = policy.delay_ms.unwrap_or(0) as i64;
    let mut newest_first: Vec<&&Task> = history.iter().collect();
    newest_first.sort_by_key(|t| std::cmp::Reverse(status_time(t)));
    let rejections = newest_first
        .iter()
        .take_while(|t| observed(t) == TaskState::Rejected as i32)
        .count() as u32;
    if rejections == 0 {
        return delay;
    }
    let doubled = 1i64 << (rejections - 1).min(20);
    delay
        .max(MIN_REJECTED_DELAY_MS)
        .saturating_mul(doubled)
        .min(MAX_REJECTED_DELAY_MS.max(delay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::TaskStatus;

    fn task(state: TaskState, at: i64) -> Task {
        Task {
            status: Some(TaskStatus {
                state: state as i32,
                timestamp: at,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn policy(condition: RestartCondition, delay: u64, max: u64, window: u64) -> RestartPolicy {
        RestartPolicy {
            condition: condition as i32,
            delay_ms: Some(delay),
            max_attempts: max,
            window_ms: window,
        }
    }

    #[test]
    fn decisions() {
        use RestartCondition::*;
        use TaskState::*;
        let failed = task(Failed, 1000);
        let done = task(Complete, 1000);
        let lost = task(Running, 1000);
        let cases: Vec<(RestartPolicy, Vec<&Task>, i64, Restart)> = vec![
            (policy(Any, 0, 0, 0), vec![], 0, Restart::Now),
            (policy(None, 0, 0, 0), vec![&lost], 1000, Restart::Now),
            (policy(None, 0, 0, 0), vec![&failed], 1000, Restart::Never),
            (
                policy(OnFailure, 0, 0, 0),
                vec![&done],
                1000,
                Restart::Never,
            ),
            (
                policy(OnFailure, 0, 0, 0),
                vec![&failed],
                1000,
                Restart::Now,
            ),
            (policy(Any, 0, 0, 0), vec![&done], 1000, Restart::Now),
            (
                policy(Any, 500, 0, 0),
                vec![&failed],
                1200,
                Restart::At(1500),
            ),
            (policy(Any, 500, 0, 0), vec![&failed], 1600, Restart::Now),
        ];
        for (p, history, now, want) in cases {
            assert_eq!(decide(Some(&p), &history, now), want, "{p:?}");
        }
    }

    #[test]
    fn max_attempts_count_exits_in_the_window() {
        let t1 = task(TaskState::Failed, 1_000);
        let t2 = task(TaskState::Failed, 2_000);
        let t3 = task(TaskState::Failed, 3_000);
        let p = policy(RestartCondition::Any, 0, 2, 0);
        assert_eq!(decide(Some(&p), &[&t1, &t2], 3_000), Restart::Now);
        assert_eq!(decide(Some(&p), &[&t1, &t2, &t3], 3_000), Restart::Never);
        // With a window, old failures no longer count.
        let p = policy(RestartCondition::Any, 0, 2, 1_500);
        assert_eq!(decide(Some(&p), &[&t1, &t2, &t3], 3_000), Restart::Now);
        // Too many in the window: look again when the oldest one that counts leaves it.
        let p = policy(RestartCondition::Any, 0, 2, 2_500);
        assert_eq!(
            decide(Some(&p), &[&t3, &t1, &t2], 3_000),
            Restart::At(3_501)
        );
        assert_eq!(decide(Some(&p), &[&t1, &t2, &t3], 3_501), Restart::Now);
    }

    #[test]
    fn rejections_in_a_row_back_off() {
        let p = policy(RestartCondition::Any, 5_000, 0, 0);
        let r1 = task(TaskState::Rejected, 10_000);
        let r2 = task(TaskState::Rejected, 20_000);
        let r3 = task(TaskState::Rejected, 30_000);
        let failed = task(TaskState::Failed, 40_000);
        assert_eq!(decide(Some(&p), &[&r1], 10_000), Restart::At(15_000));
        assert_eq!(decide(Some(&p), &[&r1, &r2], 20_000), Restart::At(30_000));
        assert_eq!(
            decide(Some(&p), &[&r3, &r1, &r2], 30_000),
            Restart::At(50_000)
        );
        // A task that got to run ends the run of rejections.
        assert_eq!(
            decide(Some(&p), &[&r1, &r2, &r3, &failed], 40_000),
            Restart::At(45_000)
        );
        // No delay still waits a little after a rejection, and the wait has a ceiling.
        let hot = policy(RestartCondition::Any, 0, 0, 0);
        assert_eq!(decide(Some(&hot), &[&r1], 10_000), Restart::At(11_000));
        let many: Vec<Task> = (1..=30)
            .map(|i| task(TaskState::Rejected, i * 1_000))
            .collect();
        let many: Vec<&Task> = many.iter().collect();
        assert_eq!(
            decide(Some(&p), &many, 30_000),
            Restart::At(30_000 + MAX_REJECTED_DELAY_MS)
        );
    }
}
