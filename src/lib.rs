#![doc = include_str!("../README.md")]

pub mod claims;
pub mod cli;
pub mod ingest;
pub mod loss;
pub mod manifest;
pub mod pipeline;
pub mod policy;
pub mod primitives;
pub mod report;
pub mod sim;
pub mod store;
