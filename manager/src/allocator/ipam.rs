//! IPv4 address management: subnets carved from the cluster's default address pools, and
//! one address bitmap per network (gateway, service VIPs, task addresses).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why a CIDR string or an address request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Not `a.b.c.d/n` with an IPv4 address and a prefix length of at most 32.
    #[error("invalid subnet {0:?}: use IPv4 CIDR notation such as 10.1.2.0/24")]
    BadCidr(String),
    /// Host bits are set (`10.0.0.1/24`).
    #[error("invalid subnet {given}: it has host bits set; did you mean {network}?")]
    HostBits {
        /// What was given.
        given: String,
        /// The network it lies in.
        network: Cidr,
    },
    /// Every address of the subnet is taken.
    #[error("no address left in subnet {0}")]
    Exhausted(Cidr),
    /// The pools have no free subnet of the wanted size.
    #[error("the default address pools have no free /{0} subnet left; remove unused networks or give --subnet")]
    PoolExhausted(u8),
}

/// An IPv4 network: an address with its host bits clear and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    base: u32,
    len: u8,
}

impl Cidr {
    /// The network `addr/len` after clearing host bits.
    pub fn containing(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Cidr {
            base: u32::from(addr) & mask(len),
            len,
        }
    }

    /// Parses `a.b.c.d/n`, refusing host bits.
    pub fn parse_strict(s: &str) -> Result<Self, IpamError> {
        let (addr, len) = parse_parts(s)?;
        let net = Cidr::containing(addr, len);
        if u32::from(addr) != net.base {
            return Err(IpamError::HostBits {
                given: s.to_owned(),
                network: net,
            });
        }
        Ok(net)
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// How many addresses the network spans (including network and broadcast).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `addr` lies in the network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.len) == self.base
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let len = self.len.min(other.len);
        self.base & mask(len) == other.base & mask(len)
    }

