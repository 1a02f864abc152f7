//! Governance-capture risk simulation: the risk committee's Monte Carlo over a TOML model.
//!
//! A [`model::Model`] lists what a capture can drain (treasury, coverage pool) and the capture
//! channels (token votes, multisigs and councils, admin keys). [`simulate`] samples
//! P(capture by the horizon) per channel with Wilson intervals, the time-to-capture
//! distribution, the loss distribution (VaR and expected shortfall at 95/99%), cost of
//! corruption against profit from corruption, a tornado sweep and a convergence table, into a
//! [`SimReport`] whose JSON is byte-identical for the same model, seed and trials on any number
//! of threads. Where the model allows it the report also carries the exact P(capture).
//!
//! Sources: the model semantics of `shared/bench/radcad_reference.py` (multisig before token
//! vote within a day); cost of corruption vs profit from corruption as in EigenLayer's
//! cryptoeconomic-security definition; Wilson score interval (Wilson 1927).

pub mod engine;
pub mod model;
pub mod report;

pub use engine::ChannelKind;
pub use model::{LoadedModel, Model, SweepSpec};
pub use report::{to_markdown, SimReport};

use std::path::PathBuf;

/// Errors of the simulation module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The model file cannot be read.
    #[error("cannot read model {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema (unknown key, wrong type).
    #[error("{}:{line}:{column}: key `{key}`: {message}", file.display())]
    Toml {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// Dotted key at the error.
        key: String,
        /// The parser's message (expected vs got).
        message: String,
    },
    /// A value out of range.
    #[error("{}: key `{key}` {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Dotted key.
        key: String,
        /// What is wrong, with the value found.
        message: String,
    },
    /// A sweep names a parameter the model does not have.
    #[error("{}: sweep parameter `{param}`: {reason}", file.display())]
    UnknownParam {
        /// The file.
        file: PathBuf,
        /// The dotted key asked for.
        param: String,
        /// Why it cannot be swept.
        reason: String,
    },
    /// A `--sweep` argument that is not `param=lo..hi`.
    #[error("bad sweep `{spec}`: {reason}")]
    BadSweep {
        /// The text given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// Zero trials asked for.
    #[error("trials must be at least 1")]
    NoTrials,
}

/// How to run a simulation.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Number of Monte Carlo trials (runs).
    pub trials: u64,
    /// Base seed; trial `i` of channel `c` uses a stream derived from (seed, i, c).
    pub seed: u64,
    /// Sensitivity sweeps; empty = the model's own `[[sweep]]` list.
    pub sweeps: Vec<SweepSpec>,
    /// Trials per sweep point (default: `trials`).
    pub sweep_trials: Option<u64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            trials: 100_000,
            seed: 1,
            sweeps: Vec::new(),
            sweep_trials: None,
        }
    }
}

/// Runs the Monte Carlo on the current rayon pool and builds the report.
///
/// `progress`, if given, is called with the number of trials finished after each block of
/// trials (main run and sweep points alike); the total is [`total_trials`].
///
/// # Errors
/// [`SimError::NoTrials`]; [`SimError::UnknownParam`] / [`SimError::Invalid`] for a sweep over
/// a parameter the model lacks or to an invalid value.
pub fn simulate(
    model: &LoadedModel,
    opts: &SimOptions,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<SimReport, SimError> {
    if opts.trials == 0 || opts.sweep_trials == Some(0) {
        return Err(SimError::NoTrials);
    }
    let sweeps = if opts.sweeps.is_empty() {
        model.model.sweep.clone()
    } else {
        opts.sweeps.clone()
    };
    // Build every variant first so a bad sweep fails before any work.
    let mut variants = Vec::new();
    for s in &sweeps {
        let lo = model.with_param(&s.param, s.lo)?;
        let hi = model.with_param(&s.param, s.hi)?;
        variants.push((s.clone(), lo, hi));
    }
    let (compiled, out) = engine::run_model(model, opts.seed, opts.trials, progress);
    let sweep_trials = opts.sweep_trials.unwrap_or(opts.trials);
    let mut points = Vec::new();
    for (s, lo, hi) in &variants {
        let (_, olo) = engine::run_model(lo, opts.seed, sweep_trials, progress);
        let (_, ohi) = engine::run_model(hi, opts.seed, sweep_trials, progress);
        points.push(report::SweepPoint::new(
            s,
            model.param_value(&s.param),
            (&lo.model, &olo),
            (&hi.model, &ohi),
            sweep_trials,
        ));
    }
    Ok(report::build(model, opts, &compiled, &out, points))
}

/// Trials [`simulate`] will run for these options (for sizing a progress bar).
pub fn total_trials(model: &LoadedModel, opts: &SimOptions) -> u64 {
    let n = if opts.sweeps.is_empty() {
        model.model.sweep.len()
    } else {
        opts.sweeps.len()
    } as u64;
    opts.trials + 2 * n * opts.sweep_trials.unwrap_or(opts.trials)
}
