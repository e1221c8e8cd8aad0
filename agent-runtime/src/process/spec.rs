//! Turning a task's container spec into what the shim runs: the checks happen here, in
//! `prepare`, so a task that cannot run fails before it is started, with a reason.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::unistd::{Group, Uid, User};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// PATH for tasks when skiffd itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the shim runs, resolved and checked; stored as `spec.json` in the task's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessSpec {
    pub task_id: String,
    /// The program and its arguments (`command` then `args`).
    pub argv: Vec<String>,
    /// The whole environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The working directory (absolute, checked to exist at prepare time).
    pub dir: PathBuf,
    /// Whom to run as; `None` runs as skiffd's own user.
    pub user: Option<Credentials>,
    /// The signal `stop` sends first.
    pub stop_signal: i32,
    /// The spec's grace period between the stop signal and SIGKILL.
    pub stop_grace_ms: u64,
    /// The task's own network namespace, where the node made one (every task, unless the
    /// node runs without a data path).
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// A resolved user to run a task as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Credentials {
    /// As the spec wrote it, for messages.
    pub spec: String,
    pub uid: u32,
    pub gid: u32,
}

/// Refuses the container options a host process cannot have, naming the flag: limits,
/// capabilities, sysctls, an init, DNS and hosts files, groups, a terminal and OOM scores
/// are a container's (the process runtime does `--network host` and `--entrypoint`).
fn unsupported_options(c: &proto::ContainerSpec) -> Result<(), RuntimeError> {
    let flag = [
        (!c.ulimits.is_empty(), "--ulimit"),
        (!c.cap_add.is_empty(), "--cap-add"),
        (!c.cap_drop.is_empty(), "--cap-drop"),
        (!c.sysctls.is_empty(), "--sysctl"),
        (c.init, "--init"),
        (
            c.dns_config
                .as_ref()
                .is_some_and(|d| d != &proto::DnsConfig::default()),
            "--dns",
        ),
        (!c.hosts.is_empty(), "--host"),
        (!c.groups.is_empty(), "--group"),
        (c.tty, "--tty"),
        (c.oom_score_adj != 0, "--oom-score-adj"),
    ]
    .into_iter()
    .find_map(|(set, flag)| set.then_some(flag));
    match flag {
        Some(flag) => Err(RuntimeError::InvalidSpec(format!(
            "{flag} needs a container: this node runs tasks as host processes (skiffd --runtime process); run the service on nodes with the containerd runtime, or drop {flag}"
        ))),
        None => Ok(()),
    }
}

/// Builds the process spec of a task. Blocking: it looks users up (NSS may read files or
/// ask a network service) and checks the working directory.
pub(crate) fn build(
    task_id: &str,
    container: Option<&proto::ContainerSpec>,
    host_path: Option<OsString>,
) -> Result<ProcessSpec, RuntimeError> {
    let container = container.ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("task {task_id} has no container spec"))
    })?;
    unsupported_options(container)?;
    let argv: Vec<String> = container
        .command
        .iter()
        .chain(&container.args)
        .cloned()
        .collect();
    match argv.first() {
        None => {
            return Err(RuntimeError::InvalidSpec(
                "the process runtime needs a command: pass one after the image".into(),
            ))
        }
        Some(program) if program.is_empty() => {
            return Err(RuntimeError::InvalidSpec(
                "the task's command is an empty string: give a program to run".into(),
            ))
        }
        Some(_) => {}
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(RuntimeError::InvalidSpec(
            "the task's command contains a NUL byte, which no program accepts".into(),
        ));
    }

    let user = resolve_user(&container.user)?;
    check_can_switch_to(user.as_ref())?;
    let dir = working_dir(&container.dir)?;

    let home = match &user {
        Some(c) => User::from_uid(Uid::from_raw(c.uid))
            .ok()
            .flatten()
            .map(|u| u.dir),
        None => User::from_uid(Uid::effective())
            .ok()
            .flatten()
            .map(|u| u.dir),
    };
    let path = host_path
        .and_then(|p| p.into_string().ok())
        .filter(|p| !p.is_empty());
    // Tasks get a clean environment, as a container would: skiffd's own may hold things a
    // task must not see (tokens, the manager's settings), and a task should behave the same
    // whichever node and shell started skiffd. PATH is the exception: without it a process
    // runtime is useless for commands like `sh`.
    let mut env = vec![
        format!("PATH={}", path.as_deref().unwrap_or(DEFAULT_PATH)),
        format!(
            "HOME={}",
            home.as_deref().unwrap_or(Path::new("/")).display()
        ),
    ];
    for entry in &container.env {
        let key = match entry.split_once('=') {
            Some((key, _)) if !key.is_empty() && !entry.contains('\0') => key,
            _ => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "environment entry '{entry}' is not KEY=VALUE: write it as KEY=VALUE"
                )))
            }
        };
        // Later entries win, as in Docker.
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(entry.clone());
    }
    // A host process cannot have its secrets and configs at their targets: it is told
    // where they are instead, each at its target's path below that directory.
    if !container.secrets.is_empty() || !container.configs.is_empty() {
        crate::task_files(task_id, container)?;
        env.push(format!(
            "{}={}",
            crate::TASK_FILES_ENV,
            crate::task_files_dir(task_id).display()
        ));
    }

    Ok(ProcessSpec {
        task_id: task_id.to_string(),
        argv,
        env,
        dir,
        user,
        stop_signal: crate::signal::parse_signal(&container.stop_signal)? as i32,
        stop_grace_ms: crate::stop_grace_period(Some(container)).as_millis() as u64,
        netns: Some(crate::task_netns_path(task_id)).filter(|p| p.exists()),
    })
}

