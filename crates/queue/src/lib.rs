//! The queue room: the durable spool, the scheduler that retries and bounces, and
//! outbound delivery (routes, MX, smarthost, TLS policy with MTA-STS and DANE, DSN). It knows nothing of the
//! checks that decided to accept a message.

pub mod client;
mod client_error;
pub mod dane;
pub mod delivery;
pub mod dsn;
pub mod metrics;
pub mod mta_sts;
pub mod mx;
pub mod probe;
pub mod scheduler;
pub mod spool;
mod tls;
pub mod tls_policy;
pub mod tlsrpt;

pub use delivery::{Deliverer, Destination, RouteHost, Router};
pub use scheduler::{Journal, Queue, QueueSettings};
