//! Parsers for the values of `service create` flags, each failing with one sentence that
//! names the flag, the value and the form to use.

use anyhow::{anyhow, bail};
use proto::{
    ConfigReference, Mount, MountType, NetworkAttachmentConfig, PortConfig, PortProtocol,
    PublishMode, RestartCondition, SecretReference,
};

/// A whole number, 0 or more (`--replicas`, `--restart-max-attempts`, ...).
pub fn count(flag: &str, value: &str) -> anyhow::Result<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = v.parse::<u64>() {
            return Ok(n);
        }
        bail!("invalid value \"{value}\" for {flag}: the number is too large");
    }
    bail!("invalid value \"{value}\" for {flag}: use a whole number, 0 or more")
}

/// A whole number, 1 or more.
pub fn positive(flag: &str, value: &str) -> anyhow::Result<u64> {
    match count(flag, value) {
        Ok(0) | Err(_) => {
            bail!("invalid value \"{value}\" for {flag}: use a whole number, 1 or more")
        }
        Ok(n) => Ok(n),
    }
}

/// A whole number that fits 32 bits (`--health-retries`).
pub fn count_u32(flag: &str, value: &str) -> anyhow::Result<u32> {
    let n = count(flag, value)?;
    u32::try_from(n)
        .map_err(|_| anyhow!("invalid value \"{value}\" for {flag}: the number is too large"))
}

/// A process count limit (`--limit-pids`): 0 (no limit) or more.
pub fn pids(flag: &str, value: &str) -> anyhow::Result<i64> {
    let n = count(flag, value)?;
    i64::try_from(n)
        .map_err(|_| anyhow!("invalid value \"{value}\" for {flag}: the number is too large"))
}

/// A ratio from 0 to 1 (`--update-max-failure-ratio`).
pub fn ratio(flag: &str, value: &str) -> anyhow::Result<f32> {
    let v = value.trim();
    let plain = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match v.parse::<f32>() {
        Ok(r) if plain && (0.0..=1.0).contains(&r) => Ok(r),
        _ => bail!("invalid value \"{value}\" for {flag}: use a fraction from 0 to 1, e.g. 0.2"),
    }
}

/// A memory size as Docker takes it: a number with an optional binary unit, `b`, `k`, `m`,
/// `g`, `t` or `p`, optionally followed by `b` or `ib` (`512m`, `1.5G`, `256MiB`, `1024`).
pub fn memory(flag: &str, value: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow!(
            "invalid memory size \"{value}\" for {flag}: use a number with an optional unit b, k, m, g or t, e.g. 512m or 1.5g"
        )
    };
    let v = value.trim();
    let num_len = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(bad());
    }
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let mut chars = unit.as_str();
    let mut multiplier: f64 = 1.0;
    if let Some(first) = chars.chars().next() {
        let power = match first {
            'k' => 1,
            'm' => 2,
            'g' => 3,
            't' => 4,
            'p' => 5,
            _ => 0,
        };
        if power > 0 {
            multiplier = 1024f64.powi(power);
            chars = &chars[1..];
            chars = chars.strip_prefix('i').unwrap_or(chars);
        }
    }
    if !(chars.is_empty() || chars == "b") {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bytes = (n * multiplier).trunc();
    if bytes >= i64::MAX as f64 {
        bail!("invalid memory size \"{value}\" for {flag}: the size is too large");
    }
    Ok(bytes as i64)
}

/// A number of CPUs as a decimal (`0.5`, `2`), in billionths of a CPU.
pub fn cpus(flag: &str, value: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow!(
            "invalid CPU count \"{value}\" for {flag}: use a decimal number of CPUs, e.g. 0.5 or 2"
        )
    };
    let v = value.trim();
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty())
        || !digits(whole)
        || !digits(frac)
        || (v.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    if frac.len() > 9 {
        bail!("invalid CPU count \"{value}\" for {flag}: use at most 9 decimal places");
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| {
            anyhow!("invalid CPU count \"{value}\" for {flag}: the number is too large")
        })?
    };
    let frac_nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(|| anyhow!("invalid CPU count \"{value}\" for {flag}: the number is too large"))
}

