//! The message path of Portcullis as a library, for every way mail comes in (SMTP today;
//! collection from remote mailboxes and a re-scan from the console later):
//!
//! submission ([`Client`], envelope) -> [`Transaction`] (MAIL/RCPT decisions) -> scan
//! (checks and rules, `scan`) -> disposition (one function per outcome) -> actions in one
//! order ([`actions`]) -> the queue; plus locally made mail ([`inject`]) and the reports
//! about other domains' mail ([`reports`], [`dmarc_reports`], [`tlsrpt`]).
//!
//! It knows nothing of sockets, HTTP or the command line: the SMTP listener is a thin
//! adapter ([`smtp::SmtpHandler`]); [`node::Node`] builds a running gateway from its
//! settings, and the binary loads those settings and starts it.

pub mod actions;
pub mod backup;
pub mod batcher;
pub mod callout;
pub mod checks;
pub mod config;
pub mod control;
pub mod dates;
pub mod digest;
mod disposition;
pub mod dmarc_reports;
pub mod filtering;
pub mod inject;
pub mod logwriter;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod psl;
pub mod reports;
pub mod retention;
mod scan;
pub mod smtp;
pub mod submission;
pub mod tls;
pub mod tlsrpt;
pub mod transaction;
pub mod users;

pub use inject::{InjectError, Injected, Injector};
pub use logwriter::log_record;
pub use submission::{Client, Peer};
pub use transaction::{Gateway, Transaction};
