//! Ingest: reading what a treasury team holds after an incident into plain rows.
//!
//! `files` reads CSV inputs (balances, loss lists, netting, holder and cover lists).
//! `trace` reads node state diffs (geth `prestateTracer` diffMode, Parity `stateDiff`,
//! Tenderly `stateChanges`), decodes ERC-20 balances and vault share prices from storage,
//! and pulls those traces from a node.

pub mod files;
pub mod trace;
