//! Governance models as TOML: the value at risk, the horizon and the capture channels.
//!
//! A model file is read with serde (`deny_unknown_fields` everywhere), then validated; every
//! error names the file and the dotted key (`token_vote.dao.quorum`). Money inputs (value at
//! risk, price, budgets, costs) are USD [`Decimal`]s; token quantities, probabilities and rates
//! are `f64` (they are model parameters, not accounting).

use super::SimError;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A governance-capture model: what can be lost, over which horizon, through which channels.
///
/// Channels are keyed by a name of the user's choice; within one day they are resolved in the
/// order multisig channels, admin keys, token votes (each by name), which only matters when two
/// channels capture on the same day (the first one is credited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Short name, used for report file names.
    pub name: String,
    /// Free text shown in the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Horizon of the simulation in days (P(capture by horizon)).
    pub horizon_days: f64,
    /// Length of one time step in days (default 1). Per-day rates are converted to per-step
    /// probabilities as `1 - (1 - p)^step_days`; durations are rounded up to whole steps.
    #[serde(default = "one")]
    pub step_days: f64,
    /// What a capture can drain.
    pub value_at_risk: ValueAtRisk,
    /// M-of-N multisigs and councils, by name.
    #[serde(default)]
    pub multisig: BTreeMap<String, Multisig>,
    /// Single privileged keys (admin, upgrade authority, pause guardian), by name.
    #[serde(default)]
    pub admin_key: BTreeMap<String, AdminKey>,
    /// Token-vote governors, by name.
    #[serde(default)]
    pub token_vote: BTreeMap<String, TokenVote>,
    /// Default sensitivity sweep (tornado) when the command line names none.
    #[serde(default)]
    pub sweep: Vec<SweepSpec>,
    /// For models of a historical incident: the row of `attacks.csv` it reproduces.
    #[serde(default)]
    pub history: Option<History>,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn half() -> f64 {
    0.5
}
fn aave_flash_fee() -> f64 {
    0.0009
}
fn all_pots() -> Vec<Pot> {
    vec![Pot::Treasury, Pot::CoveragePool]
}

/// The value at risk, in USD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueAtRisk {
    /// Treasury a capture can drain, USD.
    pub treasury_usd: Decimal,
    /// Coverage pool a capture can drain, USD (default 0).
    #[serde(default)]
    pub coverage_pool_usd: Decimal,
}

/// A pot of value a channel's power reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pot {
    /// `value_at_risk.treasury_usd`.
    Treasury,
    /// `value_at_risk.coverage_pool_usd`.
    CoveragePool,
}

/// An M-of-N multisig or council whose signer keys get compromised over time.
///
/// Each day, in this order (the order of `radcad_reference.py`): every clean key is compromised
/// with `key_compromise_per_day`; with `common_shock_per_day` a common-mode event (shared
/// infrastructure, a spoofed signing UI) adds `common_shock_keys` more; every key compromised at
/// the start of the day is detected and rotated with `rotation_per_day`; the count is clamped
/// to `[0, signers]`, and the channel captures when it reaches `threshold`.
///
/// With `signer_correlation` ρ > 0 the per-key risk is itself random per trial (beta-binomial):
/// the probability that one key is compromised within the horizon is drawn from a Beta with mean
/// `1 - (1 - key_compromise_per_day)^horizon_days` and intra-class correlation ρ, so that without
/// rotation and common shocks P(≥ M of N by the horizon) is exactly the beta-binomial tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multisig {
    /// N, the number of signers.
    pub signers: u32,
    /// M, the signatures needed.
    pub threshold: u32,
    /// Probability per day that one clean key is compromised.
    pub key_compromise_per_day: f64,
    /// Probability per day of a common-mode event (default 0).
    #[serde(default)]
    pub common_shock_per_day: f64,
    /// Keys a common-mode event compromises (default 0).
    #[serde(default)]
    pub common_shock_keys: u32,
    /// Beta-binomial intra-class correlation ρ between signers, in [0, 1) (default 0).
    #[serde(default)]
    pub signer_correlation: f64,
    /// Probability per day that one compromised key is detected and rotated (default 0).
    #[serde(default)]
    pub rotation_per_day: f64,
    /// Pots this multisig controls (default both).
    #[serde(default = "all_pots")]
    pub reaches: Vec<Pot>,
    /// What compromising enough keys costs an attacker, USD, if known (cost of corruption).
    #[serde(default)]
    pub attack_cost_usd: Option<Decimal>,
}

