//! The `recoup` command line: one file per subcommand, each an `Args` struct and a `run`.
//!
//! Exit codes: 0 ok, 1 a check failed (an invalid proof, a broken invariant), 2 an error.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod direct;
pub mod ingest;
pub mod merkle;
pub mod run;
pub mod simulate;

/// Exit code when a check fails (invalid proof, broken invariant).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code on any error (bad input, I/O, database).
pub const EXIT_ERROR: u8 = 2;

/// Post-incident loss accounting, reimbursement policy and Merkle claim roots.
#[derive(Debug, Parser)]
#[command(name = "recoup", version, about)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// More log output on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars, no informational output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Machine-readable JSON on stdout (errors too, as `{"error": ...}`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Database URL or SQLite file (`sqlite:recoup.db`, `postgres://…`, or a path).
    /// Default: `recoup.db` in the working directory.
    #[arg(long, global = true, env = "RECOUP_DB")]
    pub db: Option<String>,
}

impl GlobalArgs {
    /// Whether progress bars may be drawn (not `--quiet`, not `--json`, stderr a terminal).
    pub fn progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }

    /// The database URL to use: `--db`, `RECOUP_DB`, or `sqlite:recoup.db`.
    pub fn db_url(&self) -> String {
        match &self.db {
            None => "sqlite:recoup.db".to_owned(),
            Some(s) if s.contains("://") || s.starts_with("sqlite:") => s.clone(),
            Some(path) => format!("sqlite:{path}"),
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on an incident manifest: losses, policy, claims, report, store.
    Run(run::RunArgs),
    /// Build, prove and verify Merkle claim trees.
    #[command(subcommand)]
    Merkle(merkle::MerkleCommand),
    /// Pull state diffs and call traces from a node into files a manifest can name.
    Ingest(ingest::IngestArgs),
    /// Governance-capture Monte Carlo over a model.
    Simulate(simulate::SimulateArgs),
}

/// Parses an address argument (mixed case must be EIP-55), for clap's `value_parser`.
fn parse_address_arg(s: &str) -> Result<crate::primitives::Address, String> {
    crate::primitives::parse_address(s).map_err(|e| e.to_string())
}

/// Where a subcommand's output paths are resolved against.
pub fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// Runs the parsed command line; returns the process exit code.
///
/// # Errors
/// Any error of the subcommand; `main` prints it and exits 2.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(a) => run::run(a, &cli.global).await,
        Command::Merkle(a) => merkle::run(a, &cli.global).await,
        Command::Ingest(a) => ingest::run(a, &cli.global).await,
        Command::Simulate(a) => simulate::run(a, &cli.global).await,
    }
}
