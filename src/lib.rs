#![doc = include_str!("../README.md")]

pub mod cli;
pub mod loss;
pub mod primitives;
pub mod sim;
