//! Published ports of the routing mesh: each (port, protocol) belongs to one service in the
//! whole cluster, since every node listens on it. TCP and UDP are separate spaces.

use std::collections::HashSet;

use proto::PortProtocol;

/// Ports handed out when a service publishes without naming a port (Docker's range).
pub const DYNAMIC: std::ops::RangeInclusive<u32> = 30000..=32767;

/// The published ports in use, per protocol, and those some service asks for by number
/// (which automatic allocation leaves alone even before they are taken).
#[derive(Debug, Default, Clone)]
pub struct Ports {
    used: HashSet<(i32, u32)>,
    requested: HashSet<(i32, u32)>,
}

impl Ports {
    /// Notes that a service asks for `port` by number, so it is never handed out
    /// automatically to another.
    pub fn request(&mut self, protocol: i32, port: u32) {
        self.requested.insert((protocol, port));
    }

    /// Marks `port` as taken for `protocol`; false if it already was.
    pub fn reserve(&mut self, protocol: i32, port: u32) -> bool {
        port != 0 && self.used.insert((protocol, port))
    }

    /// Whether `port` is taken for `protocol`.
    pub fn is_taken(&self, protocol: i32, port: u32) -> bool {
        self.used.contains(&(protocol, port))
    }

    /// Takes the lowest free port of the dynamic range for `protocol` that no service asks
    /// for by number.
    pub fn allocate(&mut self, protocol: i32) -> Option<u32> {
        let port = DYNAMIC
            .clone()
            .find(|p| !self.is_taken(protocol, *p) && !self.requested.contains(&(protocol, *p)))?;
        self.used.insert((protocol, port));
        Some(port)
    }
}

/// The protocol's name as users write it.
pub fn protocol_name(protocol: i32) -> &'static str {
    match PortProtocol::try_from(protocol) {
        Ok(PortProtocol::Udp) => "udp",
        Ok(PortProtocol::Sctp) => "sctp",
        _ => "tcp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: i32 = PortProtocol::Tcp as i32;
    const UDP: i32 = PortProtocol::Udp as i32;

    #[test]
    fn tcp_and_udp_are_separate_spaces() {
        let mut p = Ports::default();
        assert!(p.reserve(TCP, 8080));
        assert!(!p.reserve(TCP, 8080));
        assert!(p.reserve(UDP, 8080));
    }

    #[test]
    fn dynamic_ports_skip_taken_ones_and_run_out() {
        let mut p = Ports::default();
        assert!(p.reserve(TCP, 30000));
        assert_eq!(p.allocate(TCP), Some(30001));
        assert_eq!(p.allocate(UDP), Some(30000));
        let mut full = Ports::default();
        for port in DYNAMIC {
            full.reserve(TCP, port);
        }
        assert_eq!(full.allocate(TCP), None);
    }

    #[test]
    fn ports_asked_for_by_number_are_not_handed_out_automatically() {
        let mut p = Ports::default();
        p.request(TCP, 30000);
        assert_eq!(p.allocate(TCP), Some(30001));
        assert!(
            p.reserve(TCP, 30000),
            "the service that asked still gets it"
        );
    }
}
