//! The policy's configuration: the `[[funding]]` waterfall and the `[policy]` table of the
//! incident manifest.
//!
//! Amounts in these tables are **base units written as decimal strings** (`"8000000000000000000000000"`
//! is 8,000,000 DAI): TOML integers stop at 2^63 − 1 and a token amount in base units
//! routinely exceeds that. Numeraire values (tier bounds) are decimal strings too.

use super::error::PolicyError;
use crate::loss::ExclusionMode;
use crate::primitives::{Amount, Bps, Decimal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest accepted `cap_bps` / tier `pay_bps`: 10× the loss (FTX paid its convenience
/// class 118%, Euler capped at 100.5%).
pub const MAX_PAY_BPS: u32 = 100_000;

/// What kind of money a funding source is. Only `recovered` may carry a bounty and only
/// `insurance` has cover terms; the others differ only in name (reports group by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Funds recovered from the attacker or white hats; may pay a bounty first.
    Recovered,
    /// Funds still left in the exploited contracts (Euler).
    Contract,
    /// Treasury or reserves (Cetus cash, Curve community fund).
    Treasury,
    /// An insurance or coverage pool: capacity, per-user cover, deductible, coinsurance.
    Insurance,
    /// A loan (Cetus: $30M from the Sui Foundation).
    Loan,
    /// Governance or IOU tokens (GRAIN, remBADGER, CRV).
    Token,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::Contract => "contract",
            Self::Treasury => "treasury",
            Self::Insurance => "insurance",
            Self::Loan => "loan",
            Self::Token => "token",
        }
    }
}

/// A white-hat bounty taken from recovered funds before anything is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounty {
    /// Share of the recovered amount, 0..=10,000 bps (Euler, Balancer: 1,000 = 10%).
    pub bps: Bps,
    /// Largest bounty in base units of the source's asset (Balancer: $1M per operation).
    pub cap: Option<Amount>,
}

/// Terms of an insurance / coverage-pool source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InsuranceTerms {
    /// Per user, base units of the source's asset, subtracted from the user's covered loss.
    pub deductible: Amount,
    /// Share of the loss above the deductible that the user keeps, 0..=10,000 bps.
    pub coinsurance: Bps,
}

/// One source of the ordered waterfall (`[[funding]]`). Each source pays toward what
/// remains unpaid after the sources before it.
///
/// TOML shape (`deny_unknown_fields`; amounts are base units as decimal strings):
///
/// ```toml
/// [[funding]]
/// id = "returned"            # unique, used in outputs and in the cover list
/// kind = "recovered"         # recovered | contract | treasury | insurance | loan | token
/// asset = "DAI"              # a symbol of [[assets]]; the source pays in this asset
/// amount = "8000000000000000000000000"   # funds, base units (not for insurance)
/// bounty_bps = 1000          # recovered only: bounty = min(amount × bps / 10000, bounty_cap)
/// bounty_cap = "1000000000000000000000000"
/// pools = ["pool-a"]         # optional scope restrictions: only rows of these pools,
/// assets = ["DAI"]           #   assets, classes are eligible
/// classes = ["retail"]
///
/// [[funding]]
/// id = "sherlock"
/// kind = "insurance"
/// asset = "USDC"
/// capacity = "3396964000000" # insurance: the pool's capacity instead of `amount`
/// deductible = "0"           # per user, base units of `asset`
/// coinsurance_bps = 0        # share above the deductible the user keeps
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFundingSource")]
pub struct FundingSource {
    /// Unique id (`[[funding]] id`).
    pub id: String,
    /// Kind of money.
    pub kind: SourceKind,
    /// Symbol of the asset the source pays in.
    pub asset: String,
    /// Funds in base units of `asset` (`amount`, or `capacity` for insurance).
    pub funds: Amount,
    /// Bounty taken first (recovered sources only).
    pub bounty: Option<Bounty>,
    /// Cover terms (insurance sources only, always set for them).
    pub insurance: Option<InsuranceTerms>,
    /// Only rows of these pools are eligible (`None`: no restriction).
    pub pools: Option<Vec<String>>,
    /// Only rows of these assets are eligible.
    pub assets: Option<Vec<String>>,
    /// Only rows of these classes are eligible.
    pub classes: Option<Vec<String>>,
}

