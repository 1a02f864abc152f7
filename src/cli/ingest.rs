//! `recoup ingest`: node ingest.

use super::GlobalArgs;

/// Arguments of `recoup ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {}

/// Runs `recoup ingest`.
///
/// # Errors
/// Not implemented yet.
pub async fn run(_args: IngestArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::bail!("recoup ingest is not implemented yet")
}
