//! `recoup merkle`: build, prove and verify claim trees.

use super::GlobalArgs;

/// Subcommands of `recoup merkle`.
#[derive(Debug, clap::Subcommand)]
pub enum MerkleCommand {
    /// Build a tree from a claims CSV.
    Build {},
}

/// Runs `recoup merkle …`.
///
/// # Errors
/// Not implemented yet.
pub async fn run(_cmd: MerkleCommand, _global: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::bail!("recoup merkle is not implemented yet")
}