/// The `[[funding]]` table as written, before checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFundingSource {
    id: String,
    kind: SourceKind,
    asset: String,
    amount: Option<String>,
    capacity: Option<String>,
    bounty_bps: Option<i64>,
    bounty_cap: Option<String>,
    deductible: Option<String>,
    coinsurance_bps: Option<i64>,
    pools: Option<Vec<String>>,
    assets: Option<Vec<String>>,
    classes: Option<Vec<String>>,
}

fn source_table(id: &str) -> String {
    format!("funding source `{id}`")
}

fn field_err(
    table: &str,
    field: &'static str,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> PolicyError {
    PolicyError::InvalidField {
        table: table.to_owned(),
        field,
        expected: expected.into(),
        got: got.into(),
    }
}

fn parse_amount(table: &str, field: &'static str, s: &str) -> Result<Amount, PolicyError> {
    s.parse::<Amount>().map_err(|_| {
        field_err(
            table,
            field,
            "a non-negative integer of base units as a decimal string",
            format!("{s:?}"),
        )
    })
}

fn parse_bps(table: &str, field: &'static str, v: i64, max: u32) -> Result<Bps, PolicyError> {
    if v < 0 || v > i64::from(max) {
        return Err(field_err(
            table,
            field,
            format!("basis points in 0..={max}"),
            v.to_string(),
        ));
    }
    Ok(Bps(v as u32))
}

impl TryFrom<RawFundingSource> for FundingSource {
    type Error = PolicyError;

    fn try_from(r: RawFundingSource) -> Result<Self, PolicyError> {
        let t = source_table(&r.id);
        if r.id.is_empty() {
            return Err(field_err("funding source", "id", "a non-empty id", "\"\""));
        }
        let insurance = r.kind == SourceKind::Insurance;
        let funds = if insurance {
            if r.amount.is_some() {
                return Err(field_err(
                    &t,
                    "amount",
                    "no `amount` on an insurance source (its funds are `capacity`)",
                    "amount",
                ));
            }
            let c = r
                .capacity
                .as_deref()
                .ok_or_else(|| field_err(&t, "capacity", "a capacity in base units", "nothing"))?;
            parse_amount(&t, "capacity", c)?
        } else {
            if r.capacity.is_some() {
                return Err(field_err(
                    &t,
                    "capacity",
                    format!(
                        "no `capacity` on a {} source (only insurance has one)",
                        r.kind.name()
                    ),
                    "capacity",
                ));
            }
            let a = r
                .amount
                .as_deref()
                .ok_or_else(|| field_err(&t, "amount", "an amount in base units", "nothing"))?;
            parse_amount(&t, "amount", a)?
        };
        let bounty = match (r.bounty_bps, r.bounty_cap) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(field_err(
                    &t,
                    "bounty_cap",
                    "`bounty_bps` with `bounty_cap`",
                    "bounty_cap alone",
                ))
            }
            (Some(bps), cap) => {
                if r.kind != SourceKind::Recovered {
                    return Err(field_err(
                        &t,
                        "bounty_bps",
                        "a bounty only on kind = \"recovered\"",
                        r.kind.name(),
                    ));
                }
                let bps = parse_bps(&t, "bounty_bps", bps, 10_000)?;
                let cap = cap
                    .map(|c| parse_amount(&t, "bounty_cap", &c))
                    .transpose()?;
                Some(Bounty { bps, cap })
            }
        };
        let terms = if insurance {
            let deductible = r
                .deductible
                .map(|d| parse_amount(&t, "deductible", &d))
                .transpose()?
                .unwrap_or(Amount::ZERO);
            let coinsurance = parse_bps(
                &t,
                "coinsurance_bps",
                r.coinsurance_bps.unwrap_or(0),
                10_000,
            )?;
            Some(InsuranceTerms {
                deductible,
                coinsurance,
            })
        } else {
            if r.deductible.is_some() {
                return Err(field_err(
                    &t,
                    "deductible",
                    "a deductible only on kind = \"insurance\"",
                    r.kind.name(),
                ));
            }
            if r.coinsurance_bps.is_some() {
                return Err(field_err(
                    &t,
                    "coinsurance_bps",
                    "coinsurance only on kind = \"insurance\"",
                    r.kind.name(),
                ));
            }
            None
        };
        let src = FundingSource {
            id: r.id,
            kind: r.kind,
            asset: r.asset,
            funds,
            bounty,
            insurance: terms,
            pools: r.pools,
            assets: r.assets,
            classes: r.classes,
        };
        src.validate()?;
        Ok(src)
    }
}

