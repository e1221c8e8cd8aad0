//! The container options of `service create` and `service update` (`--ulimit`,
//! `--cap-add/--cap-drop`, `--sysctl`, `--dns*`, `--host`, `--group`, `--oom-score-adj`,
//! `--env-file`) and their update forms (`--X-add`, `--X-rm`), checked by the rules of
//! [`proto::container_options`], which the control API and the nodes apply too.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context as _};
use proto::container_options as rules;
use proto::{ContainerSpec, DnsConfig, Ulimit};

/// `--ulimit` values; a name given twice keeps its last limits.
pub fn ulimits(flag: &str, values: &[String]) -> anyhow::Result<Vec<Ulimit>> {
    let mut out: Vec<Ulimit> = Vec::new();
    for v in values {
        let u = rules::parse_ulimit(flag, v).map_err(|e| anyhow!(e))?;
        out.retain(|old| old.name != u.name);
        out.push(u);
    }
    Ok(out)
}

/// Capability names in their stored form (`CAP_NET_ADMIN`, `ALL`), each once.
pub fn capabilities(flag: &str, values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values {
        let c = rules::normalize_capability(flag, v).map_err(|e| anyhow!(e))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// `--cap-add` and `--cap-drop` of `service create`: one named in both is added (Docker's
/// rule).
pub fn create_capabilities(
    add: &[String],
    drop: &[String],
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let add = capabilities("--cap-add", add)?;
    let mut drop = capabilities("--cap-drop", drop)?;
    drop.retain(|c| !add.contains(c));
    Ok((add, drop))
}

/// `--sysctl NAME=VALUE` values.
pub fn sysctls(flag: &str, values: &[String]) -> anyhow::Result<HashMap<String, String>> {
    values
        .iter()
        .map(|v| rules::parse_sysctl(flag, v).map_err(|e| anyhow!(e)))
        .collect()
}

/// `--host NAME:IP` values, as stored (`IP NAME`).
pub fn hosts(flag: &str, values: &[String]) -> anyhow::Result<Vec<String>> {
    values
        .iter()
        .map(|v| rules::parse_host(flag, v).map_err(|e| anyhow!(e)))
        .collect()
}

/// `--group` values.
pub fn groups(flag: &str, values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values {
        let g = rules::check_group(flag, v).map_err(|e| anyhow!(e))?;
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

/// `--oom-score-adj`.
pub fn oom_score_adj(value: &str) -> anyhow::Result<i64> {
    let n: i64 = value.trim().parse().map_err(|_| {
        anyhow!("invalid value \"{value}\" for --oom-score-adj: use a number from -1000 to 1000")
    })?;
    rules::check_oom_score_adj(n).map_err(|e| anyhow!(e))?;
    Ok(n)
}

/// `--dns`, `--dns-search` and `--dns-option` of `service create`; none when none is given.
pub fn dns_config(
    servers: &[String],
    search: &[String],
    options: &[String],
) -> anyhow::Result<Option<DnsConfig>> {
    let mut d = DnsConfig::default();
    for s in servers {
        push_once(&mut d.nameservers, rules::check_dns_server("--dns", s));
    }
    for s in search {
        push_once(&mut d.search, rules::check_dns_search("--dns-search", s));
    }
    for o in options {
        push_once(&mut d.options, rules::check_dns_option("--dns-option", o));
    }
    rules::check_dns_config(&d).map_err(|e| anyhow!(e))?;
    Ok((d != DnsConfig::default()).then_some(d))
}

fn push_once(list: &mut Vec<String>, value: Result<String, String>) {
    // A bad value is kept, so that the check of the whole config names it.
    let v = value.unwrap_or_else(|bad| bad);
    if !list.contains(&v) {
        list.push(v);
    }
}

/// The variables of `--env-file` files, in order: `KEY=VALUE` lines, `KEY` alone for this
/// shell's value (skipped when unset, as Docker does), blank lines and `#` comments left out.
pub fn env_files(
    flag: &str,
    paths: &[String],
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<String>> {
    let mut env = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {flag} {path}: give a readable file"))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (line.trim_end(), lookup(line.trim_end())),
            };
            if key.is_empty() || key.chars().any(char::is_whitespace) {
                bail!(
                    "invalid line {} of {flag} {path}: \"{line}\" is not KEY=VALUE (variable names have no spaces)",
                    n + 1
                );
            }
            if let Some(value) = value {
                env.push(format!("{key}={value}"));
            }
        }
    }
    Ok(env)
}

/// Sets `KEY=VALUE` entries on `env`, each replacing an entry of the same name.
pub fn set_env(env: &mut Vec<String>, entries: impl IntoIterator<Item = String>) {
    for e in entries {
        let key = env_key(&e).to_string();
        env.retain(|old| env_key(old) != key);
        env.push(e);
    }
}

/// The name of a `KEY=VALUE` entry.
pub fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Refuses what [`proto::container_options::check`] refuses, as the CLI's one sentence.
pub fn check(c: &ContainerSpec, networks: &[proto::NetworkAttachmentConfig]) -> anyhow::Result<()> {
    rules::check(c, networks).map_err(|e| anyhow!(e))
}

/// Refuses what `--network host` cannot go with (see
/// [`proto::container_options::check_host_network`]).
pub fn check_host_network(
    networks: &[proto::NetworkAttachmentConfig],
    endpoint: &proto::EndpointSpec,
) -> anyhow::Result<()> {
    rules::check_host_network(networks, Some(endpoint)).map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_capability_both_added_and_dropped_is_added() {
        let (add, drop) = create_capabilities(
            &s(&["net_admin", "CAP_NET_ADMIN"]),
            &s(&["NET_ADMIN", "chown"]),
        )
        .unwrap();
        assert_eq!(add, ["CAP_NET_ADMIN"]);
        assert_eq!(drop, ["CAP_CHOWN"]);
        let e = create_capabilities(&s(&["fly"]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cap-add"), "{e}");
    }

    #[test]
    fn env_files_read_pairs_skip_comments_and_take_bare_names_from_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, "# comment\nA=1\n\nB = x\nHOME_X\nUNSET\n").unwrap();
        let lookup = |k: &str| (k == "HOME_X").then(|| "here".to_string());
        let env = env_files("--env-file", &[path.display().to_string()], &lookup);
        let e = env.unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("--env-file"), "{e}");
        std::fs::write(&path, "# comment\nA=1\n\nB=x y\nHOME_X\nUNSET\n").unwrap();
        let env = env_files("--env-file", &[path.display().to_string()], &lookup).unwrap();
        assert_eq!(env, ["A=1", "B=x y", "HOME_X=here"]);
        let e = env_files("--env-file", &["/nonexistent/env".into()], &lookup)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read --env-file /nonexistent/env"), "{e}");
    }

    #[test]
    fn dns_flags_make_one_config_and_bad_ones_name_their_flag() {
        assert_eq!(dns_config(&[], &[], &[]).unwrap(), None);
        let d = dns_config(
            &s(&["1.1.1.1", "1.1.1.1"]),
            &s(&["a.example"]),
            &s(&["ndots:2"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.nameservers, ["1.1.1.1"]);
        let e = dns_config(&s(&["one"]), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("--dns"), "{e}");
        let e = dns_config(&[], &s(&["a b"]), &[]).unwrap_err().to_string();
        assert!(e.contains("--dns-search"), "{e}");
    }

    #[test]
    fn oom_score_adj_is_a_number_in_range() {
        assert_eq!(oom_score_adj("-500").unwrap(), -500);
        for bad in ["1001", "x", "-1001"] {
            let e = oom_score_adj(bad).unwrap_err().to_string();
            assert!(e.contains("-1000 to 1000"), "{e}");
        }
    }
}