/// A single privileged key: admin key, upgrade authority or pause guardian.
///
/// Each day the key is compromised with `compromise_per_day`; the attacker's action then waits
/// `timelock_days`, is cancelled by a guardian with `guardian_veto`, or is stopped when the
/// response time (`detection`, from the compromise) is shorter than the timelock. A stopped
/// attempt is followed by a rotation; the new key carries the same risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    /// What the key is (free text, e.g. "upgrade authority").
    #[serde(default)]
    pub role: Option<String>,
    /// Probability per day that the key is compromised.
    pub compromise_per_day: f64,
    /// Delay before a privileged action takes effect, days (default 0).
    #[serde(default)]
    pub timelock_days: f64,
    /// Probability that a guardian cancels the action (default 0).
    #[serde(default)]
    pub guardian_veto: f64,
    /// Time from the compromise to an effective response, if anyone responds.
    #[serde(default)]
    pub detection: Option<Detection>,
    /// Pots the key reaches (default both).
    #[serde(default = "all_pots")]
    pub reaches: Vec<Pot>,
    /// What compromising the key costs an attacker, USD, if known.
    #[serde(default)]
    pub attack_cost_usd: Option<Decimal>,
}

/// A token-vote governor (OpenZeppelin Governor, GovernorBravo, Beanstalk-style live balance).
///
/// The attacker submits a proposal every `proposal_every_days` (first on
/// `first_proposal_day`). Its votes are its own tokens (initial share, colluding top holders,
/// tokens bought so far with the daily budget at `price_usd × (1 + price_impact)` plus linear
/// slippage against `market_depth_usd`), borrowed tokens, and — only when voting power is not
/// snapshotted — flash-loaned tokens. Votes are counted at the snapshot (`snapshot = true`,
/// `voting_delay_days` after submission) or at the end of the vote (live balances). Honest
/// turnout T ~ Beta(a, b) of supply votes against. The proposal passes when
/// votes ≥ `quorum × supply` and votes·(1 − f) > f·T·supply with f = `pass_fraction`; it then
/// executes `timelock_days` after the vote unless a guardian vetoes it (`guardian_veto`) or
/// the response (`detection`, from submission) comes before execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenVote {
    /// Total supply of voting tokens.
    pub supply: f64,
    /// Circulating supply the attacker can buy from (default: supply).
    #[serde(default)]
    pub circulating_supply: Option<f64>,
    /// Token price, USD.
    pub price_usd: Decimal,
    /// Average price premium paid on purchases (0.02 = 2%), default 0.
    #[serde(default)]
    pub price_impact: f64,
    /// Market depth: USD of buying that would move the price by 100% (linear impact); none =
    /// only `price_impact`.
    #[serde(default)]
    pub market_depth_usd: Option<Decimal>,
    /// Attacker's own share of supply at the start (default 0).
    #[serde(default)]
    pub attacker_initial_share: f64,
    /// Largest holders' shares of supply, descending (for collusion).
    #[serde(default)]
    pub top_holder_shares: Vec<f64>,
    /// How many of the top holders vote with the attacker (default 0).
    #[serde(default)]
    pub colluding_top_holders: u32,
    /// Attacker's spot-buying budget per day, USD (default 0).
    #[serde(default)]
    pub budget_usd_per_day: Decimal,
    /// Cap on the attacker's total spending, USD (default none).
    #[serde(default)]
    pub budget_usd_total: Option<Decimal>,
    /// Share of supply borrowable in lending markets (default 0).
    #[serde(default)]
    pub borrowable_supply: f64,
    /// Borrow rate, per year (0.05 = 5%), default 0.
    #[serde(default)]
    pub borrow_rate_apr: f64,
    /// Voting-token value available in flash loans, USD (default 0).
    #[serde(default)]
    pub flash_loan_liquidity_usd: Decimal,
    /// Flash-loan premium (default 0.0009, Aave v2's 0.09%).
    #[serde(default = "aave_flash_fee")]
    pub flash_loan_fee: f64,
    /// Whether voting power is checkpointed before the vote (ERC20Votes, `getPriorVotes`);
    /// flash loans work only when it is not (default true).
    #[serde(default = "yes")]
    pub snapshot: bool,
    /// Share of supply needed to submit a proposal (default 0).
    #[serde(default)]
    pub proposal_threshold: f64,
    /// Quorum, share of supply.
    pub quorum: f64,
    /// Share of for + against the attacker must exceed (default 0.5, a simple majority).
    #[serde(default = "half")]
    pub pass_fraction: f64,
    /// Honest turnout against the attacker: `[a, b]` of a Beta(a, b), share of supply.
    pub honest_turnout_beta: [f64; 2],
    /// Days between the attacker's proposals.
    pub proposal_every_days: f64,
    /// Day of the first proposal (default: `proposal_every_days`).
    #[serde(default)]
    pub first_proposal_day: Option<f64>,
    /// Days from submission to the snapshot / start of voting (default 0).
    #[serde(default)]
    pub voting_delay_days: f64,
    /// Days of voting (default 0).
    #[serde(default)]
    pub voting_period_days: f64,
    /// Days from the end of the vote to execution (default 0).
    #[serde(default)]
    pub timelock_days: f64,
    /// Probability that a guardian vetoes a passed proposal (default 0).
    #[serde(default)]
    pub guardian_veto: f64,
    /// Time from submission to an effective response (cancel), if anyone responds.
    #[serde(default)]
    pub detection: Option<Detection>,
    /// Pots the governor reaches (default both).
    #[serde(default = "all_pots")]
    pub reaches: Vec<Pot>,
}

