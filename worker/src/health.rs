//! Health checks: a task's check command run inside it every interval (Docker's rules: a
//! failure during the start period does not count, `retries` failures in a row make the task
//! unhealthy). The controller reports a task with a check RUNNING only once it is healthy,
//! and fails it when it turns unhealthy, so the orchestrator replaces it, rolling updates
//! wait for it and the routing mesh never sends it a connection before it is ready.

use std::sync::Arc;
use std::time::Duration;

use agent_runtime::Runtime;
use proto::{HealthConfig, HealthState};
use tokio::sync::watch;
use tracing::Instrument as _;

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

/// A task's health as last checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Starting, healthy or unhealthy.
    pub state: HealthState,
    /// What the last check printed (or why it could not run).
    pub output: String,
}

/// A health check ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    command: Vec<String>,
    interval: Duration,
    timeout: Duration,
    retries: u32,
    start_period: Duration,
    /// Between checks during the start period, while the task is not yet healthy.
    start_interval: Duration,
}

impl Check {
    /// The check a config describes; `None` for no check (`NONE`, or no test at all).
    pub fn from_config(config: &HealthConfig) -> Option<Check> {
        let command = match config.test.split_first() {
            None => return None,
            Some((kind, _)) if kind == "NONE" => return None,
            Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
            Some((kind, rest)) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some(_) => vec!["/bin/sh".into(), "-c".into(), config.test.join(" ")],
        };
        if command.is_empty() {
            return None;
        }
        let ms = |v: u64, default: Duration| {
            if v == 0 {
                default
            } else {
                Duration::from_millis(v)
            }
        };
        Some(Check {
            command,
            interval: ms(config.interval_ms, DEFAULT_INTERVAL),
            timeout: ms(config.timeout_ms, DEFAULT_TIMEOUT),
            retries: if config.retries == 0 {
                DEFAULT_RETRIES
            } else {
                config.retries
            },
            start_period: Duration::from_millis(config.start_period_ms),
            start_interval: ms(
                config.start_interval_ms,
                ms(config.interval_ms, DEFAULT_INTERVAL),
            ),
        })
    }
}

/// The check a task runs: its service's, else its image's.
pub async fn check_for(
    runtime: &Arc<dyn Runtime>,
    task: &proto::Task,
    task_id: &str,
) -> Option<Check> {
    let own = task
        .spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .and_then(|c| c.healthcheck.as_ref())
        .filter(|h| !h.test.is_empty());
    match own {
        Some(config) => Check::from_config(config),
        None => Check::from_config(&runtime.image_healthcheck(task_id).await?),
    }
}

/// Runs `check` in the task until it is dropped, publishing each change of health.
pub fn monitor(runtime: Arc<dyn Runtime>, task_id: String, check: Check) -> Monitor {
    let (tx, rx) = watch::channel(Health {
        state: HealthState::Starting,
        output: String::new(),
    });
    let handle = tokio::spawn(
        async move {
            let started = tokio::time::Instant::now();
            let mut failures = 0u32;
            loop {
                let starting = tx.borrow().state == HealthState::Starting
                    && started.elapsed() < check.start_period;
                let wait = if starting {
                    check.start_interval
                } else {
                    check.interval
                };
                tokio::time::sleep(wait).await;
                let result = runtime.exec(&task_id, &check.command, check.timeout).await;
                let (ok, output) = match result {
                    Ok(out) if out.code == 0 => (true, out.output),
                    Ok(out) if out.code < 0 => (false, format!("health check {}", out.output)),
                    Ok(out) => (
                        false,
                        format!(
                            "health check exited with {}: {}",
                            out.code,
                            out.output.trim()
                        ),
                    ),
                    Err(e) if e.is_permanent() => {
                        tx.send_replace(Health {
                            state: HealthState::Unhealthy,
                            output: e.to_string(),
                        });
                        return;
                    }
                    Err(e) => (false, format!("health check could not run: {e}")),
                };
                let current = tx.borrow().state;
                let state = if ok {
                    failures = 0;
                    HealthState::Healthy
                } else if current == HealthState::Starting && started.elapsed() < check.start_period
                {
                    HealthState::Starting
                } else {
                    failures += 1;
                    if failures >= check.retries {
                        HealthState::Unhealthy
                    } else {
                        current
                    }
                };
                tx.send_if_modified(|h| {
                    let changed = h.state != state;
                    *h = Health {
                        state,
                        output: output.clone(),
                    };
                    changed
                });
            }
        }
        .in_current_span(),
    );
    Monitor { rx, handle }
}

/// A running health check; dropping it stops the checks.
pub struct Monitor {
    rx: watch::Receiver<Health>,
    handle: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Resolves with the health once it is no longer starting.
    pub async fn settled(&mut self) -> Health {
        let _ = self.rx.wait_for(|h| h.state != HealthState::Starting).await;
        self.rx.borrow().clone()
    }

    /// Resolves with the health once the task is unhealthy.
    pub async fn unhealthy(&mut self) -> Health {
        let _ = self
            .rx
            .wait_for(|h| h.state == HealthState::Unhealthy)
            .await;
        self.rx.borrow().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn checks_follow_docker_forms() {
        assert_eq!(Check::from_config(&config(&[])), None);
        assert_eq!(Check::from_config(&config(&["NONE"])), None);
        let c = Check::from_config(&config(&["CMD", "wget", "-q", "localhost"])).unwrap();
        assert_eq!(c.command, ["wget", "-q", "localhost"]);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.retries, DEFAULT_RETRIES);
        let c = Check::from_config(&config(&["CMD-SHELL", "test -f /ok"])).unwrap();
        assert_eq!(c.command, ["/bin/sh", "-c", "test -f /ok"]);
    }

    #[test]
    fn the_start_interval_is_the_interval_unless_given() {
        let c = Check::from_config(&HealthConfig {
            interval_ms: 7_000,
            ..config(&["CMD", "true"])
        })
        .unwrap();
        assert_eq!(c.start_interval, Duration::from_secs(7));
        let c = Check::from_config(&HealthConfig {
            start_interval_ms: 500,
            ..config(&["CMD", "true"])
        })
        .unwrap();
        assert_eq!(
            (c.interval, c.start_interval),
            (DEFAULT_INTERVAL, Duration::from_millis(500))
        );
    }
}
