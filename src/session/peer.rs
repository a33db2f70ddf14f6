//! Where a connection comes from: the transport it arrived on and the
//! client's address, as the log and the Live Inspector show them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// MQTT over TCP (`listen`, 1883).
    Tcp,
    /// MQTT over TLS (`tls_listen`, 8883).
    Tls,
    /// MQTT over WebSocket (`ws_listen`, 8083).
    Ws,
    /// MQTT over WebSocket over TLS (`wss_listen`, 8084).
    Wss,
}

impl Transport {
    /// The name the Live Inspector shows: `tcp`, `tls`, `ws` or `wss`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// A connection's origin. Shown (`Display`) as the client's address: the
/// one a trusted proxy forwarded, else the socket's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The socket's remote address (a proxy's, when there is one).
    pub(crate) socket: SocketAddr,
    /// The client's address from `X-Forwarded-For`, believed only from
    /// `[mqtt] ws_trusted_proxies`.
    pub(crate) forwarded: Option<IpAddr>,
    pub(crate) transport: Transport,
}

impl Peer {
    /// A client connected straight to the listener.
    pub(crate) fn direct(socket: SocketAddr, transport: Transport) -> Peer {
        Peer {
            socket,
            forwarded: None,
            transport,
        }
    }

    /// The proxy's address, when the client's came forwarded by it.
    pub(crate) fn proxy(&self) -> Option<SocketAddr> {
        self.forwarded.map(|_| self.socket)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.forwarded {
            Some(ip) => write!(f, "{ip}"),
            None => write!(f, "{}", self.socket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_address_is_shown_instead_of_the_proxy() {
        let socket: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
        let direct = Peer::direct(socket, Transport::Ws);
        assert_eq!(direct.to_string(), "127.0.0.1:4000");
        assert_eq!(direct.proxy(), None);
        let via = Peer {
            forwarded: Some("203.0.113.7".parse().expect("an address")),
            ..direct
        };
        assert_eq!(via.to_string(), "203.0.113.7");
        assert_eq!(via.proxy(), Some(socket));
        assert_eq!(via.transport.name(), "ws");
    }
}
