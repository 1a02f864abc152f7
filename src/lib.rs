#![doc = include_str!("../README.md")]

pub mod claims;
pub mod cli;
pub mod loss;
pub mod primitives;
