#![doc = include_str!("../README.md")]
// Errors carry file, line, column, key and both sides of a conflict so that a reader can
// act on them; they are built once, on the cold path, so their size does not matter.
#![allow(clippy::result_large_err)]
// The one exception is `primitives::keccak`: the CPU-feature dispatch to its vector builds
// and the reinterpretation of its state as vector registers, each with its SAFETY reason.
#![deny(unsafe_code)]

pub mod claims;
pub mod cli;
pub mod ingest;
pub mod loss;
pub mod manifest;
mod par;
pub mod pipeline;
pub mod policy;
pub mod primitives;
pub mod report;
pub mod sim;
pub mod store;
pub mod timing;
