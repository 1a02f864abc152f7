#![doc = include_str!("../README.md")]

pub mod cli;
pub mod ingest;
pub mod loss;
pub mod manifest;
pub mod primitives;
pub mod store;
