//! The simulation report: what the risk committee reads, as JSON (serde) and Markdown.
//!
//! Every number is derived from integer counts after the run, so the JSON is byte-identical
//! for the same model, seed and trials on any number of threads. Money is USD `Decimal`
//! (serialised as strings); probabilities are f64.

use super::engine::{ChannelKind, Compiled, RunOutput, BLOCK};
use super::model::{History, LoadedModel, Model, SweepSpec};
use super::SimOptions;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use std::fmt::Write as _;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for a two-sided 99% interval.
pub const Z99: f64 = 2.575_829_303_548_901;

/// The result of [`super::simulate`], ready to store and render.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// `name` of the model.
    pub model_name: String,
    /// `0x` + hex keccak-256 of the canonical model TOML (sorted keys, no comments), followed
    /// by `seed=…`, `trials=…` and one `sweep=param=lo..hi` line per sweep.
    pub model_hash: String,
    /// `recoup-sim/<crate version>`.
    pub engine: String,
    /// `description` of the model.
    pub description: Option<String>,
    /// Base seed.
    pub seed: u64,
    /// Trials (runs) of the main simulation.
    pub trials: u64,
    /// Horizon, days.
    pub horizon_days: f64,
    /// Step, days.
    pub step_days: f64,
    /// Number of steps in the horizon.
    pub steps: u32,
    /// Treasury plus coverage pool, USD.
    pub value_at_risk_usd: Decimal,
    /// P(capture by the horizon) through any channel.
    pub p_capture: Proportion,
    /// The exact P(capture by the horizon), when every channel has a closed form
    /// (1 − Π(1 − p_channel), channels being independent).
    pub exact_p_capture: Option<f64>,
    /// Per channel, in the within-day order.
    pub channels: Vec<ChannelReport>,
    /// When captures happen.
    pub time_to_capture: TimeToCapture,
    /// Loss distribution over all trials.
    pub loss: LossReport,
    /// Cost of corruption against profit from corruption.
    pub corruption: Corruption,
    /// Tornado: P(capture) and expected loss at each swept parameter's low and high value,
    /// largest swing first.
    pub sensitivity: Vec<SweepPoint>,
    /// Interval width against trials.
    pub convergence: Vec<ConvergencePoint>,
    /// The historical incident the model reproduces, if any.
    pub history: Option<History>,
}

/// A proportion with its Wilson score intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    /// Successes.
    pub count: u64,
    /// Trials.
    pub trials: u64,
    /// count / trials.
    pub p: f64,
    /// Wilson 95% interval.
    pub wilson95: [f64; 2],
    /// Wilson 99% interval.
    pub wilson99: [f64; 2],
}

impl Proportion {
    /// `count` of `trials`, with Wilson intervals.
    pub fn new(count: u64, trials: u64) -> Proportion {
        Proportion {
            count,
            trials,
            p: if trials == 0 {
                0.0
            } else {
                count as f64 / trials as f64
            },
            wilson95: wilson(count, trials, Z95),
            wilson99: wilson(count, trials, Z99),
        }
    }
}

/// Wilson score interval for `k` successes in `n` trials at normal quantile `z`.
pub fn wilson(k: u64, n: u64, z: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let n_f = n as f64;
    let p = k as f64 / n_f;
    let d = 1.0 + z * z / n_f;
    let c = (p + z * z / (2.0 * n_f)) / d;
    let h = z * (p * (1.0 - p) / n_f + z * z / (4.0 * n_f * n_f)).sqrt() / d;
    [(c - h).max(0.0), (c + h).min(1.0)]
}

/// One capture channel's results.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// Name in the model.
    pub name: String,
    /// Kind.
    pub kind: ChannelKind,
    /// P(this channel captures by the horizon), on its own.
    pub p_capture: Proportion,
    /// Share of trials whose first capture came through this channel.
    pub p_first: Proportion,
    /// Exact P(this channel captures by the horizon), when it has a closed form.
    pub exact_p_capture: Option<f64>,
    /// USD this channel drains on capture (profit from corruption through it).
    pub loss_on_capture_usd: Decimal,
    /// Cheapest cost of a capture through this channel, USD, when known.
    pub cost_of_corruption_usd: Option<Decimal>,
}

