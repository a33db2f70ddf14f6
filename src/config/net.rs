//! Network values of `config.toml` that are more than an address: IP
//! ranges (`ws_trusted_proxies`), WebSocket origins and paths.

use std::fmt;
use std::net::IpAddr;

/// An IP address or a CIDR range (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`; the bits past the prefix must
    /// be zero (`10.1.0.0/8` is refused: it is probably a typo).
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!("invalid IP range {text:?}: {why}; expected an address (\"10.0.0.1\", \"::1\") or a CIDR range (\"10.0.0.0/8\", \"fd00::/8\")")
        };
        let (addr, prefix) = match text.split_once('/') {
            None => (text, None),
            Some((addr, prefix)) => (addr, Some(prefix)),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix must be 0 to {max}")))?,
        };
        let net = IpNet { addr, prefix };
        if net.masked(addr) != bits(addr) {
            return Err(bad("bits are set past the prefix"));
        }
        Ok(net)
    }

    /// The address's bits under this range's mask, as a u128.
    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            u128::MAX << host_bits
        };
        bits(ip) & mask
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers) counts
    /// as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == bits(self.addr)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Checks a `ws_path`: starts with `/`, printable ASCII without spaces,
/// `?` or `#` (the query is not part of the path compared).
pub(super) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with \"/\", like \"/mqtt\""));
    }
    if path.len() > 256 {
        return Err("longer than 256 characters".to_string());
    }
    if let Some(c) = path
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '?' | '#'))
    {
        return Err(format!(
            "{path:?} holds {c:?}: a path is printable ASCII without spaces, '?' or '#'"
        ));
    }
    Ok(())
}

/// Checks one of `ws_allowed_origins`: `SCHEME://HOST[:PORT]` as a browser
/// sends it (no path, no trailing slash), or `null` (a `file://` page).
pub(super) fn check_origin(origin: &str) -> Result<(), String> {
    let origin = origin.trim();
    if origin == "null" {
        return Ok(());
    }
    let bad = || {
        format!("invalid origin {origin:?}: expected SCHEME://HOST[:PORT] as a browser sends it, like \"https://dash.example.com\" or \"http://127.0.0.1:8080\"")
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(bad());
    }
    if rest.is_empty() || rest.contains('/') || !rest.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!net.contains(ip("::1")));
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let all6 = IpNet::parse("::/0").unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert_eq!(net.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_ranges_say_why() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/33",
            "::/129",
            "10.1.0.0/8",
            "x/8",
            "10.0.0.0/-1",
        ] {
            let err = IpNet::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid IP range"), "{bad}: {err}");
        }
    }

    #[test]
    fn paths_and_origins() {
        assert!(check_path("/mqtt").is_ok());
        assert!(check_path("/").is_ok());
        for bad in ["mqtt", "/a b", "/mqtt?x=1", "/a#b", ""] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "https://dash.example.com",
            "http://127.0.0.1:8080",
            "null",
            "app://x",
        ] {
            assert!(check_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "dash.example.com",
            "https://x/",
            "https://x/path",
            "https://",
            "://x",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
