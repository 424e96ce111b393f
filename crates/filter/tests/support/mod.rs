//! Helpers shared by several test crates of this folder (`clamd.rs` also by the gateway's
//! message cases).

pub mod clamd;
