//! The update forms of the task's and the endpoint's flags: restart policy, placement
//! preferences and limits, networks (`--network-add/-rm`, by name or ID) and endpoint mode.

use anyhow::bail;
use proto::service_spec::Mode;
use proto::{
    EndpointSpec, Network, PlacementPreference, ResolutionMode, RestartCondition, ServiceSpec,
    TaskSpec,
};

use super::UpdateArgs;
use crate::client::duration;
use crate::client::service::parse;

fn is_job(spec: &ServiceSpec) -> bool {
    matches!(spec.mode, Some(Mode::ReplicatedJob(_) | Mode::GlobalJob(_)))
}

/// `--restart-*`, changing only what they name.
pub fn restart(t: &mut TaskSpec, a: &UpdateArgs, job: bool) -> anyhow::Result<()> {
    let any = a.restart_condition.is_some()
        || a.restart_delay.is_some()
        || a.restart_max_attempts.is_some()
        || a.restart_window.is_some();
    if !any {
        return Ok(());
    }
    let r = t.restart.get_or_insert_with(Default::default);
    if let Some(v) = &a.restart_condition {
        let c = parse::restart_condition(v)?;
        if job && c == RestartCondition::Any {
            bail!("--restart-condition any cannot be used with jobs: a completed task would run again; use on-failure or none");
        }
        r.condition = c as i32;
    }
    if let Some(v) = &a.restart_delay {
        r.delay_ms = Some(duration::parse_flag_ms("--restart-delay", v)?);
    }
    if let Some(v) = &a.restart_max_attempts {
        r.max_attempts = parse::count("--restart-max-attempts", v)?;
    }
    if let Some(v) = &a.restart_window {
        r.window_ms = duration::parse_flag_ms("--restart-window", v)?;
    }
    Ok(())
}

/// `--placement-pref-rm/-add` and `--replicas-max-per-node`.
pub fn placement(t: &mut TaskSpec, a: &UpdateArgs, spec_mode: &Option<Mode>) -> anyhow::Result<()> {
    let p = t.placement.get_or_insert_with(Default::default);
    for v in &a.placement_pref_rm {
        let spread = parse::placement_pref(v)?;
        let before = p.preferences.len();
        p.preferences.retain(|x| x.spread != spread);
        if p.preferences.len() == before {
            bail!("the service has no placement preference \"{v}\" for --placement-pref-rm: see `skiff service inspect --pretty`");
        }
    }
    for v in &a.placement_pref_add {
        let spread = parse::placement_pref(v)?;
        if !p.preferences.iter().any(|x| x.spread == spread) {
            p.preferences.push(PlacementPreference { spread });
        }
    }
    if let Some(v) = &a.replicas_max_per_node {
        let n = parse::count("--replicas-max-per-node", v)?;
        if matches!(spec_mode, Some(Mode::Global(_) | Mode::GlobalJob(_))) {
            bail!(
                "--replicas-max-per-node can only be used with replicated or replicated-job mode"
            );
        }
        p.max_replicas = n;
    }
    if t.placement == Some(Default::default()) {
        t.placement = None;
    }
    Ok(())
}

/// `--max-concurrent` (replicated jobs).
pub fn max_concurrent(spec: &mut ServiceSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    let Some(v) = &a.max_concurrent else {
        return Ok(());
    };
    let n = parse::positive("--max-concurrent", v)?;
    match spec.mode.as_mut() {
        Some(Mode::ReplicatedJob(j)) => j.max_concurrent = n,
        _ => bail!("--max-concurrent can only be used with replicated-job mode"),
    }
    Ok(())
}

/// Whether `target` (an ID, as the control API stores it, or `host`) is the network the
/// user named (`name_or_id`: a name, an ID or an ID prefix of `known` networks).
fn same_network(target: &str, name_or_id: &str, known: &[Network]) -> bool {
    if target == name_or_id {
        return true;
    }
    known.iter().any(|n| {
        let id = n.meta.as_ref().map_or("", |m| m.id.as_str());
        let name = n.spec.as_ref().map_or("", |s| s.name.as_str());
        id == target
            && (name == name_or_id || (name_or_id.len() >= 3 && id.starts_with(name_or_id)))
    })
}

/// `--network-rm` then `--network-add`; `known` are the cluster's networks (to match names
/// against the IDs the spec holds).
pub fn networks(t: &mut TaskSpec, a: &UpdateArgs, known: &[Network]) -> anyhow::Result<()> {
    for v in &a.network_rm {
        let v = v.trim();
        let before = t.networks.len();
        t.networks.retain(|n| !same_network(&n.target, v, known));
        if t.networks.len() == before {
            bail!("the service is not on network \"{v}\" for --network-rm: see `skiff service inspect --pretty`");
        }
    }
    for v in &a.network_add {
        let n = parse::network(v)?;
        if t.networks
            .iter()
            .any(|old| same_network(&old.target, &n.target, known))
        {
            bail!(
                "the service is already on network \"{}\" for --network-add: remove it first with --network-rm to change its aliases",
                n.target
            );
        }
        t.networks.push(n);
    }
    Ok(())
}

/// `--endpoint-mode`.
pub fn endpoint_mode(e: &mut EndpointSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    if let Some(m) = &a.endpoint_mode {
        e.mode = match m.trim().to_ascii_lowercase().as_str() {
            "vip" => ResolutionMode::Vip,
            "dnsrr" => ResolutionMode::Dnsrr,
            _ => bail!("invalid value \"{m}\" for --endpoint-mode: use vip or dnsrr"),
        } as i32;
    }
    Ok(())
}

/// Applies the task and endpoint flags of `a` to `spec`.
pub fn apply(spec: &mut ServiceSpec, a: &UpdateArgs, known: &[Network]) -> anyhow::Result<()> {
    let job = is_job(spec);
    max_concurrent(spec, a)?;
    let mode = spec.mode;
    let t = spec.task_template.get_or_insert_with(Default::default);
    restart(t, a, job)?;
    placement(t, a, &mode)?;
    networks(t, a, known)?;
    endpoint_mode(spec.endpoint.get_or_insert_with(Default::default), a)
}