/// An `--env` value: `KEY=VALUE`, or `KEY` alone to pass this shell's value of `KEY`.
pub fn env(value: &str, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let (key, val) = match value.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (value, None),
    };
    if key.is_empty() {
        bail!("invalid environment variable \"{value}\" for --env: the name must not be empty (use KEY=VALUE)");
    }
    if key.chars().any(char::is_whitespace) {
        bail!("invalid environment variable \"{value}\" for --env: the name \"{key}\" contains spaces");
    }
    match val {
        Some(v) => Ok(format!("{key}={v}")),
        None => match lookup(key) {
            Some(v) => Ok(format!("{key}={v}")),
            None => bail!(
                "environment variable \"{key}\" for --env is not set in this shell: give its value as {key}=VALUE"
            ),
        },
    }
}

/// A `--label` or `--container-label` value: `KEY=VALUE` or `KEY` (empty value).
pub fn label(flag: &str, value: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = value.split_once('=').unwrap_or((value, ""));
    let k = k.trim();
    if k.is_empty() {
        bail!("invalid label \"{value}\" for {flag}: the key must not be empty (use KEY=VALUE)");
    }
    Ok((k.to_string(), v.to_string()))
}

/// A `--constraint` value: `ATTRIBUTE==VALUE` or `ATTRIBUTE!=VALUE`, checked by the
/// scheduler's own parser (so the CLI accepts exactly what placement understands) and
/// returned in its canonical form (no spaces around the operator).
pub fn constraint(value: &str) -> anyhow::Result<String> {
    manager::scheduler::constraint::parse(value)
        .map(|c| c.to_string())
        .map_err(|e| anyhow!("{e}"))
}

/// A `--placement-pref` value: `spread=node.labels.KEY`; returns what the spec stores, the
/// attribute to spread over (`node.labels.KEY`).
pub fn placement_pref(value: &str) -> anyhow::Result<String> {
    manager::scheduler::constraint::parse_preference(value)
        .map(|p| p.attribute.to_string())
        .map_err(|e| anyhow!("{e}"))
}

/// `--restart-condition`.
pub fn restart_condition(value: &str) -> anyhow::Result<RestartCondition> {
    match value.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(RestartCondition::None),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "any" => Ok(RestartCondition::Any),
        _ => {
            bail!("invalid value \"{value}\" for --restart-condition: use none, on-failure or any")
        }
    }
}

/// A stop signal: a name with or without `SIG` (`TERM`, `SIGINT`, `SIGRTMIN+3`) or a number
/// from 1 to 64. Names are returned upper-case with `SIG`.
pub fn signal(value: &str) -> anyhow::Result<String> {
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS", "RTMIN",
        "RTMAX",
    ];
    let v = value.trim();
    if let Ok(n) = v.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n.to_string());
        }
    } else {
        let upper = v.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let base = name
            .split_once(['+', '-'])
            .filter(|(b, n)| matches!(*b, "RTMIN" | "RTMAX") && n.parse::<u8>().is_ok())
            .map(|(b, _)| b)
            .unwrap_or(name);
        if NAMES.contains(&base) {
            return Ok(format!("SIG{name}"));
        }
    }
    bail!("invalid signal \"{value}\" for --stop-signal: use a signal name such as SIGTERM or SIGINT, or a number")
}

/// Splits a command line as a POSIX shell would split words: spaces separate, single and
/// double quotes group, a backslash escapes (`--entrypoint "sh -c 'echo hi'"`).
pub fn shell_words(flag: &str, value: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => bail!("invalid value for {flag}: a single quote is not closed"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => bail!("invalid value for {flag}: a double quote is not closed"),
                        },
                        Some(c) => cur.push(c),
                        None => bail!("invalid value for {flag}: a double quote is not closed"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => bail!("invalid value for {flag}: it ends with a lone backslash"),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

// ---------------------------------------------------------------------------------------
// --publish
// ---------------------------------------------------------------------------------------

const PUBLISH_FORMS: &str =
    "use PUBLISHED:TARGET[/PROTOCOL] (e.g. 8080:80) or published=8080,target=80[,protocol=tcp|udp][,mode=ingress|host]";

const PROTOCOLS: &str = "the protocol is tcp or udp (skiff does not publish sctp)";

fn protocol(s: &str) -> Option<PortProtocol> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(PortProtocol::Tcp),
        "udp" => Some(PortProtocol::Udp),
        _ => None,
    }
}

