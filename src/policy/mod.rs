//! Reimbursement policy: the waterfall of funding sources, coverage pools, and the
//! pro-rata allocation of what they pay — who gets paid what, from which funds.
//!
//! Input: the loss stage's [`LossLedger`](crate::loss::LossLedger), the `[[funding]]`
//! sources ([`FundingSource`]), the `[policy]` table ([`PolicyConfig`]), the insurance
//! cover list ([`CoverList`]), the `[[assets]]` and reference [`Prices`]. Output:
//! [`PolicyResult`], plain data: totals per source, group and tier as fields, the per-user
//! and per-row outcomes as columns read through [`UserRef`] and [`RowRef`] (a million
//! claimants × 3 assets hold ≈ 0.6 GB). [`apply`] is pure: no I/O.
//!
//! # Units and invariants
//! All amounts are base units ([`Amount`](crate::primitives::Amount)); values are
//! `Decimal` numeraire and never decide a payout except through tier membership. Each
//! source pays in its own asset. A loss row of another asset is paid at the exact
//! rational ratio of the two prices (so a global pro rata is pro rata to value).
//!
//! Every run checks, as errors: per source `funds = bounty + paid + left_over` and
//! `paid + withheld <= funds − bounty`; per row `payout <= claim <= loss × cap`; per
//! (asset, pool, class) `Σcovered + Σhaircut = Σloss + Σexcess`; per payout asset
//! `Σ user payouts = Σ source paid <= Σ funds` (see [`PolicyResult::checks`]).
//!
//! # Rounding
//! Pro-rata shares are `floor(funds × claim / Σclaims)` with a 512-bit intermediate;
//! [`Rounding::LargestRemainder`] then hands out the floor dust one unit each by
//! descending remainder, ties to account ascending, then asset, then pool. Largest
//! remainder is not monotone in the funds (the Alabama paradox: one more unit of funds can
//! move a dust unit away from a user, so a user may get 1 unit less); floor is.
//!
//! # Monotonicity
//! More funds in any source never pays any user less (property-tested), with two
//! exceptions. The first is largest remainder's dust unit, above. The second is the
//! waterfall itself: an insurance source's claim is computed on what the user still has
//! unpaid *at its turn*, less the deductible, times `1 − coinsurance`, capped by the cover.
//! More funds in an earlier source lower that unpaid amount, so the insurer pays less;
//! when a later source would have paid the same rows anyway (for example one restricted to
//! the pool the earlier source paid), the user ends with less by at most what the insurer
//! now pays less. Put insurance last in the waterfall, or restrict it like its neighbours,
//! where that matters.

mod config;
mod engine;
mod error;
mod result;
mod verify;

pub use config::{
    Bounty, CoverList, DustRule, FundingSource, InsuranceTerms, PolicyConfig, Prices, Rounding,
    Scope, SourceKind, Tier, MAX_PAY_BPS,
};
pub use engine::apply;
pub(crate) use engine::apply_unverified;
pub use error::PolicyError;
pub use result::{
    residual_value, AssetAmount, Check, GroupTotals, Name, Payout, PolicyResult, RowRef, RowStatus,
    SourcePayment, SourceResult, TierTotals, UserRef,
};
pub(crate) use verify::{verify_against, LedgerTotals};

#[cfg(test)]
mod tests;