/// Time-to-capture distribution.
#[derive(Debug, Clone, Serialize)]
pub struct TimeToCapture {
    /// First captures per step; index 0 is step 1 (day `step_days`).
    pub histogram: Vec<u64>,
    /// Mean capture day among captures.
    pub mean_days: Option<f64>,
    /// 5th percentile of the capture day among captures.
    pub p05_days: Option<f64>,
    /// Median capture day among captures.
    pub median_days: Option<f64>,
    /// 95th percentile of the capture day among captures.
    pub p95_days: Option<f64>,
    /// P(no capture by day) at ten points of the horizon.
    pub survival: Vec<SurvivalPoint>,
}

/// A point of the survival curve.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SurvivalPoint {
    /// Day.
    pub day: f64,
    /// P(no capture by this day).
    pub p_no_capture: f64,
}

/// Loss distribution, USD, over all trials (a trial without capture loses 0).
///
/// # Rounding
/// Expected loss and expected shortfall divide by a trial count; they are rounded to cents,
/// half to even. VaR is one of the losses, exact.
#[derive(Debug, Clone, Serialize)]
pub struct LossReport {
    /// Mean loss.
    pub expected_usd: Decimal,
    /// 95% value at risk: the smallest loss x with P(loss ≤ x) ≥ 0.95.
    pub var95_usd: Decimal,
    /// 95% expected shortfall: mean of the worst 5% of trials.
    pub es95_usd: Decimal,
    /// 99% value at risk.
    pub var99_usd: Decimal,
    /// 99% expected shortfall.
    pub es99_usd: Decimal,
    /// Largest loss seen.
    pub max_usd: Decimal,
}

/// Cost of corruption (CoC) against profit from corruption (PfC).
#[derive(Debug, Clone, Serialize)]
pub struct Corruption {
    /// Largest value any channel reaches, USD.
    pub profit_from_corruption_usd: Decimal,
    /// Channel with the lowest known cost of corruption.
    pub cheapest_channel: Option<String>,
    /// Its cost, USD.
    pub cost_of_corruption_usd: Option<Decimal>,
    /// CoC / PfC of the cheapest channel against what that channel reaches.
    pub coc_over_pfc: Option<f64>,
    /// Whether CoC exceeds PfC (robust security); `None` when no cost is known.
    pub robust: Option<bool>,
}

/// One bar of the tornado.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Dotted key.
    pub param: String,
    /// Value in the model (absent = schema default).
    pub base: Option<f64>,
    /// Low value.
    pub lo: f64,
    /// High value.
    pub hi: f64,
    /// P(capture) at the low value.
    pub p_lo: f64,
    /// P(capture) at the high value.
    pub p_hi: f64,
    /// Expected loss at the low value, USD.
    pub expected_loss_lo_usd: Decimal,
    /// Expected loss at the high value, USD.
    pub expected_loss_hi_usd: Decimal,
    /// |p_hi − p_lo|.
    pub swing: f64,
}

impl SweepPoint {
    pub(crate) fn new(
        s: &SweepSpec,
        base: Option<f64>,
        lo: (&Model, &RunOutput),
        hi: (&Model, &RunOutput),
        trials: u64,
    ) -> SweepPoint {
        let p = |o: &RunOutput| o.acc.captures as f64 / trials as f64;
        let el = |(m, o): (&Model, &RunOutput)| {
            let c = Compiled::new(m);
            expected_loss(&c, o, trials)
        };
        SweepPoint {
            param: s.param.clone(),
            base,
            lo: s.lo,
            hi: s.hi,
            p_lo: p(lo.1),
            p_hi: p(hi.1),
            expected_loss_lo_usd: el(lo),
            expected_loss_hi_usd: el(hi),
            swing: (p(hi.1) - p(lo.1)).abs(),
        }
    }
}