impl FundingSource {
    /// Checks the source on its own (not against the ledger): bps ranges, kind-specific
    /// fields, non-empty restriction lists.
    ///
    /// # Errors
    /// [`PolicyError::InvalidField`] naming the source id and the field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let t = source_table(&self.id);
        if let Some(b) = &self.bounty {
            if self.kind != SourceKind::Recovered {
                return Err(field_err(
                    &t,
                    "bounty_bps",
                    "a bounty only on kind = \"recovered\"",
                    self.kind.name(),
                ));
            }
            if b.bps.0 > 10_000 {
                return Err(field_err(
                    &t,
                    "bounty_bps",
                    "basis points in 0..=10000",
                    b.bps.0.to_string(),
                ));
            }
        }
        match (&self.insurance, self.kind) {
            (Some(i), SourceKind::Insurance) => {
                if i.coinsurance.0 > 10_000 {
                    return Err(field_err(
                        &t,
                        "coinsurance_bps",
                        "basis points in 0..=10000",
                        i.coinsurance.0.to_string(),
                    ));
                }
            }
            (None, SourceKind::Insurance) => {
                return Err(field_err(
                    &t,
                    "deductible",
                    "insurance terms on an insurance source",
                    "none",
                ))
            }
            (Some(_), k) => {
                return Err(field_err(
                    &t,
                    "deductible",
                    "insurance terms only on kind = \"insurance\"",
                    k.name(),
                ))
            }
            (None, _) => {}
        }
        for (field, list) in [
            ("pools", &self.pools),
            ("assets", &self.assets),
            ("classes", &self.classes),
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                return Err(field_err(
                    &t,
                    field,
                    "a non-empty list (or no key at all)",
                    "[]",
                ));
            }
        }
        Ok(())
    }
}

/// Which rows a source may pay (besides its own `pools`/`assets`/`classes` restrictions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every source may pay every row; a source of another asset than the row's pays
    /// pro rata to the loss's value at the policy's prices (Bitfinex, Euler).
    Global,
    /// In kind: a source of asset A pays only losses of asset A (Harvest, Eminence).
    PerAsset,
    /// Per pool, non-socialized: every source must name its `pools`, and pays only those
    /// pools' rows (Balancer 2025, Curve, Cetus).
    PerPool,
    /// Per user class: every source must name its `classes` (JPEG'd, KyberSwap).
    PerClass,
}

/// How a pro-rata share is rounded to base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// `floor(funds × claim / Σclaims)`; the dust (at most n − 1 units) stays with the source.
    /// Harvest and Eminence reproduce exactly with floor.
    #[default]
    Floor,
    /// Floor, then the dust is handed out one unit each by descending remainder; ties by
    /// account ascending, then asset, then pool (the ledger's row order). Pays exactly
    /// `min(funds, Σclaims)`.
    LargestRemainder,
}

/// Dust cut-off: rows whose loss is below a per-asset minimum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DustRule {
    /// `withhold` (the row stays in every denominator and is paid 0: Eminence) or
    /// `redistribute` (the row is removed before the pro rata: Curve).
    pub mode: ExclusionMode,
    /// Per asset symbol, the smallest loss in base units that is not dust (decimal string).
    pub min: BTreeMap<String, Amount>,
}

/// A convenience class: users whose total loss value lies in `min_value ..= max_value`
/// have a claim of `loss × pay_bps / 10000` per row, paid by every source before the
/// other users (Radiant: $10–$1,000 at 7,000 bps; FTX: under $50K at 11,800 bps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Name shown in outputs.
    pub name: String,
    /// Smallest total loss value in the tier, numeraire, inclusive (decimal string).
    pub min_value: Decimal,
    /// Largest total loss value in the tier, numeraire, inclusive (decimal string).
    pub max_value: Decimal,
    /// Claim as a share of the loss, 0..=100,000 bps.
    pub pay_bps: Bps,
}

