//! The update forms of the container's flags: what `service update` changes in the
//! service's [`ContainerSpec`] (command, environment, user, mounts, health check, stop
//! settings and the container options), each from the value the service has now.
//!
//! Removals come before additions, as Docker applies them, so `--X-rm A --X-add A` replaces.

use anyhow::{anyhow, bail};
use proto::container_options as rules;
use proto::{ContainerSpec, HealthConfig};

use super::UpdateArgs;
use crate::client::duration;
use crate::client::service::{container_flags, parse};

fn ms(flag: &str, value: &Option<String>) -> anyhow::Result<Option<u64>> {
    value
        .as_deref()
        .map(|v| duration::parse_flag_ms(flag, v))
        .transpose()
}

/// Applies the container flags of `a` to `c`; `lookup_env` reads this shell's environment.
pub fn apply(
    c: &mut ContainerSpec,
    a: &UpdateArgs,
    lookup_env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    process(c, a)?;
    environment(c, a, lookup_env)?;
    mounts(c, a)?;
    healthcheck(c, a)?;
    options(c, a)?;
    Ok(())
}

/// `--entrypoint`, `--user`, `--workdir`, `--hostname`, `--read-only`, `--stop-*`.
fn process(c: &mut ContainerSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    if let Some(e) = &a.entrypoint {
        // "" gives the image's entrypoint back (and its cmd, unless --args are set).
        c.command = parse::shell_words("--entrypoint", e)?;
    }
    if let Some(u) = &a.user {
        c.user = u.trim().to_string();
    }
    if let Some(w) = &a.workdir {
        let w = w.trim();
        if !w.is_empty() && !w.starts_with('/') {
            bail!("invalid directory \"{w}\" for --workdir: use an absolute path, or \"\" for the image's");
        }
        c.dir = w.to_string();
    }
    if let Some(h) = &a.hostname {
        if h.chars().any(char::is_whitespace) {
            bail!("invalid hostname \"{h}\" for --hostname: a hostname has no spaces");
        }
        c.hostname = h.clone();
    }
    if let Some(r) = a.read_only {
        c.read_only = r;
    }
    if let Some(s) = &a.stop_signal {
        c.stop_signal = if s.trim().is_empty() {
            String::new()
        } else {
            parse::signal(s)?
        };
    }
    if let Some(g) = ms("--stop-grace-period", &a.stop_grace_period)? {
        c.stop_grace_period_ms = Some(g);
    }
    Ok(())
}

/// `--env-rm`, `--env-file`, `--env-add`, `--container-label-rm/-add`.
fn environment(
    c: &mut ContainerSpec,
    a: &UpdateArgs,
    lookup_env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for key in &a.env_rm {
        let key = key.trim();
        c.env.retain(|e| container_flags::env_key(e) != key);
    }
    let from_files = container_flags::env_files("--env-file", &a.env_file, lookup_env)?;
    container_flags::set_env(&mut c.env, from_files);
    for e in &a.env_add {
        let e = parse::env(e, lookup_env)?;
        container_flags::set_env(&mut c.env, [e]);
    }
    for l in &a.container_label_rm {
        c.labels.remove(l.trim());
    }
    for l in &a.container_label_add {
        let (k, v) = parse::label("--container-label-add", l)?;
        c.labels.insert(k, v);
    }
    Ok(())
}

/// `--mount-rm TARGET`, `--mount-add MOUNT` (replacing a mount at the same target).
fn mounts(c: &mut ContainerSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    for target in &a.mount_rm {
        let target = target.trim().trim_end_matches('/');
        let before = c.mounts.len();
        c.mounts
            .retain(|m| m.target.trim_end_matches('/') != target);
        if c.mounts.len() == before {
            bail!("the service has no mount at \"{target}\" for --mount-rm: give the target path of one of its mounts");
        }
    }
    for m in &a.mount_add {
        let m = parse::mount("--mount-add", m)?;
        c.mounts.retain(|old| old.target != m.target);
        c.mounts.push(m);
    }
    Ok(())
}

/// `--no-healthcheck` and `--health-*`, changing only what they name.
fn healthcheck(c: &mut ContainerSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    let any = a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_timeout.is_some()
        || a.health_retries.is_some()
        || a.health_start_period.is_some()
        || a.health_start_interval.is_some();
    if a.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with the --health-* flags: use one or the other");
        }
        c.healthcheck = Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        });
        return Ok(());
    }
    if !any {
        return Ok(());
    }
    let h = c.healthcheck.get_or_insert_with(Default::default);
    if h.test.first().map(String::as_str) == Some("NONE") {
        // Checks were off; new settings turn them on again (the image's, or --health-cmd).
        h.test.clear();
    }
    if let Some(cmd) = &a.health_cmd {
        if cmd.trim().is_empty() {
            h.test.clear();
        } else {
            h.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
    }
    if let Some(v) = ms("--health-interval", &a.health_interval)? {
        h.interval_ms = v;
    }
    if let Some(v) = ms("--health-timeout", &a.health_timeout)? {
        h.timeout_ms = v;
    }
    if let Some(v) = ms("--health-start-period", &a.health_start_period)? {
        h.start_period_ms = v;
    }
    if let Some(v) = ms("--health-start-interval", &a.health_start_interval)? {
        h.start_interval_ms = v;
    }
    if let Some(r) = &a.health_retries {
        h.retries = parse::count_u32("--health-retries", r)?;
    }
    if c.healthcheck == Some(HealthConfig::default()) {
        c.healthcheck = None;
    }
    Ok(())
}

