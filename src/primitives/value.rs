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

/// A `Decimal` shown as its own `Display` shows it (`"342876.633809101227567912"`: every digit
/// of the scale, trailing zeros kept, a `-` for a negative sign, `-0.00` included), made
/// without `Decimal`'s digit-at-a-time loop. `rust_decimal` divides its 96-bit mantissa by
/// ten once a digit, three words each time; here `itoa` turns the mantissa into digits and
/// the point is put in. A million-claimant run shows two values a user in the stored rows
/// and one a loss row in `user_results.csv` (BENCHMARKS.md, "Session 11").
///
/// With a precision (`{:.2}`) it is `Decimal`'s `Display`, rounding and all.
#[derive(Debug, Clone, Copy)]
pub struct DecimalText(pub Decimal);

/// The text of a [`DecimalText`], made on the stack by [`DecimalText::text`]: a `-` when the
/// sign is negative, then the digits and the point (at most 1 + 32 bytes).
pub type DecimalChars = super::StackText<33>;

impl DecimalText {
    /// The text of [`Display`](std::fmt::Display) without a precision, sign included,
    /// without a formatter (for the CSV and JSON writers, which show millions).
    pub fn text(self) -> DecimalChars {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.0.mantissa().unsigned_abs()).as_bytes();
        let scale = self.0.scale() as usize;
        let mut text = DecimalChars::new();
        if self.0.is_sign_negative() {
            text.push(b"-");
        }
        // A scale is at most 28: at most 29 digits of a 96-bit mantissa and a point, or "0."
        // and 28 places.
        if scale == 0 {
            text.push(digits);
        } else if digits.len() > scale {
            let whole = digits.len() - scale;
            text.push(&digits[..whole]);
            text.push(b".");
            text.push(&digits[whole..]);
        } else {
            const ZEROS: &[u8; 28] = b"0000000000000000000000000000";
            text.push(b"0.");
            text.push(&ZEROS[..scale - digits.len()]);
            text.push(digits);
        }
        text
    }
}

impl std::fmt::Display for DecimalText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.precision().is_some() {
            return std::fmt::Display::fmt(&self.0, f);
        }
        let text = self.text();
        let unsigned = text.as_str().trim_start_matches('-');
        f.pad_integral(self.0.is_sign_positive(), "", unsigned)
    }
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

    /// `DecimalText` (its `Display` and [`DecimalText::text`]) is `Decimal`'s `Display` and its serialization: drawn mantissas of one,
    /// two and three words (so short ones, with more places than digits, come often), every
    /// scale, both signs; zero and negative zero at several scales; and a precision.
    #[test]
    fn decimal_text_is_the_text_of_decimal() {
        for (lo, neg, scale) in [
            (0, false, 0),
            (0, true, 0),
            (0, false, 2),
            (0, true, 28),
            (1, true, 28),
            (5, false, 1),
        ] {
            let d = Decimal::from_parts(lo, 0, 0, neg, scale);
            assert_eq!(DecimalText(d).to_string(), d.to_string());
            assert_eq!(DecimalText(d).text().as_str(), d.to_string());
        }
        let d = Decimal::from_str("-12.345").unwrap();
        assert_eq!(format!("{:.2}", DecimalText(d)), format!("{d:.2}"));
        assert_eq!(format!("{:>12}", DecimalText(d)), format!("{d:>12}"));
        proptest::proptest!(proptest::prelude::ProptestConfig::with_cases(4096), |(
            words in proptest::array::uniform3(proptest::prelude::any::<u32>()),
            used in 1..=3usize,
            neg in proptest::prelude::any::<bool>(),
            scale in 0..=28u32,
        )| {
            let w = |i: usize| if i < used { words[i] } else { 0 };
            let d = Decimal::from_parts(w(0), w(1), w(2), neg, scale);
            let text = DecimalText(d).to_string();
            proptest::prop_assert_eq!(&text, &d.to_string());
            let chars = DecimalText(d).text();
            proptest::prop_assert_eq!(chars.as_str(), &text);
            proptest::prop_assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{text}\""));
        });
    }
}