/// The `[policy]` table (`deny_unknown_fields`).
///
/// ```toml
/// [policy]
/// scope = "per_asset"          # global | per_asset | per_pool | per_class
/// rounding = "floor"           # floor (default) | largest_remainder
/// cap_bps = 10000              # claim = floor(loss × cap_bps / 10000); Euler: 10050
///
/// [policy.dust]                # optional
/// mode = "withhold"            # withhold | redistribute
/// min = { DAI = "1000000000000000000" }   # per asset, base units
///
/// [[policy.tiers]]             # optional, priority classes
/// name = "convenience"
/// min_value = "10"
/// max_value = "1000"
/// pay_bps = 7000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Allocation topology.
    pub scope: Scope,
    /// Rounding of pro-rata shares.
    #[serde(default)]
    pub rounding: Rounding,
    /// Claim as a share of the loss, 1..=100,000 bps (default 10,000 = the loss).
    #[serde(default = "default_cap")]
    pub cap_bps: Bps,
    /// Dust cut-off.
    #[serde(default)]
    pub dust: Option<DustRule>,
    /// Convenience classes, paid first; their value ranges must not overlap.
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

fn default_cap() -> Bps {
    Bps::ONE
}

impl PolicyConfig {
    /// A plain policy: given scope, floor rounding, claim = loss, no dust rule, no tiers.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            rounding: Rounding::Floor,
            cap_bps: Bps::ONE,
            dust: None,
            tiers: Vec::new(),
        }
    }

    /// Checks ranges: `cap_bps` in 1..=100,000, tiers with `0 <= min_value <= max_value`,
    /// `pay_bps <= 100,000`, unique names and no overlapping ranges.
    ///
    /// # Errors
    /// [`PolicyError::InvalidField`] naming the table and field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.cap_bps.0 == 0 || self.cap_bps.0 > MAX_PAY_BPS {
            return Err(field_err(
                "[policy]",
                "cap_bps",
                format!("basis points in 1..={MAX_PAY_BPS}"),
                self.cap_bps.0.to_string(),
            ));
        }
        let mut tiers: Vec<&Tier> = self.tiers.iter().collect();
        tiers.sort_by_key(|t| t.min_value);
        for t in &tiers {
            let table = format!("[[policy.tiers]] `{}`", t.name);
            if t.pay_bps.0 > MAX_PAY_BPS {
                return Err(field_err(
                    &table,
                    "pay_bps",
                    format!("basis points in 0..={MAX_PAY_BPS}"),
                    t.pay_bps.0.to_string(),
                ));
            }
            if t.min_value.is_sign_negative() {
                return Err(field_err(
                    &table,
                    "min_value",
                    "a value >= 0",
                    t.min_value.to_string(),
                ));
            }
            if t.max_value < t.min_value {
                return Err(field_err(
                    &table,
                    "max_value",
                    format!("a value >= min_value {}", t.min_value),
                    t.max_value.to_string(),
                ));
            }
        }
        for w in tiers.windows(2) {
            if w[1].min_value <= w[0].max_value {
                return Err(field_err(
                    &format!("[[policy.tiers]] `{}`", w[1].name),
                    "min_value",
                    format!(
                        "a range that does not overlap tier `{}` (up to {})",
                        w[0].name, w[0].max_value
                    ),
                    w[1].min_value.to_string(),
                ));
            }
        }
        let mut names: Vec<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(field_err(
                "[[policy.tiers]]",
                "name",
                "unique tier names",
                w[0],
            ));
        }
        Ok(())
    }
}

/// Per-user cover of insurance sources: source id → account → cover in base units of the
/// source's asset (filled from the manifest's cover CSV). An insurance source with no
/// entry here covers every user without limit (deductible and coinsurance still apply);
/// one with an entry covers only the listed users, each up to its cover.
pub type CoverList = BTreeMap<String, BTreeMap<crate::primitives::Address, Amount>>;

/// Prices for cross-asset payment: asset symbol → numeraire per whole token (> 0).
/// Needed only where a source pays a loss of another asset (global, per-pool and
/// per-class scopes); the same reference prices the loss stage valued rows with.
pub type Prices = BTreeMap<String, Decimal>;
