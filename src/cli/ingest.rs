//! `recoup ingest`: pull state diffs, call traces, receipts and headers (and, with
//! `--vault`, vault totals by `eth_call`) from a node into files an incident manifest then
//! names, so every run can be repeated offline.

use super::{parse_address_arg, GlobalArgs};
use crate::ingest::trace::rpc::{self, FetchOptions, Selection};
use crate::primitives::{Address, B256};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `recoup ingest`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["tx", "blocks"])))]
pub struct IngestArgs {
    /// HTTP JSON-RPC endpoint of a node that serves `debug_trace*` (geth, reth, anvil, erigon).
    #[arg(long)]
    pub rpc_url: String,
    /// Transaction hashes to trace (repeatable); ordered by block and index.
    #[arg(long, num_args = 1..)]
    pub tx: Vec<B256>,
    /// Inclusive block range `FROM..TO` (every transaction of each block).
    #[arg(long, value_parser = parse_range)]
    pub blocks: Option<(u64, u64)>,
    /// Directory to write into (created if needed).
    #[arg(long, default_value = "traces")]
    pub out: PathBuf,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Retries per request after a transport error or timeout.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Skip callTracer traces (holder candidates from call frames and logs).
    #[arg(long)]
    pub no_call_traces: bool,
    /// A vault (ERC-4626) whose `totalAssets()` and `totalSupply()` are called at the block
    /// before the window's first block and at its last block, into `vault_totals.json`
    /// (repeatable). A manifest's `[[state_diff.vaults]]` takes them with `totals`.
    #[arg(long = "vault", value_name = "ADDRESS", value_parser = parse_address_arg)]
    pub vaults: Vec<Address>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected FROM..TO, got {s:?}"))?;
    let p = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|e| format!("{x:?} in {s:?}: {e}"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if a > b {
        return Err(format!("{s:?}: FROM is after TO"));
    }
    Ok((a, b))
}

/// Runs `recoup ingest`: fetches, checks every trace reads back, calls the vaults, then
/// writes all files at once (nothing is written when any request fails).
///
/// # Errors
/// A node request that fails after its retries (a vault call that reverts too), an
/// unreadable answer, `--vault` with a window starting at block 0, an I/O error.
pub async fn run(args: IngestArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let sel = match args.blocks {
        Some((from, to)) => Selection::Blocks { from, to },
        None => Selection::Txs(args.tx.clone()),
    };
    let opts = FetchOptions {
        rpc_url: args.rpc_url.clone(),
        timeout: Duration::from_secs(args.timeout),
        retries: args.retries,
        call_traces: !args.no_call_traces,
        vaults: args.vaults.clone(),
    };
    let bar = if global.progress() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} requests ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message("tracing");
        Some(b)
    } else {
        None
    };
    let fetched = rpc::fetch(&opts, &sel, |done, total| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    })
    .await
    .context("recoup ingest")?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let written = rpc::write_all(&args.out, &fetched.files, args.force)
        .context("recoup ingest: writing files")?;
    let dir = args.out.display().to_string();
    let snippet = rpc::manifest_snippet(&fetched, &dir);
    if global.json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!(
            "{}",
            serde_json::json!({ "chain_id": fetched.chain_id, "files": files, "manifest": snippet })
        );
    } else if !global.quiet {
        for p in &written {
            eprintln!("wrote {}", p.display());
        }
        println!("{snippet}");
    }
    Ok(0)
}