/// Parses `name`, `name:group`, `uid` or `uid:gid` (names or numbers on either side).
fn resolve_user(spec: &str) -> Result<Option<Credentials>, RuntimeError> {
    if spec.is_empty() {
        return Ok(None);
    }
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup_failed = |what: &str, e: nix::Error| {
        RuntimeError::io(
            format!("cannot look up {what} '{spec}'"),
            std::io::Error::from(e),
        )
    };
    let (uid, default_gid) = match user_part.parse::<u32>() {
        // A numeric user needs no entry in /etc/passwd (as with containers); without one its
        // group is root's, as Docker does.
        Ok(uid) => {
            let entry = User::from_uid(Uid::from_raw(uid)).map_err(|e| lookup_failed("user", e))?;
            (uid, entry.map_or(0, |u| u.gid.as_raw()))
        }
        Err(_) => {
            let entry = User::from_name(user_part)
                .map_err(|e| lookup_failed("user", e))?
                .ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!(
                        "user '{user_part}' does not exist on this node: create it, or give a numeric uid[:gid]"
                    ))
                })?;
            (entry.uid.as_raw(), entry.gid.as_raw())
        }
    };
    let gid = match group_part {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(g)
                .map_err(|e| lookup_failed("group", e))?
                .ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!(
                        "group '{g}' does not exist on this node: create it, or give a numeric gid"
                    ))
                })?
                .gid
                .as_raw(),
        },
    };
    Ok(Some(Credentials {
        spec: spec.to_string(),
        uid,
        gid,
    }))
}

