//! What a node reports about itself, and which address it advertises.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use anyhow::{bail, Context};
use proto::{NodeDescription, Platform, Resources};

use crate::tls::DEFAULT_PORT;

/// The node's hostname, platform and capacity, and the ports skiffd listens on at
/// `listen_addr` (its cluster port).
pub fn describe(hostname: Option<&str>, runtime: &str, listen_addr: &str) -> NodeDescription {
    let hostname = hostname.map(str::to_owned).unwrap_or_else(system_hostname);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    NodeDescription {
        hostname,
        platform: Some(Platform {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }),
        resources: Some(Resources {
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes: total_memory().unwrap_or(0),
            ..Default::default()
        }),
        engine_version: env!("CARGO_PKG_VERSION").into(),
        runtime: runtime.into(),
        daemon_ports: listen_addr
            .parse::<SocketAddr>()
            .map(|a| vec![u32::from(a.port())])
            .unwrap_or_default(),
    }
}

pub(super) fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn total_memory() -> Option<i64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses `ADDR[:PORT]`, with the default port when it is missing.
pub fn parse_addr(s: &str, what: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    bail!("invalid {what} {s:?}: use an IP address with an optional port, such as 192.168.1.10 or 192.168.1.10:2377")
}

/// The address to advertise: the one given, else the listen address if it is specific, else
/// the local address that routes to `towards` (a manager we join), else the host's only
/// non-loopback address.
pub fn advertise_addr(
    given: Option<&str>,
    listen: SocketAddr,
    towards: Option<SocketAddr>,
) -> anyhow::Result<SocketAddr> {
    if let Some(given) = given.filter(|g| !g.is_empty()) {
        let mut addr = parse_addr(given, "advertise address")?;
        if !given.contains(':') || given.ends_with(']') {
            addr.set_port(listen.port());
        }
        if addr.ip().is_unspecified() {
            bail!("the advertise address cannot be {}: other nodes could not reach it; give this host's own IP", addr.ip());
        }
        return Ok(addr);
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    if let Some(remote) = towards {
        // A UDP "connect" sends nothing; it only asks the kernel which source address it
        // would use for that destination.
        let socket = UdpSocket::bind((if remote.is_ipv4() { "0.0.0.0" } else { "::" }, 0))
            .context("cannot choose an address to advertise")?;
        socket
            .connect(remote)
            .with_context(|| format!("no route to {remote}"))?;
        let ip = socket.local_addr()?.ip();
        return Ok(SocketAddr::new(ip, listen.port()));
    }
    bail!("cannot choose an address to advertise: pass --advertise-addr with this host's IP address (the one other nodes reach it at)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("10.1.2.3", "x").unwrap().to_string(),
            "10.1.2.3:2377"
        );
        assert_eq!(
            parse_addr("10.1.2.3:4000", "x").unwrap().to_string(),
            "10.1.2.3:4000"
        );
        assert!(parse_addr("nonsense", "listen address")
            .unwrap_err()
            .to_string()
            .contains("listen address"));
        let listen: SocketAddr = "0.0.0.0:2400".parse().unwrap();
        assert_eq!(
            advertise_addr(Some("127.0.0.5"), listen, None)
                .unwrap()
                .to_string(),
            "127.0.0.5:2400"
        );
        assert_eq!(
            advertise_addr(Some("127.0.0.5:9"), listen, None)
                .unwrap()
                .to_string(),
            "127.0.0.5:9"
        );
        let specific: SocketAddr = "127.0.0.3:2377".parse().unwrap();
        assert_eq!(advertise_addr(None, specific, None).unwrap(), specific);
        let towards: SocketAddr = "127.0.0.9:2377".parse().unwrap();
        assert!(advertise_addr(None, listen, Some(towards))
            .unwrap()
            .ip()
            .is_loopback());
        assert!(advertise_addr(None, listen, None).is_err());
        assert!(advertise_addr(Some("0.0.0.0"), listen, None).is_err());
    }

    #[test]
    fn describes_the_host() {
        let d = describe(Some("node-1"), "process", "0.0.0.0:2377");
        assert_eq!(d.hostname, "node-1");
        assert!(d.resources.unwrap().nano_cpus >= 1_000_000_000);
    }
}
