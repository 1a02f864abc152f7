//! The loss stage's plain output data.

use crate::primitives::Name;
use crate::primitives::{Address, Amount, Decimal};
use serde::{Deserialize, Serialize};

/// How an excluded account's share is treated (DOMAIN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionMode {
    /// The row is removed before the pro rata, so the others get its share.
    Redistribute,
    /// The row stays in the denominator and its share is simply not paid
    /// (Eminence 2020 dropped the 20 losses under 1 DAI this way).
    Withhold,
}

/// Why an account is excluded, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Exclusion {
    /// Human reason (attacker, bot, liquidator, wrapper, already insured …).
    pub reason: String,
    /// Redistribute or withhold.
    pub mode: ExclusionMode,
}

/// One account's loss of one asset in one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossRow {
    /// The account that lost.
    pub account: Address,
    /// Asset symbol (a key of the manifest's `[[assets]]`), shared by every row of it.
    pub asset: Name,
    /// Pool, vault or market the loss happened in; `None` when the manifest names none.
    /// Used by the `per_pool` allocation scope.
    pub pool: Option<Name>,
    /// User class (for the `per_class` scope); `None` when unclassified.
    pub class: Option<Name>,
    /// Loss in base units of `asset`, after netting; never zero in a ledger.
    pub amount: Amount,
    /// Loss valued in the numeraire at the manifest's reference price.
    pub value: Decimal,
    /// Set when the account is excluded from payment (shared by all of its rows).
    pub exclusion: Option<std::sync::Arc<Exclusion>>,
}

/// An account that gained (the attacker's side): reported, never counted as loss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GainRow {
    /// The account that gained.
    pub account: Address,
    /// Asset symbol.
    pub asset: String,
    /// Gain in base units.
    pub amount: Amount,
}

/// All losses of an incident, sorted by (account, asset, pool) so that row order of the
/// inputs never changes outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossLedger {
    /// Losses, sorted by (account, asset, pool), unique on that key.
    pub rows: Vec<LossRow>,
    /// Gains, sorted by (account, asset).
    pub gains: Vec<GainRow>,
}
