//! The policy stage's plain output data.

use super::config::SourceKind;
use crate::primitives::{Address, Amount, Decimal};
use serde::Serialize;
use std::sync::Arc;

/// A shared name (asset symbol, pool, class, source id, tier): one allocation per distinct
/// name however many rows carry it. Serialises as a plain string.
pub type Name = Arc<str>;

/// What the policy did with a loss row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// In the pro rata and paid.
    Paid,
    /// Excluded by the loss stage, share withheld (kept in the denominator, paid 0).
    ExcludedWithheld,
    /// Excluded by the loss stage, share redistributed (removed before the pro rata).
    ExcludedRedistributed,
    /// Below the dust minimum, share withheld.
    DustWithheld,
    /// Below the dust minimum, share redistributed.
    DustRedistributed,
}

impl RowStatus {
    /// The status as written in reports and JSON (`paid`, `dust_withheld`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::ExcludedWithheld => "excluded_withheld",
            Self::ExcludedRedistributed => "excluded_redistributed",
            Self::DustWithheld => "dust_withheld",
            Self::DustRedistributed => "dust_redistributed",
        }
    }
    /// True for the statuses that are never paid.
    pub fn is_unpaid(self) -> bool {
        self != Self::Paid
    }
    /// True when the row stays in the denominators (paid or withheld).
    pub fn in_denominator(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::ExcludedWithheld | Self::DustWithheld
        )
    }
}

/// What one source gave one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcePayment {
    /// The source's id.
    pub source: Name,
    /// Allocated amount, base units of the source's asset. Paid to the user unless the
    /// row is withheld, in which case it stays with the source (its `withheld`).
    pub amount: Amount,
    /// The part of the row's claim this settles, base units of the row's asset
    /// (equal to `amount` in kind; converted at the policy's prices otherwise).
    pub covered: Amount,
}

/// One loss row after the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowResult {
    /// Asset symbol of the loss.
    pub asset: Name,
    /// Pool, if any.
    pub pool: Option<Name>,
    /// Class, if any.
    pub class: Option<Name>,
    /// Loss, base units of `asset`.
    pub loss: Amount,
    /// Loss value, numeraire (from the ledger).
    pub value: Decimal,
    /// What the policy did with the row.
    pub status: RowStatus,
    /// What the row may receive, base units of `asset`: `floor(loss × bps / 10000)` with
    /// the tier's `pay_bps` or the policy's `cap_bps`; 0 for redistributed rows.
    pub claim: Amount,
    /// Part of the claim settled by payments (0 for withheld and redistributed rows).
    pub covered: Amount,
    /// Part of the claim settled by allocations that were withheld (withheld rows only).
    pub withheld: Amount,
    /// `loss − covered` when covered ≤ loss, else 0: the loss not made good.
    pub haircut: Amount,
    /// `covered − loss` when a cap above 100% paid more than the loss, else 0.
    pub excess: Amount,
    /// Allocations from each source, in waterfall order.
    pub sources: Vec<SourcePayment>,
}

/// An amount of one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetAmount {
    /// Asset symbol.
    pub asset: Name,
    /// Base units.
    pub amount: Amount,
}

/// One user's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserResult {
    /// The account.
    pub account: Address,
    /// Convenience class, if the user's total loss value fell in one.
    pub tier: Option<Name>,
    /// Σ value of the user's rows, numeraire.
    pub loss_value: Decimal,
    /// Value of what is not made good: Σ value × haircut / loss (see [`residual_value`]).
    pub residual_value: Decimal,
    /// The user's rows, sorted by (asset, pool).
    pub rows: Vec<RowResult>,
    /// Total paid to the user per payout asset (the sources' assets), sorted by symbol,
    /// zero amounts left out. This is what the claim tree pays.
    pub payouts: Vec<AssetAmount>,
}

/// One source after the waterfall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceResult {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: SourceKind,
    /// Asset paid.
    pub asset: String,
    /// Funds (amount or capacity), base units.
    pub funds: Amount,
    /// Bounty taken first, base units.
    pub bounty: Amount,
    /// Σ claims the source saw (base units of its asset), over all priority rounds.
    pub claims: Amount,
    /// Paid to users.
    pub paid: Amount,
    /// Allocated to withheld rows and kept (part of `left_over`).
    pub withheld: Amount,
    /// `funds − bounty − paid`: withheld shares, floor dust and funds beyond the claims.
    pub left_over: Amount,
}

/// Totals of one (asset, pool, class) group. `covered + haircut = loss + excess`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupTotals {
    /// Asset.
    pub asset: String,
    /// Pool.
    pub pool: Option<String>,
    /// Class.
    pub class: Option<String>,
    /// Number of rows.
    pub rows: u64,
    /// Σ loss, base units.
    pub loss: Amount,
    /// Σ claim.
    pub claim: Amount,
    /// Σ covered.
    pub covered: Amount,
    /// Σ withheld.
    pub withheld: Amount,
    /// Σ haircut.
    pub haircut: Amount,
    /// Σ excess.
    pub excess: Amount,
}

/// Totals of one tier (or of the users in none, `tier = None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierTotals {
    /// Tier name; `None` for users in no tier.
    pub tier: Option<String>,
    /// Number of users.
    pub users: u64,
    /// Σ loss value.
    pub loss_value: Decimal,
    /// Σ residual value.
    pub residual_value: Decimal,
}

/// A conservation check that passed (a failing one is an error, never a report line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: &'static str,
    /// For which source, asset or group.
    pub subject: String,
    /// The equal (or bounding) totals, as text.
    pub detail: String,
}

/// Everything the policy decided. Deterministic: sorted by account, then (asset, pool);
/// sources in waterfall order; groups by (asset, pool, class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyResult {
    /// Per user, sorted by account.
    pub users: Vec<UserResult>,
    /// Per source, waterfall order.
    pub sources: Vec<SourceResult>,
    /// Per (asset, pool, class).
    pub groups: Vec<GroupTotals>,
    /// Per tier, in tier order, then `None`.
    pub tiers: Vec<TierTotals>,
    /// Σ payouts per payout asset, sorted by symbol.
    pub payouts: Vec<AssetAmount>,
    /// The conservation checks that were run (all passed).
    pub checks: Vec<Check>,
}

/// `value × haircut / loss`.
///
/// # Rounding
/// The fraction `haircut / loss` is floored to 18 decimal places, the product is rounded by
/// `Decimal` (28 significant digits). A report figure; payouts never depend on it.
pub fn residual_value(value: Decimal, haircut: Amount, loss: Amount) -> Option<Decimal> {
    if haircut.is_zero() || loss.is_zero() {
        return Some(Decimal::ZERO);
    }
    if haircut >= loss {
        return Some(value);
    }
    let scale = crate::primitives::U256::from(1_000_000_000_000_000_000u64);
    let f = haircut.mul_div_floor(scale, loss.raw()).ok()?; // < 1e18
    let f: u128 = f.raw().to();
    value.checked_mul(Decimal::from_i128_with_scale(f as i128, 18))
}

#[cfg(test)]
mod tests {
    use super::RowStatus;

    #[test]
    fn status_text_is_its_serde_name() {
        for s in [
            RowStatus::Paid,
            RowStatus::ExcludedWithheld,
            RowStatus::ExcludedRedistributed,
            RowStatus::DustWithheld,
            RowStatus::DustRedistributed,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
    }
}
