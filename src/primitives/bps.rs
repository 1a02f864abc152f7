//! Basis points: 1 bps = 1/10,000.

use alloy_primitives::U256;
use serde::{Deserialize, Serialize};

/// Out-of-range basis points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected basis points in 0..={max}, got {got}")]
pub struct BpsError {
    /// Value given.
    pub got: u64,
    /// Largest accepted.
    pub max: u64,
}

/// A rate in basis points (1/10,000). Values above 10,000 (100%) are allowed only where
/// a policy says so (a cap of 1.005 × loss is 10,050 bps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bps(pub u32);

impl Bps {
    /// 100%.
    pub const ONE: Bps = Bps(10_000);
    /// 0%.
    pub const ZERO: Bps = Bps(0);

    /// Checks `0 ..= max`.
    ///
    /// # Errors
    /// [`BpsError`] when above `max`.
    pub fn checked(v: u64, max: u64) -> Result<Self, BpsError> {
        if v > max {
            return Err(BpsError { got: v, max });
        }
        Ok(Bps(v as u32))
    }

    /// The numerator over 10,000, as `U256`, for [`crate::primitives::Amount::mul_div_floor`].
    pub fn numerator(self) -> U256 {
        U256::from(self.0)
    }

    /// 10,000 as `U256`.
    pub fn denominator() -> U256 {
        U256::from(10_000u32)
    }
}
