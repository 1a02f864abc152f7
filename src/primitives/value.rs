//! Numeraire values: base units × price, as `Decimal`.

use super::{Amount, Asset};
use alloy_primitives::U256;
use rust_decimal::Decimal;

/// A value could not be represented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "value of {amount} base units of {asset} at price {price} overflows Decimal (max about 7.9e28)"
)]
pub struct ValueError {
    /// Asset symbol.
    pub asset: String,
    /// Amount, base units.
    pub amount: Amount,
    /// Price per whole token.
    pub price: Decimal,
}

/// Value of `amount` base units of `asset` at `price` numeraire units per whole token.
///
/// # Rounding
/// The token quantity keeps at most 28 significant digits: when `amount` needs more than
/// Decimal's 96-bit mantissa at the asset's scale, low digits are truncated (toward zero)
/// before the multiplication; the product is rounded by `Decimal` to 28 significant digits.
/// Values are for reports, rankings and tiers; payouts are always computed in base units.
///
/// # Errors
/// [`ValueError`] when the product exceeds `Decimal::MAX`.
pub fn value_of(amount: Amount, asset: &Asset, price: Decimal) -> Result<Decimal, ValueError> {
    let err = || ValueError {
        asset: asset.symbol.clone(),
        amount,
        price,
    };
    let mut raw = amount.raw();
    let mut scale = asset.decimals as u32;
    let limit = U256::from(u128::from(u64::MAX) << 32 | u128::from(u32::MAX)); // 2^96 - 1
    let ten = U256::from(10u8);
    // Shrink to a mantissa that fits 96 bits and a scale that fits 28.
    while raw > limit || scale > 28 {
        if scale == 0 {
            return Err(err());
        }
        raw /= ten; // floor: documented truncation of insignificant digits
        scale -= 1;
    }
    let m: u128 = raw.to();
    let qty = Decimal::from_i128_with_scale(m as i128, scale);
    qty.checked_mul(price).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn values_large_and_small() {
        let dai = Asset {
            symbol: "DAI".into(),
            address: None,
            decimals: 18,
        };
        let v = value_of(
            Amount::from(1_500_000_000_000_000_000u64),
            &dai,
            Decimal::from_str("2").unwrap(),
        )
        .unwrap();
        assert_eq!(v, Decimal::from(3));
        // SHIB-like: 1e33 base units does not fit Decimal directly, still valued.
        let big = Amount::new(U256::from(10u8).pow(U256::from(33u8)));
        let v = value_of(big, &dai, Decimal::from_str("0.00001").unwrap()).unwrap();
        assert_eq!(v, Decimal::from(10_000_000_000u64));
    }
}
