//! IP prefixes (`10.0.0.0/24`, `2001:db8::/32`, or a single address) for
//! matching RADIUS clients by source address.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| format!("`{s}` is not an IP address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0–{max}"))?,
        };
        let c = Cidr { addr, prefix };
        if c.network() != addr {
            return Err(format!("`{s}` has host bits set (did you mean {}/{prefix}?)", c.network()));
        }
        Ok(c)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    fn mask_bits(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 { 0 } else { (!0u128 >> (128 - width)) & !((1u128 << (width - self.prefix as u32)) - 1) }
    }

    fn bits(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(v) => u32::from(v) as u128,
            IpAddr::V6(v) => u128::from(v),
        }
    }

    fn network(&self) -> IpAddr {
        let b = Self::bits(self.addr) & self.mask_bits();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(b.into()),
        }
    }

    /// Whether `ip` is inside the prefix. IPv4-mapped IPv6 source addresses
    /// (from dual-stack sockets) match IPv4 prefixes.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        Self::bits(ip) & self.mask_bits() == Self::bits(self.addr) & self.mask_bits()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(c.contains("10.0.0.7".parse().unwrap()));
        assert!(!c.contains("10.0.1.7".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert_eq!(Cidr::parse("192.0.2.1").unwrap().prefix_len(), 32);
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/24").unwrap_err().contains("host bits"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
    }
}
