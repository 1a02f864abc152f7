//! The Monte Carlo engine: compiled channels, per-trial streams, aggregation while running.
//!
//! Every channel's capture time is sampled exactly from its law without stepping day by day:
//! the multisig count is a Markov chain whose holding times are geometric (one draw per state
//! visited), an admin key's first successful compromise is one geometric draw, and a token
//! vote's attempts are independent given the attacker's deterministic holdings, so its capture
//! attempt is one uniform against the precomputed survival curve. Each (trial, channel) has its
//! own Xoshiro256++ stream seeded from (seed, trial, channel) through SplitMix64, so results do
//! not depend on the thread count and sweeps use common random numbers. Aggregates are integer
//! counts, summed in any order to the same totals.

use super::model::{usd_f64, LoadedModel, Model, Multisig, TokenVote};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use rust_decimal::Decimal;
use statrs::distribution::{Beta, ContinuousCDF};

/// Sentinel for "no capture within the horizon".
pub(crate) const NEVER: u32 = u32::MAX;

/// Trials per block: the unit of work, of progress reporting and of the convergence table.
pub(crate) const BLOCK: u64 = 1000;

/// Kind of a capture channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// `[multisig.<name>]`.
    Multisig,
    /// `[admin_key.<name>]`.
    AdminKey,
    /// `[token_vote.<name>]`.
    TokenVote,
}

/// A channel ready to sample.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) steps: u32,
    pub(crate) channels: Vec<Channel>,
    pub(crate) meta: Vec<ChannelMeta>,
}

/// What the report needs to know about a channel besides its counts.
#[derive(Debug, Clone)]
pub(crate) struct ChannelMeta {
    pub(crate) name: String,
    pub(crate) kind: ChannelKind,
    pub(crate) loss_usd: Decimal,
    pub(crate) cost_of_corruption_usd: Option<Decimal>,
    pub(crate) exact_p: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Channel {
    Multisig(MultisigChan),
    Admin(AdminChan),
    Vote(VoteChan),
}

/// The M-of-N count chain, rows for the transient states 0..M (states ≥ M absorb).
#[derive(Debug, Clone, Default)]
pub(crate) struct Chain {
    n: usize,
    m: usize,
    /// `m × (n + 1)` transition probabilities.
    row: Vec<f64>,
    /// ln P(stay) per transient state (0 = never leaves).
    ln_stay: Vec<f64>,
    /// `m × (n + 1)` cumulative jump probabilities excluding the state itself, unnormalised.
    cum: Vec<f64>,
}

impl Chain {
    fn build(&mut self, n: usize, m: usize, h: f64, pc: f64, kc: usize, r: f64) {
        self.n = n;
        self.m = m;
        self.row.clear();
        self.row.resize(m * (n + 1), 0.0);
        self.ln_stay.clear();
        self.cum.clear();
        self.cum.resize(m * (n + 1), 0.0);
        let mut px = [0.0f64; 65];
        let mut py = [0.0f64; 65];
        for s in 0..m {
            binomial_pmf_into(n - s, h, &mut px[..=n - s]);
            binomial_pmf_into(s, r, &mut py[..=s]);
            let row = &mut self.row[s * (n + 1)..(s + 1) * (n + 1)];
            for (c, pcv) in [(0usize, 1.0 - pc), (1usize, pc)] {
                if pcv == 0.0 {
                    continue;
                }
                for (x, &pxv) in px[..=n - s].iter().enumerate() {
                    if pxv == 0.0 {
                        continue;
                    }
                    for (y, &pyv) in py[..=s].iter().enumerate() {
                        let next = (s + x + c * kc) as i64 - y as i64;
                        let next = next.clamp(0, n as i64) as usize;
                        row[next] += pcv * pxv * pyv;
                    }
                }
            }
            let mut acc = 0.0;
            let cum = &mut self.cum[s * (n + 1)..(s + 1) * (n + 1)];
            for j in 0..=n {
                if j != s {
                    acc += row[j];
                }
                cum[j] = acc;
            }
            let stay = row[s];
            self.ln_stay.push(if acc <= 0.0 { 0.0 } else { stay.ln() });
        }
    }