/// A detection-and-response time distribution, in days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    /// `exponential` (mean_days), `gamma` (mean_days, shape) or `lognormal` (mean_days, sigma).
    pub dist: DetectionDist,
    /// Mean response time, days.
    pub mean_days: f64,
    /// Gamma shape.
    #[serde(default)]
    pub shape: Option<f64>,
    /// Log-normal σ of ln(days).
    #[serde(default)]
    pub sigma: Option<f64>,
}

/// Families of response-time distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionDist {
    /// Exponential with the given mean.
    Exponential,
    /// Gamma with the given shape and mean.
    Gamma,
    /// Log-normal with the given mean and σ.
    Lognormal,
}

/// One parameter of a sensitivity sweep: `param` (a dotted key of the model) from `lo` to `hi`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Dotted key, e.g. `token_vote.dao.quorum`.
    pub param: String,
    /// Low value.
    pub lo: f64,
    /// High value.
    pub hi: f64,
}

impl SweepSpec {
    /// Parses `param=lo..hi` as given on the command line.
    ///
    /// # Errors
    /// [`SimError::BadSweep`] when the text is not of that shape or the bounds are not numbers.
    pub fn parse(s: &str) -> Result<Self, SimError> {
        let bad = |why: &str| SimError::BadSweep {
            spec: s.to_owned(),
            reason: why.to_owned(),
        };
        let (param, range) = s
            .split_once('=')
            .ok_or_else(|| bad("expected param=lo..hi"))?;
        let (lo, hi) = range
            .split_once("..")
            .ok_or_else(|| bad("expected a range lo..hi"))?;
        let lo: f64 = lo.trim().parse().map_err(|_| bad("lo is not a number"))?;
        let hi: f64 = hi.trim().parse().map_err(|_| bad("hi is not a number"))?;
        if param.trim().is_empty() {
            return Err(bad("empty parameter name"));
        }
        Ok(SweepSpec {
            param: param.trim().to_owned(),
            lo,
            hi,
        })
    }
}

