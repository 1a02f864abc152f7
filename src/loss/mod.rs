//! Loss accounting: per (account, asset, pool) loss in base units, valued in the numeraire.
//!
//! The stage's output, [`LossLedger`], is what `policy` consumes. Gains (the attacker's
//! side) are reported beside it and never counted as loss.

mod compute;
mod types;

pub use compute::{
    compute, split_largest_remainder, LossError, LossInputs, LossStats, VaultInput, WrapperInput,
};
pub use types::{Exclusion, ExclusionMode, GainRow, LossLedger, LossRow};
