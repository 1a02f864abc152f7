#![doc = include_str!("../README.md")]

pub mod cli;
pub mod loss;
pub mod policy;
pub mod primitives;
