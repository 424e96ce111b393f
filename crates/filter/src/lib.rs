//! The checks room: every check a connection or message goes through, each producing
//! findings (`finding`), and the rules that turn findings into one verdict. It knows
//! nothing of sockets or the queue.

pub mod attachments;
pub mod auth;
pub mod bayes;
pub mod clamd;
pub mod content;
pub mod dmarc_report;
pub mod dnsbl;
pub mod external;
pub mod finding;
pub mod greylist;
pub mod heuristics;
pub mod lexical;
pub mod org_domain;
pub mod rules;
pub mod sign;
pub mod spam;
pub mod spf;
pub mod suffix;
pub mod text;
pub mod token;