/// Only root can run a task as someone else; say so now rather than at start.
fn check_can_switch_to(user: Option<&Credentials>) -> Result<(), RuntimeError> {
    let Some(user) = user else { return Ok(()) };
    let (euid, egid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if euid.is_root() || (user.uid == euid.as_raw() && user.gid == egid.as_raw()) {
        return Ok(());
    }
    Err(RuntimeError::InvalidSpec(format!(
        "the task runs as user '{}' (uid {}, gid {}), but skiffd runs as uid {} and cannot switch users: run skiffd as root, or drop the task's user",
        user.spec, user.uid, user.gid, euid
    )))
}

fn working_dir(dir: &str) -> Result<PathBuf, RuntimeError> {
    if dir.is_empty() {
        // As a container whose image sets no WORKDIR.
        return Ok(PathBuf::from("/"));
    }
    let path = PathBuf::from(dir);
    if !path.is_absolute() {
        return Err(RuntimeError::InvalidSpec(format!(
            "working directory '{dir}' must be an absolute path"
        )));
    }
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(RuntimeError::InvalidSpec(format!("working directory {dir} is not a directory on this node"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RuntimeError::InvalidSpec(format!(
            "working directory {dir} does not exist on this node: create it, or change the task's workdir"
        ))),
        Err(e) => Err(RuntimeError::io(format!("cannot check working directory {dir}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> proto::ContainerSpec {
        proto::ContainerSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn build_one(c: &proto::ContainerSpec) -> Result<ProcessSpec, RuntimeError> {
        build("t1", Some(c), Some("/bin:/usr/bin".into()))
    }

    #[test]
    fn argv_is_command_then_args() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["sh", "-c"], &["echo hi"], &["sh", "-c", "echo hi"]),
            (&[], &["sleep", "1"], &["sleep", "1"]),
            (&["true"], &[], &["true"]),
        ];
        for (command, args, want) in cases {
            assert_eq!(build_one(&container(command, args)).unwrap().argv, *want);
        }
    }

    #[test]
    fn a_task_without_a_command_is_invalid() {
        let err = build_one(&container(&[], &[])).unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidSpec(_)));
        assert!(err.to_string().contains("needs a command"), "{err}");
        assert!(build("t1", None, None).unwrap_err().is_permanent());
    }

    #[test]
    fn env_is_clean_and_later_entries_win() {
        let mut c = container(&["true"], &[]);
        c.env = vec![
            "A=1".into(),
            "PATH=/opt/bin".into(),
            "A=2".into(),
            "EMPTY=".into(),
        ];
        let spec = build_one(&c).unwrap();
        assert!(spec.env.iter().any(|e| e.starts_with("HOME=")));
        let rest: Vec<&str> = spec
            .env
            .iter()
            .map(String::as_str)
            .filter(|e| !e.starts_with("HOME="))
            .collect();
        assert_eq!(rest, ["PATH=/opt/bin", "A=2", "EMPTY="]);
        for bad in ["NOVALUE", "=x"] {
            c.env = vec![bad.into()];
            let err = build_one(&c).unwrap_err();
            assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        }
    }

    #[test]
    fn workdir_must_exist() {
        let mut c = container(&["true"], &[]);
        assert_eq!(build_one(&c).unwrap().dir, PathBuf::from("/"));
        c.dir = "/no/such/dir/anywhere".into();
        let err = build_one(&c).unwrap_err();
        assert!(
            err.to_string().contains("does not exist on this node"),
            "{err}"
        );
        c.dir = "relative".into();
        assert!(build_one(&c).unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn users_resolve_by_name_or_number() {
        let me = nix::unistd::geteuid().as_raw();
        let my_gid = nix::unistd::getegid().as_raw();
        let by_number = resolve_user(&format!("{me}:{my_gid}")).unwrap().unwrap();
        assert_eq!((by_number.uid, by_number.gid), (me, my_gid));
        let root = resolve_user("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(resolve_user("0:1").unwrap().unwrap().gid, 1);
        assert_eq!(resolve_user("").unwrap(), None);

        let err = resolve_user("no-such-user-skiff").unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidSpec(_)));
        assert!(
            err.to_string().contains("does not exist on this node"),
            "{err}"
        );
        let err = resolve_user("0:no-such-group-skiff").unwrap_err();
        assert!(
            err.to_string().contains("group 'no-such-group-skiff'"),
            "{err}"
        );
    }

    #[test]
    fn only_root_switches_users() {
        let me = Credentials {
            spec: "me".into(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        assert!(check_can_switch_to(None).is_ok());
        assert!(check_can_switch_to(Some(&me)).is_ok());
        let other = Credentials {
            uid: me.uid.wrapping_add(1),
            ..me
        };
        let result = check_can_switch_to(Some(&other));
        assert_eq!(result.is_ok(), nix::unistd::geteuid().is_root());
        if let Err(e) = result {
            assert!(e.to_string().contains("run skiffd as root"), "{e}");
        }
    }

    #[test]
    fn container_options_are_refused_naming_the_flag() {
        let c = proto::ContainerSpec {
            command: vec!["/bin/true".into()],
            sysctls: [("net.core.somaxconn".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let err = build("t", Some(&c), None).unwrap_err().to_string();
        assert!(err.starts_with("--sysctl needs a container"), "{err}");
        let c = proto::ContainerSpec { tty: true, ..c };
        let err = build("t", Some(&c), None).unwrap_err().to_string();
        assert!(err.contains("--tty") || err.contains("--sysctl"), "{err}");
    }
}
