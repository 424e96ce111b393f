//! What the message path needs to know about whoever hands a message in, whatever the
//! protocol: the client's address, the name it gave, the user it authenticated as and
//! whether the channel was encrypted. SMTP fills it from its session; collection
//! (POP3/IMAP) and a re-scan from the console fill it from what they know.

use std::net::{IpAddr, SocketAddr};

/// The client of one connection, fixed for its life.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The socket address, for logs.
    pub addr: SocketAddr,
    /// The address the checks use: IPv4-mapped IPv6 shown as IPv4.
    pub ip: IpAddr,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            ip: crate::policy::canonical_ip(addr.ip()),
        }
    }
}

/// What the client has said about itself so far; it can change within a connection
/// (EHLO again, STARTTLS, AUTH), so it is handed to each step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    /// The HELO/EHLO name, empty when none was given.
    pub helo: &'a str,
    /// The authenticated user, if any.
    pub auth_user: Option<&'a str>,
    /// The channel is encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
}