/// A port or a range of ports (`80`, `8000-8010`), each from 1 to 65535.
fn port_range(s: &str) -> Option<(u32, u32)> {
    let one = |p: &str| match p.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) && p.trim().bytes().all(|b| b.is_ascii_digit()) => {
            Some(n)
        }
        _ => None,
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            (a <= b).then_some((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// A `-p/--publish` value, short (`8080:80`, `80`, `8080:80/udp`, `8000-8001:80-81`) or long
/// (`published=8080,target=80,protocol=udp,mode=host`).
pub fn publish(value: &str) -> anyhow::Result<Vec<PortConfig>> {
    let bad = |why: &str| anyhow!("invalid port \"{value}\" for --publish: {why}");
    if value.contains('=') {
        return publish_long(value).map(|p| vec![p]);
    }
    let (ports, proto) = match value.split_once('/') {
        Some((p, proto_s)) => (p, protocol(proto_s).ok_or_else(|| bad(PROTOCOLS))?),
        None => (value, PortProtocol::Tcp),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (published, target) =
        match parts.as_slice() {
            [target] => (None, *target),
            [published, target] => (Some(*published), *target),
            [_, _, _] => return Err(bad(
                "services publish on every address; drop the IP address and use PUBLISHED:TARGET",
            )),
            _ => return Err(bad(PUBLISH_FORMS)),
        };
    let target = port_range(target).ok_or_else(|| bad(PUBLISH_FORMS))?;
    let published = match published {
        None => None,
        Some(p) => Some(port_range(p).ok_or_else(|| bad(PUBLISH_FORMS))?),
    };
    let count = target.1 - target.0;
    if let Some(p) = published {
        if p.1 - p.0 != count {
            return Err(bad(
                "the published and target ranges must have the same length",
            ));
        }
    }
    Ok((0..=count)
        .map(|i| PortConfig {
            name: String::new(),
            protocol: proto as i32,
            target_port: target.0 + i,
            published_port: published.map(|p| p.0 + i).unwrap_or(0),
            publish_mode: PublishMode::Ingress as i32,
        })
        .collect())
}

fn publish_long(value: &str) -> anyhow::Result<PortConfig> {
    let bad = |why: String| anyhow!("invalid port \"{value}\" for --publish: {why}");
    let mut port = PortConfig::default();
    let mut target = None;
    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad(format!("\"{field}\" is not KEY=VALUE; {PUBLISH_FORMS}")))?;
        let v = v.trim();
        let one_port = || match port_range(v) {
            Some((a, b)) if a == b => Ok(a),
            _ => Err(bad(format!("\"{v}\" is not a port from 1 to 65535"))),
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "target" => target = Some(one_port()?),
            "published" => port.published_port = one_port()?,
            "protocol" => port.protocol = protocol(v).ok_or_else(|| bad(PROTOCOLS.into()))? as i32,
            "mode" => {
                port.publish_mode = match v.to_ascii_lowercase().as_str() {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    _ => return Err(bad("the mode is ingress or host".into())),
                } as i32
            }
            other => {
                return Err(bad(format!(
                    "unknown key \"{other}\"; the keys are published, target, protocol and mode"
                )))
            }
        }
    }
    port.target_port =
        target.ok_or_else(|| bad("the target port is missing (target=PORT)".into()))?;
    Ok(port)
}

// ---------------------------------------------------------------------------------------
// --mount
// ---------------------------------------------------------------------------------------

fn boolean(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// A `--mount` value: `type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=64m]`
/// (`src`, `dst`/`destination` and `ro` are accepted too; the type defaults to volume).
pub fn mount(flag: &str, value: &str) -> anyhow::Result<Mount> {
    let bad = |why: String| anyhow!("invalid mount \"{value}\" for {flag}: {why}");
    let mut m = Mount::default();
    let mut kind = None;
    let mut source = None;
    let mut target = None;
    let mut tmpfs_size = None;
    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| -> anyhow::Result<String> {
            match v {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(bad(format!("\"{k}\" needs a value ({k}=...)"))),
            }
        };
        match k.as_str() {
            "type" => {
                kind = Some(match need(v)?.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "volume" => MountType::Volume,
                    "tmpfs" => MountType::Tmpfs,
                    other => {
                        return Err(bad(format!(
                            "unknown type \"{other}\"; use bind, volume or tmpfs"
                        )))
                    }
                })
            }
            "source" | "src" => source = Some(need(v)?),
            "target" | "destination" | "dst" => target = Some(need(v)?),
            "readonly" | "ro" => {
                m.read_only = boolean(v.unwrap_or("")).ok_or_else(|| {
                    bad(format!("\"{field}\": readonly is true or false"))
                })?
            }
            "tmpfs-size" => tmpfs_size = Some(need(v)?),
            other => {
                return Err(bad(format!(
                    "unknown key \"{other}\"; the keys are type, source, target, readonly and tmpfs-size"
                )))
            }
        }
    }
    let kind = kind.unwrap_or(MountType::Volume);
    m.r#type = kind as i32;
    let target =
        target.ok_or_else(|| bad("the target is missing (target=/path/in/container)".into()))?;
    if !target.starts_with('/') {
        return Err(bad(format!(
            "the target \"{target}\" must be an absolute path"
        )));
    }
    m.target = target;
    match (kind, source) {
        (MountType::Bind, None) => {
            return Err(bad(
                "a bind mount needs a source (source=/path/on/host)".into()
            ))
        }
        (MountType::Bind, Some(s)) if !s.starts_with('/') => {
            return Err(bad(format!(
                "the source \"{s}\" of a bind mount must be an absolute path on the host"
            )))
        }
        (MountType::Tmpfs, Some(_)) => return Err(bad("a tmpfs mount takes no source".into())),
        (_, s) => m.source = s.unwrap_or_default(),
    }
    if let Some(size) = tmpfs_size {
        if kind != MountType::Tmpfs {
            return Err(bad("tmpfs-size applies to tmpfs mounts only".into()));
        }
        m.tmpfs_size_bytes = memory("--mount tmpfs-size", &size).map_err(|_| {
            bad(format!(
                "invalid tmpfs-size \"{size}\"; use a size such as 64m"
            ))
        })? as u64;
    }
    Ok(m)
}

