//! `recoup simulate`: simulation.

use super::GlobalArgs;

/// Arguments of `recoup simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

/// Runs `recoup simulate`.
///
/// # Errors
/// Not implemented yet.
pub async fn run(_args: SimulateArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::bail!("recoup simulate is not implemented yet")
}
