//! Loss accounting: per (account, asset) loss in base units, valued in the numeraire.
//!
//! The stage's output, [`LossLedger`], is what `policy` consumes.

mod types;

pub use types::{Exclusion, ExclusionMode, GainRow, LossLedger, LossRow};
