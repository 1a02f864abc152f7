//! The one integration-test binary: a module per area.

mod bad_input;
mod chain;
mod claims;
mod conformance;
mod pipeline;
mod policy;
mod sim;
mod store;
mod support;
mod trace;