    /// First step (1-based) at which the count reaches M, or [`NEVER`] within `steps`.
    #[inline]
    fn sample(&self, rng: &mut Xoshiro256PlusPlus, steps: u32) -> u32 {
        let mut state = 0usize;
        let mut t: u64 = 0;
        let w = self.n + 1;
        loop {
            let ln_stay = self.ln_stay[state];
            if ln_stay == 0.0 {
                return NEVER;
            }
            t += geometric(rng, ln_stay);
            if t > steps as u64 {
                return NEVER;
            }
            let cum = &self.cum[state * w..(state + 1) * w];
            let u = unit_open0(rng) * cum[self.n];
            // First j (≠ state) with cum[j] ≥ u.
            let mut next = self.n;
            for (j, &c) in cum.iter().enumerate() {
                if j != state && c >= u {
                    next = j;
                    break;
                }
            }
            if next >= self.m {
                return t as u32;
            }
            state = next;
        }
    }

    /// P(count reaches M within `steps`), by iterating the distribution.
    fn absorb_by(&self, steps: u32) -> f64 {
        let w = self.n + 1;
        let mut dist = vec![0.0f64; self.m];
        dist[0] = 1.0;
        let mut absorbed = 0.0;
        let mut next = vec![0.0f64; self.m];
        for _ in 0..steps {
            next.iter_mut().for_each(|x| *x = 0.0);
            for (s, &ps) in dist.iter().enumerate() {
                if ps == 0.0 {
                    continue;
                }
                let row = &self.row[s * w..(s + 1) * w];
                for (j, &p) in row.iter().enumerate() {
                    if j >= self.m {
                        absorbed += ps * p;
                    } else {
                        next[j] += ps * p;
                    }
                }
            }
            std::mem::swap(&mut dist, &mut next);
        }
        absorbed.min(1.0)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MultisigChan {
    n: usize,
    m: usize,
    steps: u32,
    p_common: f64,
    k_common: usize,
    p_rot: f64,
    /// Fixed chain (no signer correlation).
    fixed: Option<Chain>,
    /// Beta(α, β) of the per-key horizon compromise probability (signer correlation > 0).
    beta: Option<Beta>,
}

#[derive(Debug, Clone)]
pub(crate) struct AdminChan {
    ln_stay: f64,
    lag: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct VoteChan {
    /// (execution step, survival after this attempt), attempts executing within the horizon.
    attempts: Vec<(u32, f64)>,
}

/// Per-thread scratch: the chain rebuilt per trial for correlated signers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    chain: Chain,
}

/// Converts a per-day probability to a per-step one.
fn per_step(p_day: f64, step_days: f64) -> f64 {
    if p_day >= 1.0 {
        1.0
    } else {
        -((-p_day).ln_1p() * step_days).exp_m1()
    }
}

/// Days to whole steps, rounding up (a delay is never shortened).
fn steps_of(days: f64, step_days: f64) -> u64 {
    let s = days / step_days;
    let r = s.round();
    if (s - r).abs() < 1e-9 {
        r as u64
    } else {
        s.ceil() as u64
    }
}

impl Compiled {
    /// Compiles a validated model.
    pub(crate) fn new(model: &Model) -> Compiled {
        let steps = model.steps();
        let step_days = model.step_days;
        let mut channels = Vec::new();
        let mut meta = Vec::new();
        for (name, m) in &model.multisig {
            let ch = compile_multisig(m, steps, step_days);
            let exact_p = ch
                .fixed
                .as_ref()
                .filter(|_| (steps as u64) * (m.threshold as u64) <= 50_000_000)
                .map(|c| c.absorb_by(steps));
            meta.push(ChannelMeta {
                name: name.clone(),
                kind: ChannelKind::Multisig,
                loss_usd: model.reach_usd(&m.reaches),
                cost_of_corruption_usd: m.attack_cost_usd,
                exact_p,
            });
            channels.push(Channel::Multisig(ch));
        }
        for (name, a) in &model.admin_key {
            let p = per_step(a.compromise_per_day, step_days);
            let block = a.detection.as_ref().map_or(0.0, |d| d.cdf(a.timelock_days));
            let c = p * (1.0 - a.guardian_veto) * (1.0 - block);
            let lag = steps_of(a.timelock_days, step_days).min(u32::MAX as u64 - 1) as u32;
            let ln_stay = if c <= 0.0 { 0.0 } else { (-c).ln_1p() };
            let exact_p = if lag >= steps || c <= 0.0 {
                0.0
            } else {
                -((steps - lag) as f64 * ln_stay).exp_m1()
            };
            meta.push(ChannelMeta {
                name: name.clone(),
                kind: ChannelKind::AdminKey,
                loss_usd: model.reach_usd(&a.reaches),
                cost_of_corruption_usd: a.attack_cost_usd,
                exact_p: Some(exact_p),
            });
            channels.push(Channel::Admin(AdminChan { ln_stay, lag }));
        }
        for (name, v) in &model.token_vote {
            let ch = compile_vote(v, steps, step_days);
            let exact_p = 1.0 - ch.attempts.last().map_or(1.0, |a| a.1);
            meta.push(ChannelMeta {
                name: name.clone(),
                kind: ChannelKind::TokenVote,
                loss_usd: model.reach_usd(&v.reaches),
                cost_of_corruption_usd: vote_cost_of_corruption(v),
                exact_p: Some(exact_p),
            });
            channels.push(Channel::Vote(ch));
        }
        Compiled {
            steps,
            channels,
            meta,
        }
    }

    /// Samples one trial: writes each channel's capture step (or [`NEVER`]) into `out`.
    #[inline]
    pub(crate) fn trial(&self, seed: u64, trial: u64, scratch: &mut Scratch, out: &mut [u32]) {
        for (i, (ch, o)) in self.channels.iter().zip(out.iter_mut()).enumerate() {
            let mut rng = stream(seed, trial, i as u64);
            *o = match ch {
                Channel::Multisig(m) => m.sample(&mut rng, scratch),
                Channel::Admin(a) => {
                    if a.ln_stay == 0.0 {
                        NEVER
                    } else {
                        let t = geometric(&mut rng, a.ln_stay) + a.lag as u64;
                        if t <= self.steps as u64 {
                            t as u32
                        } else {
                            NEVER
                        }
                    }
                }
                Channel::Vote(v) => {
                    let u = unit_open0(&mut rng);
                    v.attempts
                        .iter()
                        .find(|(_, surv)| *surv < u)
                        .map_or(NEVER, |(step, _)| *step)
                }
            };
        }
    }
}

impl MultisigChan {
    #[inline]
    fn sample(&self, rng: &mut Xoshiro256PlusPlus, scratch: &mut Scratch) -> u32 {
        match (&self.fixed, &self.beta) {
            (Some(c), _) => c.sample(rng, self.steps),
            (None, Some(beta)) => {
                use rand::distr::Distribution;
                let q: f64 = beta.sample(rng);
                // Per-step hazard with P(compromised within the horizon) = q.
                let h = if q >= 1.0 {
                    1.0
                } else {
                    -((-q).ln_1p() / self.steps as f64).exp_m1()
                };
                scratch
                    .chain
                    .build(self.n, self.m, h, self.p_common, self.k_common, self.p_rot);
                scratch.chain.sample(rng, self.steps)
            }
            (None, None) => NEVER,
        }
    }
}

fn compile_multisig(m: &Multisig, steps: u32, step_days: f64) -> MultisigChan {
    let n = m.signers as usize;
    let mm = m.threshold as usize;
    let h = per_step(m.key_compromise_per_day, step_days);
    let pc = per_step(m.common_shock_per_day, step_days);
    let r = per_step(m.rotation_per_day, step_days);
    let k = m.common_shock_keys as usize;
    if m.signer_correlation > 0.0 {
        // Mean per-key horizon compromise probability π, ρ = 1 / (α + β + 1).
        let pi = -((steps as f64) * (-h).ln_1p()).exp_m1();
        let total = 1.0 / m.signer_correlation - 1.0;
        let beta = if pi > 0.0 && pi < 1.0 {
            Beta::new(pi * total, (1.0 - pi) * total).ok()
        } else {
            None
        };
        if let Some(b) = beta {
            return MultisigChan {
                n,
                m: mm,
                steps,
                p_common: pc,
                k_common: k,
                p_rot: r,
                fixed: None,
                beta: Some(b),
            };
        }
    }
    let mut chain = Chain::default();
    chain.build(n, mm, h, pc, k, r);
    MultisigChan {
        n,
        m: mm,
        steps,
        p_common: pc,
        k_common: k,
        p_rot: r,
        fixed: Some(chain),
        beta: None,
    }
}

/// The attacker's position in a governor at a given step.
struct VotePosition {
    supply: f64,
    own0: f64,
    circulating: f64,
    price: f64,
    impact: f64,
    depth: Option<f64>,
    budget_day: f64,
    budget_total: Option<f64>,
    borrowed: f64,
    flash: f64,
}

impl VotePosition {
    fn new(v: &TokenVote) -> VotePosition {
        let top: f64 = v.top_holder_shares[..v.colluding_top_holders as usize]
            .iter()
            .sum();
        let price = usd_f64(v.price_usd);
        VotePosition {
            supply: v.supply,
            own0: (v.attacker_initial_share + top) * v.supply,
            circulating: v.circulating_supply.unwrap_or(v.supply),
            price,
            impact: v.price_impact,
            depth: v.market_depth_usd.map(usd_f64),
            budget_day: usd_f64(v.budget_usd_per_day),
            budget_total: v.budget_usd_total.map(usd_f64),
            borrowed: v.borrowable_supply * v.supply,
            flash: if v.snapshot {
                0.0
            } else {
                usd_f64(v.flash_loan_liquidity_usd) / price
            },
        }
    }

    /// Tokens bought with `spend` USD: `cost(q) = p(1+i)q + p²(1+i)q²/(2D)`.
    fn tokens_for(&self, spend: f64) -> f64 {
        if spend <= 0.0 {
            return 0.0;
        }
        let b = self.price * (1.0 + self.impact);
        match self.depth {
            None => spend / b,
            Some(d) => {
                let a = self.price * self.price * (1.0 + self.impact) / (2.0 * d);
                2.0 * spend / (b + (b * b + 4.0 * a * spend).sqrt())
            }
        }
    }

    /// USD needed to buy `q` tokens.
    fn cost_of(&self, q: f64) -> f64 {
        let b = self.price * (1.0 + self.impact);
        match self.depth {
            None => b * q,
            Some(d) => b * q + self.price * self.price * (1.0 + self.impact) * q * q / (2.0 * d),
        }
    }

    /// Own tokens after `days` of buying.
    fn own_after(&self, days: f64) -> f64 {
        let mut spend = self.budget_day * days;
        if let Some(t) = self.budget_total {
            spend = spend.min(t);
        }
        let room = (self.circulating - self.own0).max(0.0);
        self.own0 + self.tokens_for(spend).min(room)
    }
}

fn compile_vote(v: &TokenVote, steps: u32, step_days: f64) -> VoteChan {
    let pos = VotePosition::new(v);
    let turnout = Beta::new(v.honest_turnout_beta[0], v.honest_turnout_beta[1]).ok();
    let f = v.pass_fraction;
    let first = v.first_proposal_day.unwrap_or(v.proposal_every_days);
    let delay = steps_of(v.voting_delay_days, step_days);
    let period = steps_of(v.voting_period_days, step_days);
    let lock = steps_of(v.timelock_days, step_days);
    let mut attempts = Vec::new();
    let mut surv = 1.0f64;
    let mut k = 0u64;
    loop {
        let day = first + k as f64 * v.proposal_every_days;
        let prop = steps_of(day, step_days).max(1);
        let exec = prop + delay + period + lock;
        if exec > steps as u64 {
            break;
        }
        let count_step = if v.snapshot {
            prop + delay
        } else {
            prop + delay + period
        };
        let at_prop = pos.own_after(prop as f64 * step_days) + pos.borrowed + pos.flash;
        let votes = pos.own_after(count_step as f64 * step_days) + pos.borrowed + pos.flash;
        let pass = if at_prop < v.proposal_threshold * v.supply || votes < v.quorum * v.supply {
            0.0
        } else {
            let x = votes * (1.0 - f) / (f * pos.supply);
            if x >= 1.0 {
                1.0
            } else {
                turnout.as_ref().map_or(0.0, |b| b.cdf(x))
            }
        };
        let window_days = (exec - prop) as f64 * step_days;
        let blocked = v.detection.as_ref().map_or(0.0, |d| d.cdf(window_days));
        let c = pass * (1.0 - v.guardian_veto) * (1.0 - blocked);
        surv *= 1.0 - c;
        attempts.push((exec as u32, surv));
        k += 1;
        if k > 10_000_000 {
            break;
        }
    }
    VoteChan { attempts }
}

/// Cost of corruption of a governor: the cheapest way to hold enough votes to pass one proposal
/// against the median honest turnout (an even chance per proposal; an attacker can retry), using free holdings first, then flash loans
/// (fee), then borrowing (interest over delay + vote + one day), then spot buying (with
/// slippage). `None` when the votes cannot be had at all.
///
/// # Rounding
/// Computed in f64 from the Decimal inputs, then rounded to cents (half to even).
fn vote_cost_of_corruption(v: &TokenVote) -> Option<Decimal> {
    let pos = VotePosition::new(v);
    let f = v.pass_fraction;
    let t50 = Beta::new(v.honest_turnout_beta[0], v.honest_turnout_beta[1])
        .map(|b| b.inverse_cdf(0.5))
        .unwrap_or(1.0);
    let need = (v.quorum.max(v.proposal_threshold).max(f / (1.0 - f) * t50)) * v.supply;
    let mut rem = (need - pos.own0).max(0.0);
    let mut cost = 0.0;
    if !v.snapshot {
        let take = rem.min(pos.flash);
        cost += take * pos.price * v.flash_loan_fee;
        rem -= take;
    }
    let hold_days = v.voting_delay_days + v.voting_period_days + 1.0;
    let take = rem.min(pos.borrowed);
    cost += take * pos.price * v.borrow_rate_apr * hold_days / 365.0;
    rem -= take;
    if rem > 0.0 {
        let room = (pos.circulating - pos.own0).max(0.0);
        if rem > room * (1.0 + 1e-12) {
            return None;
        }
        cost += pos.cost_of(rem);
    }
    Decimal::from_f64_retain(cost).map(|d| d.round_dp(2))
}

/// The stream of one (trial, channel): SplitMix64-seeded Xoshiro256++.
#[inline]
pub(crate) fn stream(seed: u64, trial: u64, channel: u64) -> Xoshiro256PlusPlus {
    let key = splitmix(
        splitmix(seed)
            ^ trial.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ channel.wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    Xoshiro256PlusPlus::seed_from_u64(key)
}

#[inline]
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform on (0, 1], 53 bits.
#[inline]
fn unit_open0(rng: &mut Xoshiro256PlusPlus) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Geometric number of trials up to and including the first success, P(K > k) = stay^k,
/// given `ln_stay = ln(stay) < 0`.
#[inline]
fn geometric(rng: &mut Xoshiro256PlusPlus, ln_stay: f64) -> u64 {
    let g = (unit_open0(rng).ln() / ln_stay).floor();
    if g >= 1e18 {
        u64::MAX / 2
    } else {
        1 + g as u64
    }
}

/// Binomial(n, p) probabilities into `out[0..=n]` by the recurrence on k.
pub(crate) fn binomial_pmf_into(n: usize, p: f64, out: &mut [f64]) {
    if p <= 0.0 {
        out.iter_mut().for_each(|x| *x = 0.0);
        out[0] = 1.0;
        return;
    }
    if p >= 1.0 {
        out.iter_mut().for_each(|x| *x = 0.0);
        out[n] = 1.0;
        return;
    }
    let q = 1.0 - p;
    out[0] = q.powi(n as i32);
    let ratio = p / q;
    for k in 0..n {
        out[k + 1] = out[k] * (n - k) as f64 / (k + 1) as f64 * ratio;
    }
    if out[0] == 0.0 {
        // Underflow at large n: fall back to statrs's log-space pmf.
        use statrs::distribution::{Binomial, Discrete};
        if let Ok(b) = Binomial::new(p, n as u64) {
            for (k, o) in out.iter_mut().enumerate().take(n + 1) {
                *o = b.pmf(k as u64);
            }
        }
    }
}

/// Integer aggregates of a run.
#[derive(Debug, Clone)]
pub(crate) struct Acc {
    pub(crate) captures: u64,
    pub(crate) marginal: Vec<u64>,
    pub(crate) first: Vec<u64>,
    /// First-capture step histogram, index = step − 1.
    pub(crate) hist: Vec<u64>,
}

impl Acc {
    fn new(channels: usize, steps: u32) -> Acc {
        Acc {
            captures: 0,
            marginal: vec![0; channels],
            first: vec![0; channels],
            hist: vec![0; steps as usize],
        }
    }
    fn merge(mut self, o: Acc) -> Acc {
        self.captures += o.captures;
        for (a, b) in self.marginal.iter_mut().zip(o.marginal) {
            *a += b;
        }
        for (a, b) in self.first.iter_mut().zip(o.first) {
            *a += b;
        }
        for (a, b) in self.hist.iter_mut().zip(o.hist) {
            *a += b;
        }
        self
    }
}

/// The raw result of [`run`]: aggregates plus captures per block (for convergence).
#[derive(Debug, Clone)]
pub(crate) struct RunOutput {
    pub(crate) acc: Acc,
    pub(crate) block_captures: Vec<u64>,
}

/// Runs `trials` trials of a compiled model on the current rayon pool.
pub(crate) fn run(
    c: &Compiled,
    seed: u64,
    trials: u64,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> RunOutput {
    let nch = c.channels.len();
    let nblocks = trials.div_ceil(BLOCK);
    let (acc, mut blocks) = (0..nblocks)
        .into_par_iter()
        .fold(
            || {
                (
                    Acc::new(nch, c.steps),
                    Vec::new(),
                    Scratch::default(),
                    vec![NEVER; nch],
                )
            },
            |(mut acc, mut blocks, mut scratch, mut out), b| {
                let lo = b * BLOCK;
                let hi = (lo + BLOCK).min(trials);
                let mut caps = 0u64;
                for t in lo..hi {
                    c.trial(seed, t, &mut scratch, &mut out);
                    let mut best = NEVER;
                    let mut who = usize::MAX;
                    for (i, &s) in out.iter().enumerate() {
                        if s != NEVER {
                            acc.marginal[i] += 1;
                            if s < best {
                                best = s;
                                who = i;
                            }
                        }
                    }
                    if best != NEVER {
                        caps += 1;
                        acc.first[who] += 1;
                        acc.hist[(best - 1) as usize] += 1;
                    }
                }
                acc.captures += caps;
                blocks.push((b, caps));
                if let Some(p) = progress {
                    p(hi - lo);
                }
                (acc, blocks, scratch, out)
            },
        )
        .map(|(acc, blocks, _, _)| (acc, blocks))
        .reduce(
            || (Acc::new(nch, c.steps), Vec::new()),
            |(a, mut ba), (b, bb)| {
                ba.extend(bb);
                (a.merge(b), ba)
            },
        );
    blocks.sort_unstable();
    RunOutput {
        acc,
        block_captures: blocks.into_iter().map(|(_, c)| c).collect(),
    }
}

/// Compiles and runs a loaded model (no sweeps, no report).
pub(crate) fn run_model(
    m: &LoadedModel,
    seed: u64,
    trials: u64,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> (Compiled, RunOutput) {
    let c = Compiled::new(&m.model);
    let out = run(&c, seed, trials, progress);
    (c, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::{Binomial, Discrete};

    #[test]
    fn binomial_recurrence_matches_statrs() {
        let mut out = [0.0; 12];
        for &(n, p) in &[(11usize, 0.05), (9, 0.3), (5, 0.999), (1, 0.5), (0, 0.2)] {
            binomial_pmf_into(n, p, &mut out[..=n]);
            let b = Binomial::new(p, n as u64).unwrap();
            for (k, &got) in out[..=n].iter().enumerate() {
                assert!((got - b.pmf(k as u64)).abs() < 1e-13, "n={n} p={p} k={k}");
            }
        }
    }

    #[test]
    fn chain_rows_are_distributions() {
        let mut c = Chain::default();
        c.build(9, 5, 0.001, 0.0005, 4, 0.05);
        for s in 0..5 {
            let sum: f64 = c.row[s * 10..(s + 1) * 10].iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "row {s} sums to {sum}");
        }
    }

    #[test]
    fn geometric_has_the_right_mean() {
        let mut rng = stream(1, 2, 3);
        let stay: f64 = 0.9;
        let n = 200_000;
        let mean = (0..n)
            .map(|_| geometric(&mut rng, stay.ln()) as f64)
            .sum::<f64>()
            / n as f64;
        // E[K] = 1 / (1 − stay) = 10; sd 9.5, so the mean's sd is about 0.021.
        assert!((mean - 10.0).abs() < 0.1, "mean {mean}");
    }

    #[test]
    fn streams_differ_by_seed_trial_and_channel() {
        let a = stream(1, 0, 0).next_u64();
        assert_ne!(a, stream(0, 1, 0).next_u64());
        assert_ne!(a, stream(1, 1, 0).next_u64());
        assert_ne!(a, stream(1, 0, 1).next_u64());
        assert_eq!(a, stream(1, 0, 0).next_u64());
    }
}