/// P(capture) after the first `trials` trials.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConvergencePoint {
    /// Trials so far.
    pub trials: u64,
    /// P(capture) estimate.
    pub p: f64,
    /// Half-width of the Wilson 95% interval.
    pub half_width95: f64,
    /// Half-width of the Wilson 99% interval.
    pub half_width99: f64,
}

fn round_cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// # Rounding
/// Σ count × loss / trials, rounded to cents half to even.
fn expected_loss(c: &Compiled, o: &RunOutput, trials: u64) -> Decimal {
    let mut total = Decimal::ZERO;
    for (m, &k) in c.meta.iter().zip(&o.acc.first) {
        total += m.loss_usd * Decimal::from(k);
    }
    round_cents(total / Decimal::from(trials))
}

/// Loss atoms (loss, trials) sorted by loss, zero included.
fn atoms(c: &Compiled, o: &RunOutput, trials: u64) -> Vec<(Decimal, u64)> {
    let mut v: Vec<(Decimal, u64)> = vec![(Decimal::ZERO, trials - o.acc.captures)];
    for (m, &k) in c.meta.iter().zip(&o.acc.first) {
        if k > 0 {
            v.push((m.loss_usd, k));
        }
    }
    v.sort();
    let mut merged: Vec<(Decimal, u64)> = Vec::new();
    for (l, k) in v {
        match merged.last_mut() {
            Some((ll, kk)) if *ll == l => *kk += k,
            _ => merged.push((l, k)),
        }
    }
    merged
}

/// VaR at `pct` percent: smallest x with cumulative count × 100 ≥ pct × trials.
fn var(atoms: &[(Decimal, u64)], trials: u64, pct: u64) -> Decimal {
    let mut cum = 0u128;
    for (l, k) in atoms {
        cum += *k as u128;
        if cum * 100 >= pct as u128 * trials as u128 {
            return *l;
        }
    }
    atoms.last().map_or(Decimal::ZERO, |a| a.0)
}

/// Expected shortfall at `pct` percent: mean of the worst (100 − pct)% of trials, the boundary
/// atom taken fractionally.
///
/// # Rounding
/// The tail mean is rounded to cents, half to even.
fn es(atoms: &[(Decimal, u64)], trials: u64, pct: u64) -> Decimal {
    let tail = Decimal::from(trials) * Decimal::from(100 - pct) / Decimal::from(100);
    if tail.is_zero() {
        return Decimal::ZERO;
    }
    let mut rem = tail;
    let mut sum = Decimal::ZERO;
    for (l, k) in atoms.iter().rev() {
        let take = Decimal::from(*k).min(rem);
        sum += *l * take;
        rem -= take;
        if rem.is_zero() {
            break;
        }
    }
    round_cents(sum / tail)
}

