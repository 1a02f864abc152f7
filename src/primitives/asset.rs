//! [`Asset`]: a token, identified in manifests by its symbol.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// A token: its id in the manifest (usually the symbol), contract address (absent for
/// the chain's native asset), and decimals (base units per token = 10^decimals).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Asset {
    /// Key used throughout the manifest and outputs, e.g. `"DAI"`.
    pub symbol: String,
    /// Token contract; `None` for the native asset (ETH).
    pub address: Option<Address>,
    /// Decimals: one whole token is 10^decimals base units.
    pub decimals: u8,
}
