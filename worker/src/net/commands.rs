//! The seam between the data path and the node: every change the data path makes to the
//! node's network, and the two things it reads back from the node itself, go through
//! [`Commands`]. [`HostCommands`] does them for real (root and real namespaces: the tests
//! under `worker/tests` and `integration-tests` use it); the recording fake beside it
//! (`net/fake.rs`, for unit tests) lets the logic above — which networks a message makes
//! or removes, what a task's namespace is joined to, what the mesh is programmed with — be
//! tested without root, by the commands it issues.
//!
//! The seam is the command line (iproute2's `ip` and `bridge`, `nft`), not netlink: the
//! node needs iproute2 anyway, and a failure reads as the command that failed and what it
//! printed. Besides commands, a few sysctls are written directly (there is no command for
//! a namespace's sysctl that the node is sure to have) and namespace names are checked with
//! `statfs` (a restarted skiffd must tell a live name from one left by its predecessor).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::overlay::NetError;

/// Where `ip netns` keeps its namespaces.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// What a namespace's name under /var/run/netns is to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceFile {
    /// No such name.
    Missing,
    /// A namespace (the name is a mount of one).
    Live,
    /// A name without a namespace behind it: its mount was made in another mount namespace
    /// (an earlier skiffd's under `ip netns exec`), which this process does not see.
    Stale,
}

/// What a sysctl that does not exist means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Nothing to do (its module is not loaded, so what it controls does not happen).
    Fine,
    /// An error.
    Error,
}

/// How the data path changes the node's network. Calls block; namespaces are named as
/// under /var/run/netns, `None` being the caller's own.
pub trait Commands: Send + Sync + std::fmt::Debug {
    /// Runs `program` with `args`; what it printed on stdout, or the command and its
    /// stderr when it fails.
    fn output(&self, program: &str, args: &[&str]) -> Result<String, NetError>;

    /// Runs `program` with `args` for its effect alone.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), NetError> {
        self.output(program, args).map(drop)
    }

    /// Applies the nftables `script` in one transaction (`nft -f -`) in namespace `netns`.
    fn nft(&self, netns: Option<&str>, script: &str) -> Result<(), NetError>;

    /// Writes `value` to sysctl `key` (dotted, `net.ipv4.ip_forward`) of namespace `netns`;
    /// `missing` says whether a key the kernel does not have is an error.
    fn write_sysctl(
        &self,
        netns: Option<&str>,
        key: &str,
        value: &str,
        missing: Missing,
    ) -> Result<(), NetError>;

    /// What the namespace name `name` is to this process.
    fn namespace(&self, name: &str) -> NamespaceFile;
}

/// The node itself: commands run as processes, sysctls written under /proc/sys.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCommands;

impl Commands for HostCommands {
    fn output(&self, program: &str, args: &[&str]) -> Result<String, NetError> {
        let command = format!("{program} {}", args.join(" "));
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| NetError::Command {
                command: command.clone(),
                message: format!("{e} (is iproute2 installed?)"),
            })?;
        if !out.status.success() {
            return Err(NetError::Command {
                command,
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn nft(&self, netns: Option<&str>, script: &str) -> Result<(), NetError> {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft", "-f", "-"]);
                c
            }
            None => {
                let mut c = Command::new("nft");
                c.args(["-f", "-"]);
                c
            }
        };
        let failed = |message: String| NetError::Command {
            command: "nft -f - (routing mesh)".into(),
            message,
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("{e} (is nftables installed?)")))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
        let out = child
            .wait_with_output()
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }

    /// Written from a short-lived thread inside the namespace: /proc/sys/net shows the
    /// namespace of the thread that opens it.
    fn write_sysctl(
        &self,
        netns: Option<&str>,
        key: &str,
        value: &str,
        missing: Missing,
    ) -> Result<(), NetError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let netns = netns.map(|ns| Path::new(NETNS_DIR).join(ns));
        let failed = |message: String| NetError::Command {
            command: match &netns {
                Some(ns) => format!("write {value} to {path} in {}", ns.display()),
                None => format!("write {value} to {path}"),
            },
            message,
        };
        let written = match &netns {
            None => std::fs::write(&path, value),
            Some(ns) => {
                let file = std::fs::File::open(ns).map_err(|e| failed(e.to_string()))?;
                let (target, value) = (path.clone(), value.to_owned());
                std::thread::spawn(move || -> std::io::Result<()> {
                    // Only this thread changes namespace, and it ends right after.
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                    std::fs::write(&target, value)
                })
                .join()
                .map_err(|_| failed("the thread writing it panicked".into()))?
            }
        };
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing == Missing::Fine => {
                Ok(())
            }
            other => other.map_err(|e| failed(e.to_string())),
        }
    }

    fn namespace(&self, name: &str) -> NamespaceFile {
        use nix::sys::statfs::{statfs, NSFS_MAGIC};
        match statfs(&Path::new(NETNS_DIR).join(name)) {
            Ok(fs) if fs.filesystem_type() == NSFS_MAGIC => NamespaceFile::Live,
            Ok(_) => NamespaceFile::Stale,
            Err(nix::errno::Errno::ENOENT) => NamespaceFile::Missing,
            Err(_) => NamespaceFile::Stale,
        }
    }
}
