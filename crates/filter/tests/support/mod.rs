//! Helpers shared by several test crates of this folder.

pub mod clamd;
