//! `recoup simulate`: governance-capture Monte Carlo over a model file.

use super::GlobalArgs;
use crate::sim::{self, LoadedModel, SimOptions, SweepSpec};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `recoup simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Governance model (TOML), e.g. `models/governance/oz_governor_default.toml`.
    pub model: PathBuf,
    /// Monte Carlo trials (runs).
    #[arg(long, default_value_t = 100_000)]
    pub trials: u64,
    /// Base seed; the same seed gives byte-identical reports on any number of threads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sensitivity sweep `param=lo..hi` over a dotted model key (repeatable), e.g.
    /// `token_vote.dao.quorum=0.02..0.08`. Default: the model's `[[sweep]]` list.
    #[arg(long = "sweep", value_parser = parse_sweep)]
    pub sweeps: Vec<SweepSpec>,
    /// Trials per sweep point (default: --trials).
    #[arg(long)]
    pub sweep_trials: Option<u64>,
    /// Ignore the model's own `[[sweep]]` list (no tornado unless --sweep is given).
    #[arg(long)]
    pub no_sweep: bool,
    /// Write `<model>.sim.json` and `<model>.sim.md` into this directory (atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Do not store the report in the database (`--db`).
    #[arg(long)]
    pub no_store: bool,
}

fn parse_sweep(s: &str) -> Result<SweepSpec, String> {
    SweepSpec::parse(s).map_err(|e| e.to_string())
}

/// Runs `recoup simulate`: prints a summary (or the JSON report with `--json`), writes the
/// JSON and Markdown reports into `--out`, and reports throughput on stderr.
///
/// # Errors
/// Unreadable or invalid model (naming file and key), a sweep over a missing parameter, a
/// thread pool that cannot start, or a report that cannot be written.
pub async fn run(args: SimulateArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let mut model = LoadedModel::from_file(&args.model)?;
    if args.no_sweep {
        model.model.sweep.clear();
    }
    let opts = SimOptions {
        trials: args.trials,
        seed: args.seed,
        sweeps: args.sweeps.clone(),
        sweep_trials: args.sweep_trials,
    };
    let show_progress = global.progress();
    let quiet = global.quiet;
    let threads = args.threads;
    let total = sim::total_trials(&model, &opts);
    let (report, elapsed) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let bar = if show_progress {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} simulate [{bar:40}] {human_pos}/{human_len} trials ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(b)
        } else {
            None
        };
        let tick = |n: u64| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        };
        let progress: Option<&(dyn Fn(u64) + Sync)> = if bar.is_some() { Some(&tick) } else { None };
        let t0 = Instant::now();
        let report = match threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .context("cannot start the worker threads")?
                .install(|| sim::simulate(&model, &opts, progress)),
            None => sim::simulate(&model, &opts, progress),
        }?;
        let elapsed = t0.elapsed().as_secs_f64();
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        Ok((report, elapsed))
    })
    .await
    .context("simulation thread panicked")??;

    let json = serde_json::to_string_pretty(&report)?;
    if !args.no_store {
        let store = crate::store::Store::open(&global.db_url()).await?;
        store
            .save_simulation(
                &report.model_hash,
                &report.model_name,
                report.seed,
                report.trials,
                &json,
            )
            .await?;
    }
    if let Some(dir) = &args.out {
        let stem = args
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        write_atomic(&dir.join(format!("{stem}.sim.json")), json.as_bytes())?;
        write_atomic(
            &dir.join(format!("{stem}.sim.md")),
            sim::to_markdown(&report).as_bytes(),
        )?;
    }
    if !quiet {
        let swept = 2 * report.sensitivity.len() as u64 * args.sweep_trials.unwrap_or(args.trials);
        eprintln!(
            "simulated {} trials (+{} in sweeps) in {:.6} s: {:.0} trials/s",
            report.trials,
            swept,
            elapsed,
            (report.trials + swept) as f64 / elapsed
        );
    }
    let mut out = std::io::stdout().lock();
    let res = if global.json {
        writeln!(out, "{json}")
    } else {
        let p = &report.p_capture;
        writeln!(
            out,
            "{}: P(capture by day {}) = {:.6} ({} of {}), Wilson 99% [{:.6}, {:.6}]{}\nexpected loss ${}, VaR99 ${}, ES99 ${}\nmodel hash {}",
            report.model_name,
            report.horizon_days,
            p.p,
            p.count,
            p.trials,
            p.wilson99[0],
            p.wilson99[1],
            report
                .exact_p_capture
                .map_or(String::new(), |e| format!(", exact {e:.6}")),
            report.loss.expected_usd,
            report.loss.var99_usd,
            report.loss.es99_usd,
            report.model_hash
        )
    };
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(0)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees half a report.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