/// A `--network` value: `NAME`, or `name=NAME[,alias=ALIAS...]`.
pub fn network(value: &str) -> anyhow::Result<NetworkAttachmentConfig> {
    let bad = |why: &str| anyhow!("invalid network \"{value}\" for --network: {why}");
    let v = value.trim();
    if v.is_empty() {
        return Err(bad("give a network name or ID"));
    }
    if !v.contains('=') {
        return Ok(NetworkAttachmentConfig {
            target: v.to_string(),
            aliases: Vec::new(),
        });
    }
    let mut net = NetworkAttachmentConfig::default();
    for field in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, val) = field
            .split_once('=')
            .ok_or_else(|| bad("use NAME or name=NAME[,alias=ALIAS]"))?;
        let val = val.trim();
        if val.is_empty() {
            return Err(bad("a key has no value; use name=NAME[,alias=ALIAS]"));
        }
        match k.trim().to_ascii_lowercase().as_str() {
            "name" | "target" => net.target = val.to_string(),
            "alias" => net.aliases.push(val.to_string()),
            _ => return Err(bad("the keys are name and alias")),
        }
    }
    if net.target.is_empty() {
        return Err(bad("the network name is missing (name=NAME)"));
    }
    Ok(net)
}

/// A `--secret`/`--config` value, as Docker takes it: `NAME`, or
/// `source=NAME[,target=T][,uid=N][,gid=N][,mode=0444]` (the mode in octal).
struct FileReference {
    source: String,
    target: String,
    uid: u32,
    gid: u32,
    mode: u32,
}