    /// The first usable host address: the conventional gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + u32::from(self.len < 31))
    }

    /// The `i`-th address of the network.
    fn nth(&self, i: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(i as u32))
    }

    /// `addr` with this network's prefix, as attachments store it (`10.0.1.5/24`).
    pub fn with_prefix(&self, addr: Ipv4Addr) -> String {
        format!("{addr}/{}", self.len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

impl FromStr for Cidr {
    type Err = IpamError;
    /// Parses `a.b.c.d/n`, clearing host bits.
    fn from_str(s: &str) -> Result<Self, IpamError> {
        let (addr, len) = parse_parts(s)?;
        Ok(Cidr::containing(addr, len))
    }
}

fn parse_parts(s: &str) -> Result<(Ipv4Addr, u8), IpamError> {
    let bad = || IpamError::BadCidr(s.to_owned());
    let (addr, len) = s.trim().split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    Ok((addr, len))
}

/// Parses an address in CIDR form (`10.0.1.5/24`) into the address and its network.
pub fn parse_interface(s: &str) -> Result<(Ipv4Addr, Cidr), IpamError> {
    let (addr, len) = parse_parts(s)?;
    Ok((addr, Cidr::containing(addr, len)))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// The addresses of one network: which are taken. The network and broadcast addresses are
/// never handed out.
#[derive(Debug, Clone)]
pub struct AddressSpace {
    subnet: Cidr,
    used: Vec<u64>,
}

impl AddressSpace {
    /// An empty space over `subnet`.
    pub fn new(subnet: Cidr) -> Self {
        let words = subnet.size().div_ceil(64) as usize;
        let mut space = AddressSpace {
            subnet,
            used: vec![0; words],
        };
        if subnet.len < 31 {
            space.mark(0);
            space.mark(subnet.size() - 1);
        }
        space
    }

    /// The subnet.
    pub fn subnet(&self) -> Cidr {
        self.subnet
    }

    fn mark(&mut self, i: u64) {
        self.used[(i / 64) as usize] |= 1 << (i % 64);
    }

    fn is_marked(&self, i: u64) -> bool {
        self.used[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Marks `addr` as taken; false if it lies outside the subnet or was already taken.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> bool {
        if !self.subnet.contains(addr) {
            return false;
        }
        let i = u64::from(u32::from(addr) - self.subnet.base);
        if self.is_marked(i) {
            return false;
        }
        self.mark(i);
        true
    }

    /// Takes the lowest free address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let size = self.subnet.size();
        for (w, word) in self.used.iter().enumerate() {
            if *word == u64::MAX {
                continue;
            }
            let i = w as u64 * 64 + u64::from(word.trailing_ones());
            if i < size {
                self.mark(i);
                return Ok(self.subnet.nth(i));
            }
        }
        Err(IpamError::Exhausted(self.subnet))
    }
}

/// Picks the first subnet of `len` bits inside `pools` that overlaps none of `taken`.
pub fn carve(pools: &[Cidr], len: u8, taken: &[Cidr]) -> Result<Cidr, IpamError> {
    for pool in pools.iter().filter(|p| p.len <= len) {
        let step = 1u64 << (32 - u32::from(len));
        let mut offset = 0u64;
        while offset < pool.size() {
            let candidate = Cidr {
                base: pool.base + offset as u32,
                len,
            };
            match taken.iter().find(|t| t.overlaps(&candidate)) {
                None => return Ok(candidate),
                // Skip past the whole taken network, which may be larger than one step.
                Some(t) => {
                    let end = u64::from(t.base) + t.size();
                    let next = (end - u64::from(pool.base)).div_ceil(step) * step;
                    offset = next.max(offset + step);
                }
            }
        }
    }
    Err(IpamError::PoolExhausted(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_formats() {
        assert_eq!(c("10.1.2.3/24").to_string(), "10.1.2.0/24");
        assert_eq!(c("10.0.0.0/8").size(), 1 << 24);
        assert!(matches!(
            Cidr::parse_strict("10.1.2.3/24"),
            Err(IpamError::HostBits { .. })
        ));
        for bad in ["10.0.0.0", "10.0.0.0/33", "fd00::/8", "x/8", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let (addr, net) = parse_interface("10.0.1.5/24").unwrap();
        assert_eq!((addr, net), ("10.0.1.5".parse().unwrap(), c("10.0.1.0/24")));
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(c("10.0.0.0/8").overlaps(&c("10.3.0.0/16")));
        assert!(c("10.3.0.0/16").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/24").overlaps(&c("10.0.1.0/24")));
        assert!(c("0.0.0.0/0").overlaps(&c("192.168.1.0/24")));
    }

    #[test]
    fn space_hands_out_each_host_once_and_reuses_released() {
        let mut s = AddressSpace::new(c("10.0.0.0/29"));
        assert!(s.reserve("10.0.0.1".parse().unwrap()));
        assert!(!s.reserve("10.0.0.1".parse().unwrap()));
        assert!(!s.reserve("10.0.1.1".parse().unwrap()));
        let got: Vec<_> = std::iter::from_fn(|| s.allocate().ok()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(
            got, want,
            "network, gateway and broadcast are never handed out"
        );
        assert!(matches!(s.allocate(), Err(IpamError::Exhausted(_))));
    }

    #[test]
    fn large_space_fills_past_the_first_word() {
        let mut s = AddressSpace::new(c("10.0.0.0/24"));
        for _ in 0..254 {
            s.allocate().unwrap();
        }
        assert!(s.allocate().is_err());
    }

    #[test]
    fn carve_skips_taken_subnets_and_respects_the_pool() {
        let pools = [c("10.0.0.0/8")];
        assert_eq!(carve(&pools, 24, &[]).unwrap(), c("10.0.0.0/24"));
        let taken = [c("10.0.0.0/24"), c("10.0.1.0/24")];
        assert_eq!(carve(&pools, 24, &taken).unwrap(), c("10.0.2.0/24"));
        // A user subnet larger than a step is skipped in one go.
        assert_eq!(
            carve(&pools, 24, &[c("10.0.0.0/16")]).unwrap(),
            c("10.1.0.0/24")
        );
        // A small pool runs out; the next pool is used.
        let pools = [c("192.168.0.0/23"), c("172.16.0.0/16")];
        let taken = [c("192.168.0.0/24"), c("192.168.1.0/24")];
        assert_eq!(carve(&pools, 24, &taken).unwrap(), c("172.16.0.0/24"));
        assert!(matches!(
            carve(&[c("192.168.0.0/24")], 24, &[c("192.168.0.0/16")]),
            Err(IpamError::PoolExhausted(24))
        ));
    }
}