/// The container options: `--ulimit-*`, `--cap-*`, `--sysctl-*`, `--init`, `--tty`,
/// `--dns*-add/-rm`, `--host-*`, `--group-*`, `--oom-score-adj`.
fn options(c: &mut ContainerSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    for name in &a.ulimit_rm {
        let name = name.trim().to_ascii_lowercase();
        c.ulimits.retain(|u| u.name != name);
    }
    for u in container_flags::ulimits("--ulimit-add", &a.ulimit_add)? {
        c.ulimits.retain(|old| old.name != u.name);
        c.ulimits.push(u);
    }
    // Adding takes a capability off the drop list and dropping off the add list, so the
    // last word about one is what counts; a default one taken off the drop list (or another
    // taken off the add list) needs no entry of its own (Docker's rule).
    let is_default = |cap: &str| rules::DEFAULT_CAPABILITIES.contains(&cap);
    for cap in container_flags::capabilities("--cap-drop", &a.cap_drop)? {
        let was_added = c.cap_add.contains(&cap);
        c.cap_add.retain(|x| *x != cap);
        if (!was_added || is_default(&cap)) && !c.cap_drop.contains(&cap) {
            c.cap_drop.push(cap);
        }
    }
    for cap in container_flags::capabilities("--cap-add", &a.cap_add)? {
        let was_dropped = c.cap_drop.contains(&cap);
        c.cap_drop.retain(|x| *x != cap);
        if (!was_dropped || !is_default(&cap)) && !c.cap_add.contains(&cap) {
            c.cap_add.push(cap);
        }
    }
    for name in &a.sysctl_rm {
        c.sysctls.remove(name.trim());
    }
    c.sysctls
        .extend(container_flags::sysctls("--sysctl-add", &a.sysctl_add)?);
    if let Some(init) = a.init {
        c.init = init;
    }
    if let Some(tty) = a.tty {
        c.tty = tty;
    }
    dns(c, a)?;
    for removal in &a.host_rm {
        let before = c.hosts.len();
        c.hosts.retain(|line| !rules::host_matches(line, removal));
        if c.hosts.len() == before {
            bail!("the service has no host entry \"{removal}\" for --host-rm: give NAME or NAME:IP of one of its --host entries");
        }
    }
    for line in container_flags::hosts("--host-add", &a.host_add)? {
        if !c.hosts.contains(&line) {
            c.hosts.push(line);
        }
    }
    for g in &a.group_rm {
        c.groups.retain(|x| x != g.trim());
    }
    for g in container_flags::groups("--group-add", &a.group_add)? {
        if !c.groups.contains(&g) {
            c.groups.push(g);
        }
    }
    if let Some(v) = &a.oom_score_adj {
        c.oom_score_adj = container_flags::oom_score_adj(v)?;
    }
    Ok(())
}

/// One part of a DNS config with its removals, additions, flag and check.
type DnsPart<'a> = (
    &'a mut Vec<String>,
    &'a [String],
    &'a [String],
    &'static str,
    fn(&str, &str) -> Result<String, String>,
);

/// `--dns-rm/-add`, `--dns-search-rm/-add`, `--dns-option-rm/-add`.
fn dns(c: &mut ContainerSpec, a: &UpdateArgs) -> anyhow::Result<()> {
    let d = c.dns_config.get_or_insert_with(Default::default);
    let parts: [DnsPart<'_>; 3] = [
        (
            &mut d.nameservers,
            &a.dns_rm,
            &a.dns_add,
            "--dns-add",
            rules::check_dns_server,
        ),
        (
            &mut d.search,
            &a.dns_search_rm,
            &a.dns_search_add,
            "--dns-search-add",
            rules::check_dns_search,
        ),
        (
            &mut d.options,
            &a.dns_option_rm,
            &a.dns_option_add,
            "--dns-option-add",
            rules::check_dns_option,
        ),
    ];
    for (list, rm, add, flag, check) in parts {
        for r in rm {
            list.retain(|x| x != r.trim());
        }
        for v in add {
            let v = check(flag, v).map_err(|e| anyhow!(e))?;
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
    if c.dns_config == Some(Default::default()) {
        c.dns_config = None;
    }
    Ok(())
}