fn file_reference(flag: &str, value: &str) -> anyhow::Result<FileReference> {
    let bad = |why: &str| {
        anyhow!("invalid value \"{value}\" for {flag}: {why} (use NAME or source=NAME,target=TARGET,uid=0,gid=0,mode=0444)")
    };
    let value = value.trim();
    let mut r = FileReference {
        source: String::new(),
        target: String::new(),
        uid: 0,
        gid: 0,
        mode: 0,
    };
    if !value.contains('=') {
        if value.is_empty() || value.contains(',') {
            return Err(bad("the name is missing"));
        }
        r.source = value.to_owned();
        return Ok(r);
    }
    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad(&format!("\"{field}\" is not KEY=VALUE")))?;
        let v = v.trim();
        let number = |what: &str, radix: u32| {
            u32::from_str_radix(v, radix)
                .map_err(|_| bad(&format!("{what} \"{v}\" is not a number")))
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => r.source = v.to_owned(),
            "target" => r.target = v.to_owned(),
            "uid" => r.uid = number("uid", 10)?,
            "gid" => r.gid = number("gid", 10)?,
            "mode" => {
                r.mode = number("mode", 8)?;
                if r.mode > 0o777 {
                    return Err(bad(&format!("mode \"{v}\" is not a file mode like 0444")));
                }
            }
            other => {
                return Err(bad(&format!(
                    "unknown key \"{other}\"; the keys are source, target, uid, gid and mode"
                )))
            }
        }
    }
    if r.source.is_empty() {
        return Err(bad("the source is missing (source=NAME)"));
    }
    Ok(r)
}

/// A `--secret` value (its target a file name under /run/secrets, or an absolute path).
pub fn secret(flag: &str, value: &str) -> anyhow::Result<SecretReference> {
    let r = file_reference(flag, value)?;
    Ok(SecretReference {
        secret_id: String::new(),
        secret_name: r.source,
        target: r.target,
        uid: r.uid,
        gid: r.gid,
        mode: proto::task_files::mode(r.mode),
    })
}