/// The historical incident a model reproduces (a row of `attacks.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The `name` column of `attacks.csv`.
    pub incident: String,
    /// The `date` column.
    pub date: String,
    /// The `mechanism` column.
    pub mechanism: String,
    /// The `loss_usd` column.
    pub loss_usd: Decimal,
    /// What history showed: `"capture"`.
    pub outcome: String,
}

/// A model read from a file: the parsed model, its source table (for sweeps) and its path.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The validated model.
    pub model: Model,
    /// The TOML document, for re-deriving swept variants and the canonical hash.
    pub table: toml::Table,
    /// Where it was read from (for error messages).
    pub file: PathBuf,
}

impl LoadedModel {
    /// Reads and validates a model file.
    ///
    /// # Errors
    /// [`SimError::Io`] if the file cannot be read; [`SimError::Toml`] for syntax errors, unknown
    /// keys and wrong types (naming file, line, column and key); [`SimError::Invalid`] for
    /// values out of range (naming file and key).
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let src = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_str(&src, path)
    }

    /// Parses and validates model text; `file` is used in error messages only.
    ///
    /// # Errors
    /// As [`LoadedModel::from_file`], without I/O.
    pub fn from_str(src: &str, file: &Path) -> Result<Self, SimError> {
        let model: Model = toml::from_str(src).map_err(|e| toml_error(src, file, &e))?;
        let table: toml::Table = toml::from_str(src).map_err(|e| toml_error(src, file, &e))?;
        model.validate(file)?;
        Ok(LoadedModel {
            model,
            table,
            file: file.to_owned(),
        })
    }

    /// The canonical bytes of the model: the TOML document re-serialised with sorted keys and
    /// without comments, so formatting and comments do not change the hash.
    pub fn canonical_toml(&self) -> String {
        toml::to_string(&self.table).unwrap_or_default()
    }

    /// A variant with `param` set to `value`, validated.
    ///
    /// # Errors
    /// [`SimError::UnknownParam`] when `param` does not name a numeric key of the model (or a
    /// key the schema accepts under an existing table); [`SimError::Invalid`] when the new value
    /// is out of range.
    pub fn with_param(&self, param: &str, value: f64) -> Result<LoadedModel, SimError> {
        let unknown = |why: String| SimError::UnknownParam {
            file: self.file.clone(),
            param: param.to_owned(),
            reason: why,
        };
        let mut table = self.table.clone();
        let parts: Vec<&str> = param.split('.').collect();
        let (leaf, parents) = parts.split_last().ok_or_else(|| unknown("empty".into()))?;
        let mut cur = &mut table;
        let mut walked = String::new();
        for p in parents {
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(p);
            cur = match cur.get_mut(*p) {
                Some(toml::Value::Table(t)) => t,
                Some(_) => return Err(unknown(format!("`{walked}` is not a table"))),
                None => return Err(unknown(format!("the model has no `{walked}`"))),
            };
        }
        let new = match cur.get(*leaf) {
            Some(toml::Value::Integer(_)) => {
                if value.fract() != 0.0 || !value.is_finite() {
                    return Err(SimError::Invalid {
                        file: self.file.clone(),
                        key: param.to_owned(),
                        message: format!("is an integer; sweep value {value} is not"),
                    });
                }
                toml::Value::Integer(value as i64)
            }
            Some(toml::Value::Float(_)) | None => toml::Value::Float(value),
            Some(toml::Value::String(_)) => toml::Value::String(format!("{value}")),
            Some(other) => return Err(unknown(format!("is a {}, not a number", other.type_str()))),
        };
        cur.insert((*leaf).to_owned(), new);
        let model: Model = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| unknown(e.message().trim().to_owned()))?;
        model.validate(&self.file)?;
        Ok(LoadedModel {
            model,
            table,
            file: self.file.clone(),
        })
    }

    /// The value of a numeric key, if the document sets it.
    pub fn param_value(&self, param: &str) -> Option<f64> {
        let mut cur = &self.table;
        let parts: Vec<&str> = param.split('.').collect();
        let (leaf, parents) = parts.split_last()?;
        for p in parents {
            cur = cur.get(*p)?.as_table()?;
        }
        match cur.get(*leaf)? {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            toml::Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// Turns a `toml` error into one naming the file, line, column and dotted key.
fn toml_error(src: &str, file: &Path, e: &toml::de::Error) -> SimError {
    let (line, column, key) = match e.span() {
        Some(span) => {
            let (line, column) = line_col(src, span.start);
            (line, column, key_at(src, span.start))
        }
        None => (0, 0, None),
    };
    SimError::Toml {
        file: file.to_owned(),
        line,
        column,
        key: key.unwrap_or_else(|| "(document)".to_owned()),
        message: e.message().trim().to_owned(),
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted key at a byte offset: the last `[table]` header before it plus the key on its line.
fn key_at(src: &str, offset: usize) -> Option<String> {
    let offset = offset.min(src.len());
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = &src[line_start..line_end];
    let mut header = String::new();
    for l in src[..line_start].lines() {
        let t = l.trim();
        if t.starts_with('[') {
            header = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    let t = line.trim();
    if t.starts_with('[') {
        return Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    }
    let key = t.split('=').next()?.trim().trim_matches('"');
    if key.is_empty() || t.starts_with('#') {
        return if header.is_empty() {
            None
        } else {
            Some(header)
        };
    }
    Some(if header.is_empty() {
        key.to_owned()
    } else {
        format!("{header}.{key}")
    })
}

impl Model {
    /// Checks ranges: probabilities in [0, 1], rates and durations non-negative, M ≤ N, and so on.
    ///
    /// # Errors
    /// [`SimError::Invalid`] naming the file and the first offending key.
    pub fn validate(&self, file: &Path) -> Result<(), SimError> {
        let err = |key: String, message: String| SimError::Invalid {
            file: file.to_owned(),
            key,
            message,
        };
        let prob = |key: String, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(err(
                    key,
                    format!("must be a probability in [0, 1], got {v}"),
                ))
            }
        };
        let nonneg = |key: String, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(err(key, format!("must be a finite number ≥ 0, got {v}")))
            }
        };
        let usd = |key: String, v: Decimal| {
            if v.is_sign_negative() && !v.is_zero() {
                Err(err(key, format!("must be ≥ 0 USD, got {v}")))
            } else {
                Ok(())
            }
        };
        if !(self.horizon_days > 0.0 && self.horizon_days.is_finite()) {
            return Err(err(
                "horizon_days".into(),
                format!("must be > 0, got {}", self.horizon_days),
            ));
        }
        if !(self.step_days > 0.0 && self.step_days.is_finite()) {
            return Err(err(
                "step_days".into(),
                format!("must be > 0, got {}", self.step_days),
            ));
        }
        let steps = self.horizon_days / self.step_days;
        if (steps - steps.round()).abs() > 1e-9 || steps.round() > 10_000_000.0 {
            return Err(err(
                "horizon_days".into(),
                format!(
                    "must be a whole number (at most 10^7) of steps of {} days, got {} days",
                    self.step_days, self.horizon_days
                ),
            ));
        }
        usd(
            "value_at_risk.treasury_usd".into(),
            self.value_at_risk.treasury_usd,
        )?;
        usd(
            "value_at_risk.coverage_pool_usd".into(),
            self.value_at_risk.coverage_pool_usd,
        )?;
        // A model with no channel is legal: P(capture) = 0.
        for (name, m) in &self.multisig {
            let k = |f: &str| format!("multisig.{name}.{f}");
            if m.signers == 0 || m.signers > 64 {
                return Err(err(
                    k("signers"),
                    format!("must be 1..=64, got {}", m.signers),
                ));
            }
            if m.threshold == 0 || m.threshold > m.signers {
                return Err(err(
                    k("threshold"),
                    format!(
                        "must be 1..=signers ({}), got {} (M > N)",
                        m.signers, m.threshold
                    ),
                ));
            }
            prob(k("key_compromise_per_day"), m.key_compromise_per_day)?;
            prob(k("common_shock_per_day"), m.common_shock_per_day)?;
            prob(k("rotation_per_day"), m.rotation_per_day)?;
            if m.common_shock_keys > m.signers {
                return Err(err(
                    k("common_shock_keys"),
                    format!(
                        "must be ≤ signers ({}), got {}",
                        m.signers, m.common_shock_keys
                    ),
                ));
            }
            if !(0.0..1.0).contains(&m.signer_correlation) {
                return Err(err(
                    k("signer_correlation"),
                    format!("must be in [0, 1), got {}", m.signer_correlation),
                ));
            }
            if let Some(c) = m.attack_cost_usd {
                usd(k("attack_cost_usd"), c)?;
            }
        }
        for (name, a) in &self.admin_key {
            let k = |f: &str| format!("admin_key.{name}.{f}");
            prob(k("compromise_per_day"), a.compromise_per_day)?;
            nonneg(k("timelock_days"), a.timelock_days)?;
            prob(k("guardian_veto"), a.guardian_veto)?;
            if let Some(d) = &a.detection {
                d.validate(&k("detection"), file)?;
            }
            if let Some(c) = a.attack_cost_usd {
                usd(k("attack_cost_usd"), c)?;
            }
        }
        for (name, v) in &self.token_vote {
            let k = |f: &str| format!("token_vote.{name}.{f}");
            if !(v.supply > 0.0 && v.supply.is_finite()) {
                return Err(err(k("supply"), format!("must be > 0, got {}", v.supply)));
            }
            if let Some(c) = v.circulating_supply {
                if !(c >= 0.0 && c <= v.supply) {
                    return Err(err(
                        k("circulating_supply"),
                        format!("must be in [0, supply = {}], got {c}", v.supply),
                    ));
                }
            }
            if v.price_usd <= Decimal::ZERO {
                return Err(err(
                    k("price_usd"),
                    format!("must be > 0, got {}", v.price_usd),
                ));
            }
            nonneg(k("price_impact"), v.price_impact)?;
            if let Some(d) = v.market_depth_usd {
                if d <= Decimal::ZERO {
                    return Err(err(k("market_depth_usd"), format!("must be > 0, got {d}")));
                }
            }
            prob(k("attacker_initial_share"), v.attacker_initial_share)?;
            for (i, s) in v.top_holder_shares.iter().enumerate() {
                prob(format!("token_vote.{name}.top_holder_shares[{i}]"), *s)?;
            }
            if v.colluding_top_holders as usize > v.top_holder_shares.len() {
                return Err(err(
                    k("colluding_top_holders"),
                    format!(
                        "must be ≤ the number of top_holder_shares ({}), got {}",
                        v.top_holder_shares.len(),
                        v.colluding_top_holders
                    ),
                ));
            }
            let own = v.attacker_initial_share
                + v.top_holder_shares[..v.colluding_top_holders as usize]
                    .iter()
                    .sum::<f64>();
            if own > 1.0 + 1e-12 {
                return Err(err(
                    k("top_holder_shares"),
                    format!("attacker's initial share plus colluding holders is {own} > 1"),
                ));
            }
            usd(k("budget_usd_per_day"), v.budget_usd_per_day)?;
            if let Some(b) = v.budget_usd_total {
                usd(k("budget_usd_total"), b)?;
            }
            prob(k("borrowable_supply"), v.borrowable_supply)?;
            nonneg(k("borrow_rate_apr"), v.borrow_rate_apr)?;
            usd(k("flash_loan_liquidity_usd"), v.flash_loan_liquidity_usd)?;
            prob(k("flash_loan_fee"), v.flash_loan_fee)?;
            prob(k("proposal_threshold"), v.proposal_threshold)?;
            prob(k("quorum"), v.quorum)?;
            if !(v.pass_fraction > 0.0 && v.pass_fraction < 1.0) {
                return Err(err(
                    k("pass_fraction"),
                    format!("must be in (0, 1), got {}", v.pass_fraction),
                ));
            }
            for (i, s) in v.honest_turnout_beta.iter().enumerate() {
                if !(*s > 0.0 && s.is_finite()) {
                    return Err(err(
                        format!("token_vote.{name}.honest_turnout_beta[{i}]"),
                        format!("Beta shape must be > 0, got {s}"),
                    ));
                }
            }
            if !(v.proposal_every_days > 0.0 && v.proposal_every_days.is_finite()) {
                return Err(err(
                    k("proposal_every_days"),
                    format!("must be > 0, got {}", v.proposal_every_days),
                ));
            }
            if let Some(f) = v.first_proposal_day {
                nonneg(k("first_proposal_day"), f)?;
            }
            nonneg(k("voting_delay_days"), v.voting_delay_days)?;
            nonneg(k("voting_period_days"), v.voting_period_days)?;
            nonneg(k("timelock_days"), v.timelock_days)?;
            prob(k("guardian_veto"), v.guardian_veto)?;
            if let Some(d) = &v.detection {
                d.validate(&k("detection"), file)?;
            }
        }
        for (i, s) in self.sweep.iter().enumerate() {
            if !(s.lo.is_finite() && s.hi.is_finite()) {
                return Err(err(
                    format!("sweep[{i}]"),
                    "lo and hi must be finite".into(),
                ));
            }
        }
        Ok(())
    }

    /// Number of time steps in the horizon.
    pub fn steps(&self) -> u32 {
        (self.horizon_days / self.step_days).round() as u32
    }

    /// USD reachable through `reaches`.
    pub fn reach_usd(&self, reaches: &[Pot]) -> Decimal {
        let mut seen_t = false;
        let mut seen_c = false;
        let mut total = Decimal::ZERO;
        for p in reaches {
            match p {
                Pot::Treasury if !seen_t => {
                    seen_t = true;
                    total += self.value_at_risk.treasury_usd;
                }
                Pot::CoveragePool if !seen_c => {
                    seen_c = true;
                    total += self.value_at_risk.coverage_pool_usd;
                }
                _ => {}
            }
        }
        total
    }
}

impl Detection {
    fn validate(&self, key: &str, file: &Path) -> Result<(), SimError> {
        let err = |f: &str, message: String| SimError::Invalid {
            file: file.to_owned(),
            key: format!("{key}.{f}"),
            message,
        };
        if !(self.mean_days > 0.0 && self.mean_days.is_finite()) {
            return Err(err(
                "mean_days",
                format!("must be > 0, got {}", self.mean_days),
            ));
        }
        match self.dist {
            DetectionDist::Exponential => Ok(()),
            DetectionDist::Gamma => match self.shape {
                Some(s) if s > 0.0 && s.is_finite() => Ok(()),
                Some(s) => Err(err("shape", format!("must be > 0, got {s}"))),
                None => Err(err("shape", "is required for dist = \"gamma\"".into())),
            },
            DetectionDist::Lognormal => match self.sigma {
                Some(s) if s > 0.0 && s.is_finite() => Ok(()),
                Some(s) => Err(err("sigma", format!("must be > 0, got {s}"))),
                None => Err(err("sigma", "is required for dist = \"lognormal\"".into())),
            },
        }
    }

    /// P(response time ≤ `days`), the chance the response comes in time to stop an action
    /// that takes effect `days` after the clock starts.
    pub fn cdf(&self, days: f64) -> f64 {
        use statrs::distribution::{ContinuousCDF, Exp, Gamma, LogNormal};
        if days <= 0.0 {
            return 0.0;
        }
        match self.dist {
            DetectionDist::Exponential => Exp::new(1.0 / self.mean_days)
                .map(|d| d.cdf(days))
                .unwrap_or(0.0),
            DetectionDist::Gamma => {
                let shape = self.shape.unwrap_or(1.0);
                Gamma::new(shape, shape / self.mean_days)
                    .map(|d| d.cdf(days))
                    .unwrap_or(0.0)
            }
            DetectionDist::Lognormal => {
                let sigma = self.sigma.unwrap_or(1.0);
                let mu = self.mean_days.ln() - sigma * sigma / 2.0;
                LogNormal::new(mu, sigma)
                    .map(|d| d.cdf(days))
                    .unwrap_or(0.0)
            }
        }
    }
}

/// Decimal USD to f64 for the hot loop and closed forms (not for reported money).
pub(crate) fn usd_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}
