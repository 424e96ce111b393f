//! The checks room: every check a connection or message goes through, each producing a
//! finding, and the policy that turns findings into one verdict. It knows nothing of
//! sockets or the queue. Today: mail authentication (SPF, DKIM, ARC, DMARC).

pub mod auth;
