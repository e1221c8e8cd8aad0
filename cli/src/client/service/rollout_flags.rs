//! The `--update-*` and `--rollback-*` flags, which `service create` and `service update`
//! share: `create` sends only what is given (the manager fills in Swarm's defaults for the
//! rest), `update` changes only what is given.

use anyhow::bail;
use proto::{FailureAction, UpdateConfig, UpdateOrder};

use super::parse;
use crate::client::duration;

/// The [`UpdateFlags`] of `args`, a `CreateArgs` or an `UpdateArgs`, as `(update,
/// rollback)`. A macro because the two commands name the flags alike but document them
/// each in their own words (`create` gives the defaults), so they are fields of each, not
/// one flattened struct.
macro_rules! update_and_rollback_flags {
    ($args:expr) => {{
        let args = $args;
        (
            $crate::client::service::rollout_flags::UpdateFlags {
                prefix: "update",
                parallelism: &args.update_parallelism,
                delay: &args.update_delay,
                failure_action: &args.update_failure_action,
                monitor: &args.update_monitor,
                max_failure_ratio: &args.update_max_failure_ratio,
                order: &args.update_order,
            },
            $crate::client::service::rollout_flags::UpdateFlags {
                prefix: "rollback",
                parallelism: &args.rollback_parallelism,
                delay: &args.rollback_delay,
                failure_action: &args.rollback_failure_action,
                monitor: &args.rollback_monitor,
                max_failure_ratio: &args.rollback_max_failure_ratio,
                order: &args.rollback_order,
            },
        )
    }};
}
pub(super) use update_and_rollback_flags;

/// The update (or rollback) flags of one kind, as given (`service create` and `update`).
pub(super) struct UpdateFlags<'a> {
    pub(super) prefix: &'static str,
    pub(super) parallelism: &'a Option<String>,
    pub(super) delay: &'a Option<String>,
    pub(super) failure_action: &'a Option<String>,
    pub(super) monitor: &'a Option<String>,
    pub(super) max_failure_ratio: &'a Option<String>,
    pub(super) order: &'a Option<String>,
}

impl UpdateFlags<'_> {
    pub(super) fn any(&self) -> bool {
        [
            self.parallelism,
            self.delay,
            self.failure_action,
            self.monitor,
            self.max_failure_ratio,
            self.order,
        ]
        .iter()
        .any(|v| v.is_some())
    }

    /// The config as given, none when no flag of this kind is: what is left unset (or
    /// none at all) the manager fills in with Swarm's defaults
    /// (`manager::controlapi::service::with_defaults`).
    pub(super) fn config(&self) -> anyhow::Result<Option<UpdateConfig>> {
        if !self.any() {
            return Ok(None);
        }
        self.apply(UpdateConfig::default()).map(Some)
    }

    /// `base` with what the flags change.
    pub(super) fn apply(&self, base: UpdateConfig) -> anyhow::Result<UpdateConfig> {
        let p = self.prefix;
        let flag = |name: &str| format!("--{p}-{name}");
        let mut c = base;
        if let Some(v) = self.parallelism {
            c.parallelism = Some(parse::count(&flag("parallelism"), v)?);
        }
        if let Some(v) = self.delay {
            c.delay_ms = duration::parse_flag_ms(&flag("delay"), v)?;
        }
        if let Some(v) = self.failure_action {
            let f = flag("failure-action");
            c.failure_action = match (v.trim().to_ascii_lowercase().as_str(), p) {
                ("pause", _) => FailureAction::Pause,
                ("continue", _) => FailureAction::Continue,
                ("rollback", "update") => FailureAction::Rollback,
                (_, "update") => {
                    bail!("invalid value \"{v}\" for {f}: use pause, continue or rollback")
                }
                _ => bail!("invalid value \"{v}\" for {f}: use pause or continue"),
            } as i32;
        }
        if let Some(v) = self.monitor {
            c.monitor_ms = Some(duration::parse_flag_ms(&flag("monitor"), v)?);
        }
        if let Some(v) = self.max_failure_ratio {
            c.max_failure_ratio = parse::ratio(&flag("max-failure-ratio"), v)?;
        }
        if let Some(v) = self.order {
            c.order = match v.trim().to_ascii_lowercase().as_str() {
                "stop-first" => UpdateOrder::StopFirst,
                "start-first" => UpdateOrder::StartFirst,
                _ => bail!(
                    "invalid value \"{v}\" for {}: use stop-first or start-first",
                    flag("order")
                ),
            } as i32;
        }
        Ok(c)
    }
}
