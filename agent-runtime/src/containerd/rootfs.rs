//! What skiff puts into and reads from a container's root filesystem before it starts: the
//! files it bind-mounts (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`), and the
//! image's users, read through a short-lived mount of the container's snapshot.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::api::Mount;
use super::spec::{resolve_groups, resolve_user as find_user, User};
use crate::RuntimeError;

/// The resolver a task on networks asks: the network's embedded DNS server, which forwards
/// other names to the node's resolvers.
const EMBEDDED_DNS: &str = "127.0.0.11";

/// Where a task's network is, for its resolvers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskNetwork {
    /// The node's own namespace (a node without a data path): the node's resolvers as they
    /// are.
    Node,
    /// A namespace of its own on a node-local bridge only: the node's resolvers it can
    /// reach from there.
    Bridge,
    /// A namespace of its own on overlay networks: their embedded DNS server.
    Overlays,
    /// The node's own namespace by choice (`--network host`): the node's hosts and
    /// resolvers, as Docker gives a container on the host network.
    Host,
}

/// Writes the task's `hosts` (with its `--host` lines), `hostname` and `resolv.conf` (with
/// the parts `--dns*` replace) into its directory.
pub(crate) fn write_task_files(
    dir: &Path,
    hostname: &str,
    network: TaskNetwork,
    container: &proto::ContainerSpec,
) -> Result<(), RuntimeError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut hosts = match network {
        TaskNetwork::Host => read("/etc/hosts"),
        _ => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    };
    if !hosts.is_empty() && !hosts.ends_with('\n') {
        hosts.push('\n');
    }
    for line in &container.hosts {
        hosts.push_str(line);
        hosts.push('\n');
    }
    let mut dns = container.dns_config.clone().unwrap_or_default();
    let resolv = match network {
        // The embedded server stays the resolver; it forwards to the --dns servers.
        TaskNetwork::Overlays => {
            dns.nameservers.clear();
            // Service names are single labels the embedded server answers: ndots:0 stays
            // unless the task sets ndots itself (as Docker keeps it).
            if !dns.options.is_empty() && !dns.options.iter().any(|o| o.starts_with("ndots:")) {
                dns.options.insert(0, "ndots:0".into());
            }
            format!("nameserver {EMBEDDED_DNS}\noptions ndots:0\n")
        }
        TaskNetwork::Node | TaskNetwork::Host => read("/etc/resolv.conf"),
        TaskNetwork::Bridge => reachable_resolvers(
            &read("/etc/resolv.conf"),
            &read("/run/systemd/resolve/resolv.conf"),
        ),
    };
    let resolv = proto::container_options::resolv_conf(&resolv, &dns);
    for (name, content) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        // Readable by any user the container runs as (skiffd's own files are not: umask 077).
        let path = dir.join(name);
        std::fs::write(&path, content)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)))
            .map_err(|e| RuntimeError::io(format!("writing the task's {name}"), e))?;
    }
    Ok(())
}

/// The node's `resolv.conf` for a task in a namespace of its own, where the node's loopback
/// resolvers (systemd-resolved's 127.0.0.53, a local cache) answer nobody: without them,
/// and where none is left, with the upstream servers of systemd-resolved (`upstreams`, its
/// own resolv.conf), as Docker does. Search domains and options stay.
fn reachable_resolvers(node: &str, upstreams: &str) -> String {
    let loopback = |line: &str| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words
                .next()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_loopback())
    };
    let nameserver = |line: &&str| line.split_whitespace().next() == Some("nameserver");
    let mut kept: Vec<&str> = node.lines().filter(|l| !loopback(l)).collect();
    if !kept.iter().any(nameserver) {
        kept.extend(upstreams.lines().filter(|l| nameserver(l) && !loopback(l)));
    }
    kept.iter().map(|l| format!("{l}\n")).collect()
}

/// Resolves `user` (name or number, with an optional group) and the supplementary `groups`
/// against the image's `/etc/passwd` and `/etc/group`, mounting the snapshot only when a
/// name needs looking up.
pub(crate) async fn resolve_user(
    user: &str,
    groups: &[String],
    mounts: &[Mount],
    dir: &Path,
) -> Result<(User, Vec<u32>), RuntimeError> {
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let numeric_user = user.is_empty() || user.split(':').all(is_number);
    if numeric_user && groups.iter().all(|g| is_number(g)) {
        return Ok((find_user(user, "", "")?, resolve_groups(groups, "")?));
    }
    let mounts = mounts.to_vec();
    let target = dir.join("rootfs-peek");
    let user = user.to_owned();
    let groups = groups.to_vec();
    tokio::task::spawn_blocking(move || {
        let (passwd, group) = read_user_files(&mounts, &target)?;
        Ok((
            find_user(&user, &passwd, &group)?,
            resolve_groups(&groups, &group)?,
        ))
    })
    .await
    .map_err(|e| RuntimeError::io("reading the image's users", std::io::Error::other(e)))?
}

fn read_user_files(mounts: &[Mount], target: &Path) -> Result<(String, String), RuntimeError> {
    std::fs::create_dir_all(target)
        .map_err(|e| RuntimeError::io("making a mount point for the image's root", e))?;
    for m in mounts {
        mount_one(m, target).map_err(|e| {
            RuntimeError::io(
                "mounting the image's root filesystem to read its users",
                e.into(),
            )
        })?;
    }
    let read =
        |name: &str| std::fs::read_to_string(target.join("etc").join(name)).unwrap_or_default();
    let files = (read("passwd"), read("group"));
    let _ = umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(target);
    Ok(files)
}

fn mount_one(m: &Mount, target: &Path) -> nix::Result<()> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in &m.options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    let data = data.join(",");
    let fstype = (m.r#type != "bind").then_some(m.r#type.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_on_a_bridge_gets_the_node_resolvers_it_can_reach() {
        let node = "search example.org\nnameserver 127.0.0.53\noptions edns0\n";
        let upstreams = "nameserver 192.0.2.53\nnameserver ::1\nsearch lan\n";
        assert_eq!(
            reachable_resolvers(node, upstreams),
            "search example.org\noptions edns0\nnameserver 192.0.2.53\n"
        );
        let direct = "nameserver 10.0.0.2\nnameserver 127.0.0.1\n";
        assert_eq!(
            reachable_resolvers(direct, upstreams),
            "nameserver 10.0.0.2\n",
            "systemd-resolved's upstreams only where nothing else is left"
        );
    }

    #[test]
    fn task_files_carry_hosts_entries_and_dns_settings() {
        let dir = tempfile::tempdir().unwrap();
        let c = proto::ContainerSpec {
            hosts: vec!["10.0.0.5 db.local".into()],
            dns_config: Some(proto::DnsConfig {
                nameservers: vec!["192.0.2.1".into()],
                search: vec!["example.com".into()],
                options: vec!["timeout:2".into()],
            }),
            ..Default::default()
        };
        write_task_files(dir.path(), "h", TaskNetwork::Overlays, &c).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            read("hosts").ends_with("127.0.1.1\th\n10.0.0.5 db.local\n"),
            "{}",
            read("hosts")
        );
        assert_eq!(
            read("resolv.conf"),
            "nameserver 127.0.0.11\nsearch example.com\noptions ndots:0 timeout:2\n",
            "on overlays the embedded server stays the resolver (it forwards to --dns)"
        );
        write_task_files(dir.path(), "h", TaskNetwork::Bridge, &c).unwrap();
        let resolv = read("resolv.conf");
        assert!(
            resolv.contains("nameserver 192.0.2.1\n") && !resolv.contains("127.0.0.11"),
            "{resolv}"
        );
    }
}
