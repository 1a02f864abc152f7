//! Ingest: reading what a treasury team holds after an incident into plain rows.
//!
//! `files` reads CSV inputs (balances, loss lists, netting, holder and cover lists).

pub mod files;