pub(crate) fn build(
    m: &LoadedModel,
    opts: &SimOptions,
    c: &Compiled,
    o: &RunOutput,
    sensitivity: Vec<SweepPoint>,
) -> SimReport {
    let model = &m.model;
    let trials = opts.trials;
    let mut sensitivity = sensitivity;
    sensitivity.sort_by(|a, b| {
        b.swing
            .partial_cmp(&a.swing)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.param.cmp(&b.param))
    });

    // Hash.
    let mut canon = m.canonical_toml();
    let _ = write!(canon, "\nseed={}\ntrials={}\n", opts.seed, trials);
    for s in &sensitivity {
        let _ = writeln!(canon, "sweep={}={}..{}", s.param, s.lo, s.hi);
    }
    let model_hash = alloy_primitives::keccak256(canon.as_bytes()).to_string();

    let channels: Vec<ChannelReport> = c
        .meta
        .iter()
        .enumerate()
        .map(|(i, meta)| ChannelReport {
            name: meta.name.clone(),
            kind: meta.kind,
            p_capture: Proportion::new(o.acc.marginal[i], trials),
            p_first: Proportion::new(o.acc.first[i], trials),
            exact_p_capture: meta.exact_p,
            loss_on_capture_usd: meta.loss_usd,
            cost_of_corruption_usd: meta.cost_of_corruption_usd,
        })
        .collect();
    let exact_p_capture = c
        .meta
        .iter()
        .try_fold(1.0f64, |s, meta| meta.exact_p.map(|p| s * (1.0 - p)))
        .map(|s| 1.0 - s);

    // Time to capture.
    let caps = o.acc.captures;
    let sd = model.step_days;
    let quant = |pct: u64| -> Option<f64> {
        if caps == 0 {
            return None;
        }
        let mut cum = 0u128;
        for (i, &k) in o.acc.hist.iter().enumerate() {
            cum += k as u128;
            if cum * 100 >= pct as u128 * caps as u128 {
                return Some((i + 1) as f64 * sd);
            }
        }
        None
    };
    let mean_days = (caps > 0).then(|| {
        let s: u128 = o
            .acc
            .hist
            .iter()
            .enumerate()
            .map(|(i, &k)| (i as u128 + 1) * k as u128)
            .sum();
        s as f64 / caps as f64 * sd
    });
    let steps = c.steps as usize;
    let mut survival = Vec::new();
    let mut cum = 0u64;
    let mut next_mark = 1usize;
    for (i, &k) in o.acc.hist.iter().enumerate() {
        cum += k;
        let step = i + 1;
        if step * 10 >= next_mark * steps || step == steps {
            survival.push(SurvivalPoint {
                day: step as f64 * sd,
                p_no_capture: 1.0 - cum as f64 / trials as f64,
            });
            while next_mark * steps <= step * 10 {
                next_mark += 1;
            }
        }
    }

    // Loss.
    let at = atoms(c, o, trials);
    let loss = LossReport {
        expected_usd: expected_loss(c, o, trials),
        var95_usd: var(&at, trials, 95),
        es95_usd: es(&at, trials, 95),
        var99_usd: var(&at, trials, 99),
        es99_usd: es(&at, trials, 99),
        max_usd: at
            .iter()
            .rev()
            .find(|a| a.1 > 0)
            .map_or(Decimal::ZERO, |a| a.0),
    };

    // Corruption.
    let pfc = c
        .meta
        .iter()
        .map(|m| m.loss_usd)
        .max()
        .unwrap_or(Decimal::ZERO);
    let cheapest = c
        .meta
        .iter()
        .filter_map(|m| m.cost_of_corruption_usd.map(|k| (k, m)))
        .min_by(|a, b| a.0.cmp(&b.0));
    let corruption = Corruption {
        profit_from_corruption_usd: pfc,
        cheapest_channel: cheapest.map(|(_, m)| m.name.clone()),
        cost_of_corruption_usd: cheapest.map(|(k, _)| k),
        coc_over_pfc: cheapest.and_then(|(k, m)| {
            use rust_decimal::prelude::ToPrimitive;
            if m.loss_usd.is_zero() {
                None
            } else {
                (k / m.loss_usd).to_f64()
            }
        }),
        robust: cheapest.map(|(k, m)| k > m.loss_usd),
    };

    // Convergence.
    let mut convergence = Vec::new();
    let mut marks = Vec::new();
    let mut base = BLOCK;
    while base < trials {
        for mult in [1, 2, 5] {
            let n = base * mult;
            if n < trials {
                marks.push(n);
            }
        }
        base *= 10;
    }
    marks.push(trials);
    let mut prefix = 0u64;
    let mut blocks_done = 0usize;
    for n in marks {
        let want = n.div_ceil(BLOCK) as usize;
        while blocks_done < want && blocks_done < o.block_captures.len() {
            prefix += o.block_captures[blocks_done];
            blocks_done += 1;
        }
        let w95 = wilson(prefix, n, Z95);
        let w99 = wilson(prefix, n, Z99);
        convergence.push(ConvergencePoint {
            trials: n,
            p: prefix as f64 / n as f64,
            half_width95: (w95[1] - w95[0]) / 2.0,
            half_width99: (w99[1] - w99[0]) / 2.0,
        });
    }

    SimReport {
        model_name: model.name.clone(),
        model_hash,
        engine: format!("recoup-sim/{}", env!("CARGO_PKG_VERSION")),
        description: model.description.clone(),
        seed: opts.seed,
        trials,
        horizon_days: model.horizon_days,
        step_days: model.step_days,
        steps: c.steps,
        value_at_risk_usd: model.value_at_risk.treasury_usd + model.value_at_risk.coverage_pool_usd,
        p_capture: Proportion::new(caps, trials),
        exact_p_capture,
        channels,
        time_to_capture: TimeToCapture {
            histogram: o.acc.hist.clone(),
            mean_days,
            p05_days: quant(5),
            median_days: quant(50),
            p95_days: quant(95),
            survival,
        },
        loss,
        corruption,
        sensitivity,
        convergence,
        history: model.history.clone(),
    }
}

