//! Errors of the policy stage.

use crate::primitives::{Address, AmountError};

/// Why a policy could not be applied, or why its result was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A configuration field is out of range or malformed.
    #[error("{table}: field `{field}`: expected {expected}, got {got}")]
    InvalidField {
        /// Where: `funding source `id``, `[policy]`, `[[policy.tiers]] `name``, `prices`.
        table: String,
        /// The field name as written in the manifest.
        field: &'static str,
        /// What is accepted.
        expected: String,
        /// What was given.
        got: String,
    },
    /// Two `[[funding]]` entries have the same id.
    #[error("funding source `{0}` is listed twice: ids must be unique")]
    DuplicateSource(String),
    /// A source, restriction, dust rule or ledger row names an asset not in `[[assets]]`.
    #[error("{table}: field `{field}`: asset {asset:?} is not in the manifest's [[assets]]")]
    UnknownAsset {
        /// Where the name appears.
        table: String,
        /// Field name.
        field: &'static str,
        /// The unknown symbol.
        asset: String,
    },
    /// A source restricts to a pool or class that no loss row has.
    #[error("funding source `{source_id}`: field `{field}`: {name:?} matches no loss row (known: {known})")]
    UnknownGroup {
        /// Source id.
        source_id: String,
        /// `pools` or `classes`.
        field: &'static str,
        /// The unknown name.
        name: String,
        /// The names the ledger has, comma-separated.
        known: String,
    },
    /// The scope needs a restriction the source lacks.
    #[error("funding source `{source_id}`: scope {scope} needs field `{field}` on every source")]
    ScopeNeedsRestriction {
        /// Source id.
        source_id: String,
        /// `per_pool` or `per_class`.
        scope: &'static str,
        /// `pools` or `classes`.
        field: &'static str,
    },
    /// A source would pay a loss in another asset and one of the two has no price.
    #[error("funding source `{source_id}` (asset {source_asset}) may pay losses in {row_asset}: prices needed for both, missing {missing}")]
    MissingPrice {
        /// Source id.
        source_id: String,
        /// The source's asset.
        source_asset: String,
        /// The loss's asset.
        row_asset: String,
        /// The symbol without a price.
        missing: String,
    },
    /// The cover list names a source that is not an insurance source.
    #[error("cover list: source {0:?} is not a `[[funding]]` source of kind = \"insurance\"")]
    CoverForNonInsurance(String),
    /// Two ledger rows share (account, asset, pool).
    #[error("loss ledger: two rows for account {account}, asset {asset}, pool {pool:?}")]
    DuplicateRow {
        /// Account.
        account: Address,
        /// Asset symbol.
        asset: String,
        /// Pool.
        pool: Option<String>,
    },
    /// Arithmetic beyond 2^256 − 1 base units or Decimal's range.
    #[error("overflow while computing {what}: {source}")]
    Overflow {
        /// What was being computed.
        what: String,
        /// The arithmetic error.
        source: AmountError,
    },
    /// A numeraire value overflowed Decimal.
    #[error("numeraire value overflow while computing {0}")]
    ValueOverflow(String),
    /// A conservation invariant failed on the computed result: nothing may be published.
    #[error("invariant broken: {check} for {subject}: expected {expected}, got {got}")]
    Invariant {
        /// Which check.
        check: &'static str,
        /// Source id, asset, group or account.
        subject: String,
        /// Expected value.
        expected: String,
        /// Value found.
        got: String,
    },
}
