//! Helpers for the gateway's integration tests: a real [`gateway::Harness`] (a `Gateway`
//! on a temporary spool, queue and store), a loopback DNS server ([`dns`]), a real clamd
//! ([`clamd`], shared with the filter crate's clamd client tests), an SMTP client driving
//! the real session and adapter ([`smtp`]) and what the gateway logs ([`trace`]).

#![allow(dead_code)]

#[path = "../../../filter/tests/support/clamd.rs"]
pub mod clamd;
pub mod dns;
pub mod gateway;
pub mod smtp;
pub mod trace;