/// A `--config` value (its target an absolute path, `/NAME` when none is given).
pub fn config(flag: &str, value: &str) -> anyhow::Result<ConfigReference> {
    let r = file_reference(flag, value)?;
    Ok(ConfigReference {
        config_id: String::new(),
        config_name: r.source,
        target: r.target,
        uid: r.uid,
        gid: r.gid,
        mode: proto::task_files::mode(r.mode),
    })
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_config_references_follow_docker() {
        let s = secret("--secret", "db").unwrap();
        assert_eq!(
            (s.secret_name.as_str(), s.target.as_str(), s.mode),
            ("db", "", 0o444)
        );
        let s = secret(
            "--secret",
            "source=tls,target=key.pem,uid=1000,gid=1000,mode=0400",
        )
        .unwrap();
        assert_eq!(
            (
                s.secret_name.as_str(),
                s.target.as_str(),
                s.uid,
                s.gid,
                s.mode
            ),
            ("tls", "key.pem", 1000, 1000, 0o400)
        );
        let c = config("--config", "src=nginx,target=/etc/nginx/nginx.conf").unwrap();
        assert_eq!(
            (c.config_name.as_str(), c.target.as_str()),
            ("nginx", "/etc/nginx/nginx.conf")
        );
        for (bad, want) in [
            ("", "the name is missing"),
            ("target=/x", "the source is missing"),
            ("source=a,mode=999", "mode \"999\" is not a number"),
            ("source=a,mode=7777", "is not a file mode"),
            ("source=a,uid=x", "uid \"x\" is not a number"),
            ("source=a,size=1", "unknown key \"size\""),
        ] {
            let e = err(secret("--secret", bad));
            assert!(e.contains(want) && e.contains("--secret"), "{bad}: {e}");
        }
    }

    fn err<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn counts() {
        assert_eq!(count("--replicas", "3").unwrap(), 3);
        assert_eq!(count("--replicas", "0").unwrap(), 0);
        assert_eq!(
            err(count("--replicas", "-1")),
            "invalid value \"-1\" for --replicas: use a whole number, 0 or more"
        );
        assert!(count("--replicas", "three").is_err());
        assert!(count("--replicas", "1.5").is_err());
        assert!(count("--replicas", "").is_err());
        assert!(err(count("--replicas", "99999999999999999999999")).contains("too large"));
        assert_eq!(positive("--max-concurrent", "2").unwrap(), 2);
        assert!(err(positive("--max-concurrent", "0")).contains("1 or more"));
        assert_eq!(count_u32("--health-retries", "3").unwrap(), 3);
        assert!(count_u32("--health-retries", "5000000000").is_err());
        assert_eq!(ratio("--update-max-failure-ratio", "0.25").unwrap(), 0.25);
        assert!(ratio("--update-max-failure-ratio", "1.5").is_err());
        assert!(ratio("--update-max-failure-ratio", "-0.1").is_err());
        assert!(ratio("--update-max-failure-ratio", "NaN").is_err());
    }

    #[test]
    fn memory_sizes() {
        let m = |s: &str| memory("--limit-memory", s).unwrap();
        assert_eq!(m("512M"), 512 << 20);
        assert_eq!(m("512m"), 512 << 20);
        assert_eq!(m("1G"), 1 << 30);
        assert_eq!(m("1.5g"), 3 << 29);
        assert_eq!(m("1024"), 1024);
        assert_eq!(m("100b"), 100);
        assert_eq!(m("256MiB"), 256 << 20);
        assert_eq!(m("256mb"), 256 << 20);
        assert_eq!(m("64 k"), 64 << 10);
        assert_eq!(m("2t"), 2 << 40);
        assert_eq!(m("0"), 0);
        assert_eq!(
            err(memory("--reserve-memory", "12XB")),
            "invalid memory size \"12XB\" for --reserve-memory: use a number with an optional unit b, k, m, g or t, e.g. 512m or 1.5g"
        );
        for bad in ["", "m", "-1m", "1..5g", ".5g", "5.g", "1gg", "1 g b", "1e3"] {
            assert!(memory("--limit-memory", bad).is_err(), "{bad}");
        }
        assert!(err(memory("--limit-memory", "99999999999p")).contains("too large"));
    }

    #[test]
    fn cpu_counts() {
        let c = |s: &str| cpus("--limit-cpu", s).unwrap();
        assert_eq!(c("0.5"), 500_000_000);
        assert_eq!(c("2"), 2_000_000_000);
        assert_eq!(c("1.25"), 1_250_000_000);
        assert_eq!(c(".5"), 500_000_000);
        assert_eq!(c("0.000000001"), 1);
        assert_eq!(c("0"), 0);
        assert_eq!(
            err(cpus("--reserve-cpu", "half")),
            "invalid CPU count \"half\" for --reserve-cpu: use a decimal number of CPUs, e.g. 0.5 or 2"
        );
        for bad in ["", ".", "1.", "-1", "1.2.3", "1e2", "0,5"] {
            assert!(cpus("--limit-cpu", bad).is_err(), "{bad}");
        }
        assert!(err(cpus("--limit-cpu", "0.0000000001")).contains("9 decimal places"));
        assert!(err(cpus("--limit-cpu", "99999999999999999999")).contains("too large"));
    }

    #[test]
    fn env_values() {
        let none = |_: &str| None;
        assert_eq!(env("A=b", none).unwrap(), "A=b");
        assert_eq!(env("A=", none).unwrap(), "A=");
        assert_eq!(env("A=b=c", none).unwrap(), "A=b=c");
        assert_eq!(env("HOME", |_| Some("/root".into())).unwrap(), "HOME=/root");
        assert_eq!(
            err(env("=x", none)),
            "invalid environment variable \"=x\" for --env: the name must not be empty (use KEY=VALUE)"
        );
        assert!(err(env("", none)).contains("must not be empty"));
        assert!(err(env("A B=c", none)).contains("contains spaces"));
        assert!(err(env("NOPE", none)).contains("not set in this shell"));
    }

    #[test]
    fn labels() {
        assert_eq!(label("--label", "a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(label("--label", "a").unwrap(), ("a".into(), "".into()));
        assert_eq!(
            err(label("--container-label", "=v")),
            "invalid label \"=v\" for --container-label: the key must not be empty (use KEY=VALUE)"
        );
    }

    #[test]
    fn constraints() {
        assert_eq!(
            constraint("node.role==manager").unwrap(),
            "node.role==manager"
        );
        assert_eq!(
            constraint(" node.labels.zone != east ").unwrap(),
            "node.labels.zone!=east"
        );
        assert_eq!(
            constraint("node.hostname==h1").unwrap(),
            "node.hostname==h1"
        );
        assert_eq!(
            err(constraint("node.role=manager")),
            "invalid constraint \"node.role=manager\": missing operator; write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, e.g. node.role==manager"
        );
        assert!(err(constraint("node.role")).contains("missing operator"));
        assert!(err(constraint("==manager")).contains("empty attribute"));
        assert!(err(constraint("node.role==")).contains("empty value"));
        assert!(err(constraint("a==b==c")).contains("more than one operator"));
        assert!(err(constraint("node.colour==red")).contains("unknown attribute node.colour"));
        assert!(err(constraint("node.labels.==x")).contains("missing label name"));
        assert!(err(constraint("node.role==boss")).contains("manager or worker"));
    }

    #[test]
    fn placement_prefs() {
        assert_eq!(
            placement_pref("spread=node.labels.zone").unwrap(),
            "node.labels.zone"
        );
        assert!(err(placement_pref("spread=")).contains("nothing to spread over"));
        assert!(err(placement_pref("binpack=node.labels.zone")).contains("unknown strategy"));
        assert!(placement_pref("node.labels.zone").is_err());
        assert!(err(placement_pref("spread=zone")).contains("unknown attribute"));
    }

    #[test]
    fn signals_and_restart() {
        assert_eq!(signal("TERM").unwrap(), "SIGTERM");
        assert_eq!(signal("sigint").unwrap(), "SIGINT");
        assert_eq!(signal("SIGRTMIN+3").unwrap(), "SIGRTMIN+3");
        assert_eq!(signal("9").unwrap(), "9");
        assert!(signal("SIGNOPE").is_err());
        assert!(signal("0").is_err());
        assert!(signal("99").is_err());
        assert_eq!(
            restart_condition("on-failure").unwrap(),
            RestartCondition::OnFailure
        );
        assert_eq!(restart_condition("ANY").unwrap(), RestartCondition::Any);
        assert!(err(restart_condition("always")).contains("none, on-failure or any"));
    }

    #[test]
    fn shell_splitting() {
        let w = |s: &str| shell_words("--entrypoint", s).unwrap();
        assert_eq!(
            w("/bin/sh -c 'echo hi there'"),
            ["/bin/sh", "-c", "echo hi there"]
        );
        assert_eq!(w(r#"a "b \"c\"" d\ e"#), ["a", "b \"c\"", "d e"]);
        assert_eq!(w("  x  "), ["x"]);
        assert_eq!(w("''"), [""]);
        assert!(w("").is_empty());
        assert!(shell_words("--entrypoint", "'open").is_err());
        assert!(shell_words("--entrypoint", "\"open").is_err());
    }

    fn port(published: u32, target: u32, proto: PortProtocol, mode: PublishMode) -> PortConfig {
        PortConfig {
            name: String::new(),
            protocol: proto as i32,
            target_port: target,
            published_port: published,
            publish_mode: mode as i32,
        }
    }

    #[test]
    fn publish_short() {
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(publish("8080:80").unwrap(), [port(8080, 80, Tcp, Ingress)]);
        assert_eq!(publish("80").unwrap(), [port(0, 80, Tcp, Ingress)]);
        assert_eq!(publish("53:53/udp").unwrap(), [port(53, 53, Udp, Ingress)]);
        assert_eq!(
            publish("8000-8001:80-81").unwrap(),
            [port(8000, 80, Tcp, Ingress), port(8001, 81, Tcp, Ingress)]
        );
        for bad in [
            "",
            "abc",
            "8080:",
            ":80",
            "8080:80/icmp",
            "0:80",
            "8080:70000",
            "1:2:3:4",
            "8000-8002:80-81",
            "9-8:80",
        ] {
            let e = err(publish(bad));
            assert!(
                e.starts_with(&format!("invalid port \"{bad}\" for --publish: ")),
                "{e}"
            );
        }
        assert!(err(publish("127.0.0.1:8080:80")).contains("drop the IP address"));
    }

    #[test]
    fn publish_long_form() {
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(
            publish("published=8080,target=80").unwrap(),
            [port(8080, 80, Tcp, Ingress)]
        );
        assert_eq!(
            publish("target=53,published=5353,protocol=udp,mode=host").unwrap(),
            [port(5353, 53, Udp, Host)]
        );
        assert_eq!(publish("target=80").unwrap(), [port(0, 80, Tcp, Ingress)]);
        assert!(err(publish("published=8080")).contains("target port is missing"));
        assert!(err(publish("target=80,mode=bridge")).contains("ingress or host"));
        assert!(err(publish("target=80,colour=red")).contains("unknown key \"colour\""));
        assert!(err(publish("target=80,protocol=icmp")).contains("tcp or udp"));
        assert!(err(publish("8080:80/sctp")).contains("does not publish sctp"));
        assert!(err(publish("target=x")).contains("not a port"));
        assert!(err(publish("target=80,published")).contains("not KEY=VALUE"));
    }

    #[test]
    fn mounts() {
        let m = mount(
            "--mount",
            "type=bind,source=/srv/data,target=/data,readonly",
        )
        .unwrap();
        assert_eq!(m.r#type(), MountType::Bind);
        assert_eq!(m.source, "/srv/data");
        assert_eq!(m.target, "/data");
        assert!(m.read_only);
        let m = mount("--mount", "src=vol1,dst=/var/lib/x").unwrap();
        assert_eq!(m.r#type(), MountType::Volume);
        assert_eq!(m.source, "vol1");
        assert!(!m.read_only);
        let m = mount("--mount", "type=volume,target=/cache,ro=false").unwrap();
        assert_eq!(m.source, "");
        let m = mount("--mount", "type=tmpfs,target=/tmp,tmpfs-size=64m").unwrap();
        assert_eq!(m.r#type(), MountType::Tmpfs);
        assert_eq!(m.tmpfs_size_bytes, 64 << 20);
        let cases = [
            ("type=bind,target=/x", "needs a source"),
            (
                "type=bind,source=rel,target=/x",
                "must be an absolute path on the host",
            ),
            ("type=nfs,target=/x", "unknown type \"nfs\""),
            ("type=volume,source=v", "target is missing"),
            ("type=volume,target=x", "must be an absolute path"),
            ("type=tmpfs,source=a,target=/x", "takes no source"),
            ("type=volume,target=/x,tmpfs-size=1m", "tmpfs mounts only"),
            ("type=tmpfs,target=/x,tmpfs-size=lots", "invalid tmpfs-size"),
            ("target=/x,readonly=maybe", "true or false"),
            (
                "target=/x,volume-driver=local",
                "unknown key \"volume-driver\"",
            ),
            ("type=,target=/x", "needs a value"),
        ];
        for (value, want) in cases {
            let e = err(mount("--mount", value));
            assert!(
                e.starts_with(&format!("invalid mount \"{value}\" for --mount: ")),
                "{e}"
            );
            assert!(e.contains(want), "{value}: {e}");
        }
    }

    #[test]
    fn networks() {
        let n = network("backend").unwrap();
        assert_eq!(n.target, "backend");
        let n = network("name=backend,alias=web,alias=www").unwrap();
        assert_eq!(n.target, "backend");
        assert_eq!(n.aliases, ["web", "www"]);
        assert!(network("").is_err());
        assert!(network("alias=x").is_err());
        assert!(network("name=a,driver=x").is_err());
    }
}
