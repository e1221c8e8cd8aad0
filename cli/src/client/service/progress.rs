//! Live progress of a service converging or rolling out, as `docker service create` and
//! `docker service update` show it:
//!
//! ```text
//! overall progress: 2 out of 3 tasks
//! 1/3: running   [==================================================>]
//! 2/3: running   [==================================================>]
//! 3/3: preparing [=================================>                 ]
//! verify: Service converged
//! ```
//!
//! - `converge`: where a service stands from its tasks ([`progress`], pure) and the wait
//!   for it to converge ([`wait`]).
//! - `rollout`: where a rollout stands from its update status ([`rollout`], pure) and the
//!   wait for it to end ([`wait_rollout`]).
//! - `screen`: how the lines are shown, on a terminal or not.
//!
//! Both waits poll the daemon the same way, here (`follow`): every 300 ms, through a
//! leader election's worth of failed polls, and until Ctrl-C, which leaves the service to
//! carry on without us.

mod converge;
mod rollout;
mod screen;

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::anyhow;
use proto::{GetServiceRequest, ListTasksRequest, Service, Task};

use crate::client::{Client, Reply as _};

pub use converge::{bar, progress, wait, Outcome, Progress, STUCK_TIMEOUT};
pub use rollout::{rollout, wait_rollout, Rollout};

/// How often the daemon is asked.
const POLL: Duration = Duration::from_millis(300);
/// Consecutive failed polls tolerated (a leader election, say) before giving up.
const MAX_POLL_ERRORS: u32 = 10;

/// What a wait follows, for its messages: service `name`, which `removed` ("was removed
/// during its rollout") says went away, and whose `what` ("rollout") cannot be followed
/// when the daemon stops answering.
struct Following<'a> {
    name: &'a str,
    removed: &'a str,
    what: &'a str,
}

/// Polls service `id` every [`POLL`] and hands each service and its tasks to `step`, until
/// `step` breaks with the result. Fails when the service is removed or after
/// [`MAX_POLL_ERRORS`] failed polls in a row; returns early, with a note, on Ctrl-C.
async fn follow(
    client: &Client,
    id: &str,
    following: Following<'_>,
    mut step: impl FnMut(Service, Vec<Task>) -> ControlFlow<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let Following {
        name,
        removed,
        what,
    } = following;
    let mut errors = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let polled = tokio::select! {
            p = poll(client, id) => p,
            _ = &mut ctrl_c => return detached(name),
        };
        match polled {
            Ok((service, tasks)) => {
                errors = 0;
                if let ControlFlow::Break(result) = step(service, tasks) {
                    return result;
                }
            }
            Err(Poll::Gone) => return Err(anyhow!("service {name} {removed}")),
            Err(Poll::Failed(e)) => {
                errors += 1;
                if errors >= MAX_POLL_ERRORS {
                    return Err(e.context(format!("cannot follow the {what} of service {name}")));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut ctrl_c => return detached(name),
        }
    }
}

/// Ctrl-C while waiting: the service carries on without us.
fn detached(name: &str) -> anyhow::Result<()> {
    eprintln!(
        "Operation continuing in background.\nUse `skiff service ps {name}` to check progress."
    );
    Ok(())
}

/// Why a poll brought nothing.
enum Poll {
    Gone,
    Failed(anyhow::Error),
}

async fn poll(client: &Client, id: &str) -> Result<(Service, Vec<Task>), Poll> {
    let mut control = client.control();
    let service = match control
        .get_service(GetServiceRequest {
            service: id.to_string(),
        })
        .await
    {
        Ok(r) => r.into_inner().service.ok_or(Poll::Gone)?,
        Err(s) if s.code() == tonic::Code::NotFound => return Err(Poll::Gone),
        Err(s) => return Err(Poll::Failed(client.error(s))),
    };
    let tasks = control
        .list_tasks(ListTasksRequest {
            service_ids: vec![id.to_string()],
            ..Default::default()
        })
        .await
        .reply(client)
        .map_err(Poll::Failed)?
        .tasks;
    Ok((service, tasks))
}