fn pct(p: f64) -> String {
    format!("{:.4}%", p * 100.0)
}

fn opt_days(d: Option<f64>) -> String {
    d.map_or("–".into(), |d| format!("{d}"))
}

fn opt_usd(d: Option<Decimal>) -> String {
    d.map_or("unknown".into(), |d| format!("${d}"))
}

/// Renders the report as Markdown for the risk committee.
pub fn to_markdown(r: &SimReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Governance-capture simulation: {}\n", r.model_name);
    if let Some(d) = &r.description {
        let _ = writeln!(s, "{d}\n");
    }
    let _ = writeln!(
        s,
        "{} trials, seed {}, horizon {} days in steps of {} days; model hash `{}`; {}.\n",
        r.trials, r.seed, r.horizon_days, r.step_days, r.model_hash, r.engine
    );
    if let Some(h) = &r.history {
        let _ = writeln!(
            s,
            "Historical incident: **{}** ({}, {}), loss ${}; history showed: {}.\n",
            h.incident, h.date, h.mechanism, h.loss_usd, h.outcome
        );
    }
    let p = &r.p_capture;
    let _ = writeln!(s, "## P(capture by day {})\n", r.horizon_days);
    let _ = writeln!(
        s,
        "**{}** ({} of {}), Wilson 95% [{}, {}], 99% [{}, {}]{}\n",
        pct(p.p),
        p.count,
        p.trials,
        pct(p.wilson95[0]),
        pct(p.wilson95[1]),
        pct(p.wilson99[0]),
        pct(p.wilson99[1]),
        r.exact_p_capture
            .map_or(String::new(), |e| format!("; exact {}", pct(e)))
    );
    let _ = writeln!(
        s,
        "| channel | kind | P(capture) alone | 99% interval | exact | first to capture | loss on capture | cost of corruption |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for c in &r.channels {
        let _ = writeln!(
            s,
            "| {} | {:?} | {} | [{}, {}] | {} | {} | ${} | {} |",
            c.name,
            c.kind,
            pct(c.p_capture.p),
            pct(c.p_capture.wilson99[0]),
            pct(c.p_capture.wilson99[1]),
            c.exact_p_capture.map_or("–".into(), pct),
            pct(c.p_first.p),
            c.loss_on_capture_usd,
            opt_usd(c.cost_of_corruption_usd)
        );
    }
    let t = &r.time_to_capture;
    let _ = writeln!(s, "\n## Time to capture\n");
    let _ = writeln!(
        s,
        "Among captures: mean {} days, 5th percentile {}, median {}, 95th percentile {}.\n",
        t.mean_days.map_or("–".into(), |d| format!("{d:.2}")),
        opt_days(t.p05_days),
        opt_days(t.median_days),
        opt_days(t.p95_days)
    );
    let _ = writeln!(s, "| day | P(no capture yet) |\n|---|---|");
    for sp in &t.survival {
        let _ = writeln!(s, "| {} | {} |", sp.day, pct(sp.p_no_capture));
    }
    let l = &r.loss;
    let _ = writeln!(s, "\n## Loss (USD)\n");
    let _ = writeln!(s, "| measure | USD |\n|---|---|");
    for (k, v) in [
        (
            "value at risk (treasury + coverage pool)",
            r.value_at_risk_usd,
        ),
        ("expected loss", l.expected_usd),
        ("VaR 95%", l.var95_usd),
        ("expected shortfall 95%", l.es95_usd),
        ("VaR 99%", l.var99_usd),
        ("expected shortfall 99%", l.es99_usd),
        ("largest loss", l.max_usd),
    ] {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let c = &r.corruption;
    let _ = writeln!(s, "\n## Cost of corruption vs profit from corruption\n");
    let _ = writeln!(
        s,
        "Cheapest channel: {} at {}; profit from corruption up to ${}; CoC/PfC {}{}.\n",
        c.cheapest_channel
            .as_deref()
            .unwrap_or("none with a known cost"),
        opt_usd(c.cost_of_corruption_usd),
        c.profit_from_corruption_usd,
        c.coc_over_pfc.map_or("–".into(), |x| format!("{x:.6}")),
        match c.robust {
            Some(true) => " (CoC > PfC: robust)",
            Some(false) => " (**CoC < PfC: not robust**)",
            None => "",
        }
    );
    if !r.sensitivity.is_empty() {
        let _ = writeln!(s, "## Sensitivity (tornado)\n");
        let _ = writeln!(
            s,
            "| parameter | base | lo → P | hi → P | swing | E[loss] lo | E[loss] hi |\n|---|---|---|---|---|---|---|"
        );
        for p in &r.sensitivity {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} → {} | {} → {} | {} | ${} | ${} |",
                p.param,
                p.base.map_or("default".into(), |b| format!("{b}")),
                p.lo,
                pct(p.p_lo),
                p.hi,
                pct(p.p_hi),
                pct(p.swing),
                p.expected_loss_lo_usd,
                p.expected_loss_hi_usd
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Convergence\n");
    let _ = writeln!(
        s,
        "| trials | P(capture) | ± 95% | ± 99% |\n|---|---|---|---|"
    );
    for cp in &r.convergence {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            cp.trials,
            pct(cp.p),
            pct(cp.half_width95),
            pct(cp.half_width99)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_radcad_reference_interval() {
        // radcad_reference.py: 4312 of 10000 → [0.42152, 0.44093] (research notes §3.5).
        let [lo, hi] = wilson(4312, 10_000, Z95);
        assert!((lo - 0.42152).abs() < 5e-6, "{lo}");
        assert!((hi - 0.44093).abs() < 5e-6, "{hi}");
        // Zero events in 10,000: upper bound 3.84e-4 (research notes §3.3).
        let [lo, hi] = wilson(0, 10_000, Z95);
        assert_eq!(lo, 0.0);
        assert!((hi - 3.84e-4).abs() < 1e-6, "{hi}");
    }

    #[test]
    fn var_and_es_on_known_atoms() {
        // 96 zeros, 4 losses of 100: VaR95 = 0 (F(0) = 0.96 ≥ 0.95); ES95 = 4·100 / 5 = 80;
        // VaR99 = 100; ES99 = 100.
        let atoms = vec![(Decimal::ZERO, 96), (Decimal::from(100), 4)];
        assert_eq!(var(&atoms, 100, 95), Decimal::ZERO);
        assert_eq!(es(&atoms, 100, 95), Decimal::from(80));
        assert_eq!(var(&atoms, 100, 99), Decimal::from(100));
        assert_eq!(es(&atoms, 100, 99), Decimal::from(100));
    }
}
