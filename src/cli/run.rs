//! `recoup run`: the pipeline.

use super::GlobalArgs;

/// Arguments of `recoup run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs `recoup run`.
///
/// # Errors
/// Not implemented yet.
pub async fn run(_args: RunArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::bail!("recoup run is not implemented yet")
}
