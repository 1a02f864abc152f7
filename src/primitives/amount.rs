//! [`Amount`]: a token quantity in base units (10^-decimals of one token) over `U256`.

use alloy_primitives::{U256, U512};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// Errors from amount arithmetic and parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// A sum or product exceeded 2^256 − 1 base units.
    #[error("amount overflows 2^256-1 base units")]
    Overflow,
    /// A subtraction would go below zero.
    #[error("amount underflow: {a} - {b} is negative")]
    Underflow {
        /// Minuend, base units.
        a: U256,
        /// Subtrahend, base units.
        b: U256,
    },
    /// Division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The text is not a non-negative number.
    #[error("expected a non-negative decimal amount, got {0:?}")]
    Invalid(String),
    /// A negative amount was given.
    #[error("expected a non-negative amount, got {0:?}")]
    Negative(String),
    /// More fractional digits than the asset's decimals.
    #[error("{got:?} has more decimal places than the asset's {decimals}")]
    TooManyDecimals {
        /// The text given.
        got: String,
        /// The asset's decimals.
        decimals: u8,
    },
    /// The number does not fit in 2^256 − 1 base units.
    #[error("{0:?} exceeds 2^256-1 base units")]
    TooLarge(String),
}

/// A token amount in base units (10^-decimals of one whole token), 0 ..= 2^256 − 1.
///
/// Arithmetic is checked: every operation that could wrap returns
/// [`AmountError::Overflow`] or [`AmountError::Underflow`] instead.
/// Serialises as a decimal string of base units (as OpenZeppelin's `dump()` and most
/// claim CSVs write amounts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(U256);

impl Amount {
    /// Zero base units.
    pub const ZERO: Self = Self(U256::ZERO);
    /// 2^256 − 1 base units.
    pub const MAX: Self = Self(U256::MAX);

    /// Wraps a raw `U256` of base units.
    pub const fn new(raw: U256) -> Self {
        Self(raw)
    }

    /// From a `u128` of base units.
    pub fn from_u128(v: u128) -> Self {
        Self(U256::from(v))
    }

    /// The raw `U256` of base units.
    pub const fn raw(self) -> U256 {
        self.0
    }

    /// True when zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `self + rhs`.
    ///
    /// # Errors
    /// [`AmountError::Overflow`] above 2^256 − 1.
    pub fn checked_add(self, rhs: Self) -> Result<Self, AmountError> {
        self.0
            .checked_add(rhs.0)
            .map(Self)
            .ok_or(AmountError::Overflow)
    }

    /// `self − rhs`.
    ///
    /// # Errors
    /// [`AmountError::Underflow`] when `rhs > self`.
    pub fn checked_sub(self, rhs: Self) -> Result<Self, AmountError> {
        self.0
            .checked_sub(rhs.0)
            .map(Self)
            .ok_or(AmountError::Underflow {
                a: self.0,
                b: rhs.0,
            })
    }

    /// `max(0, self − rhs)`: for losses, where a gain is not a negative loss.
    pub fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// `self × rhs` (both in base units; used for share × price-per-share scaled values).
    ///
    /// # Errors
    /// [`AmountError::Overflow`] above 2^256 − 1.
    pub fn checked_mul(self, rhs: U256) -> Result<Self, AmountError> {
        self.0
            .checked_mul(rhs)
            .map(Self)
            .ok_or(AmountError::Overflow)
    }

    /// Sums amounts, checked.
    ///
    /// # Errors
    /// [`AmountError::Overflow`] when the total exceeds 2^256 − 1.
    pub fn checked_sum<I: IntoIterator<Item = Self>>(iter: I) -> Result<Self, AmountError> {
        iter.into_iter().try_fold(Self::ZERO, Self::checked_add)
    }

    /// `floor(self × num / den)` with a 512-bit intermediate, and the remainder
    /// `(self × num) mod den` (for largest-remainder rounding).
    ///
    /// # Rounding
    /// Floor (toward zero). The remainder is in units of `1/den` base units.
    ///
    /// # Errors
    /// [`AmountError::DivisionByZero`] when `den == 0`; [`AmountError::Overflow`] when the
    /// quotient exceeds 2^256 − 1 (possible only when `num > den`).
    pub fn mul_div_rem(self, num: U256, den: U256) -> Result<(Self, U256), AmountError> {
        if den.is_zero() {
            return Err(AmountError::DivisionByZero);
        }
        // The same quotient and remainder in narrower arithmetic when the product fits:
        // 128 bits (pro-rata shares of token amounts mostly do), then 256. A 512-bit
        // division was ≈ 4% of a million-claimant run's CPU, on the policy's one thread.
        if let (Some(a), Some(b), Some(d)) = (
            u128::try_from(self.0).ok(),
            u128::try_from(num).ok(),
            u128::try_from(den).ok(),
        ) {
            if let Some(p) = a.checked_mul(b) {
                return Ok((Self(U256::from(p / d)), U256::from(p % d)));
            }
        }
        if let Some(p) = self.0.checked_mul(num) {
            let (q, r) = p.div_rem(den);
            return Ok((Self(q), r));
        }
        let prod = U512::from(self.0) * U512::from(num); // cannot overflow 512 bits
        let d = U512::from(den);
        let (q, r) = prod.div_rem(d);
        if q.bit_len() > 256 {
            return Err(AmountError::Overflow);
        }
        let q: U256 = q.to();
        let r: U256 = r.to(); // r < den <= U256::MAX
        Ok((Self(q), r))
    }

    /// `floor(self × num / den)` with a 512-bit intermediate. See [`Amount::mul_div_rem`].
    ///
    /// # Errors
    /// As [`Amount::mul_div_rem`].
    pub fn mul_div_floor(self, num: U256, den: U256) -> Result<Self, AmountError> {
        self.mul_div_rem(num, den).map(|(q, _)| q)
    }

    /// `ceil(self × num / den)` with a 512-bit intermediate.
    ///
    /// # Rounding
    /// Ceiling (away from zero).
    ///
    /// # Errors
    /// As [`Amount::mul_div_rem`].
    pub fn mul_div_ceil(self, num: U256, den: U256) -> Result<Self, AmountError> {
        let (q, r) = self.mul_div_rem(num, den)?;
        if r.is_zero() {
            Ok(q)
        } else {
            q.checked_add(Self(U256::from(1u8)))
        }
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Self) -> Self {
        if self <= other {
            self
        } else {
            other
        }
    }
}

impl From<U256> for Amount {
    fn from(v: U256) -> Self {
        Self(v)
    }
}

impl From<u64> for Amount {
    fn from(v: u64) -> Self {
        Self(U256::from(v))
    }
}

/// An amount's decimal digits, made on the stack by [`Amount::digits`]: 1 to 78 ASCII
/// digits (2^256 − 1 has 78), no sign, no separators.
pub type AmountDigits = super::StackText<78>;

impl Amount {
    /// The value below 2^128, when it is.
    fn narrow(self) -> Option<u128> {
        match self.0.as_limbs() {
            &[lo, hi, 0, 0] => Some((u128::from(hi) << 64) | u128::from(lo)),
            _ => None,
        }
    }

    /// The decimal digits of the base units, the text of `U256`'s `Display`, without a
    /// formatter: the outputs and stored rows of a million-claimant run write tens of
    /// millions of amounts (`user_results.csv` alone seven a loss row), and going through
    /// `core::fmt` cost more than making the digits.
    ///
    /// Below 2^128 (every amount of a real token so far) the digits come from `itoa`, which
    /// divides by 10^16 with a multiplication; `U256`'s own `Display` (and `u128`'s, tried
    /// in session 10) divide in software (BENCHMARKS.md, "Session 11").
    pub fn digits(self) -> AmountDigits {
        let mut text = AmountDigits::new();
        match self.narrow() {
            Some(v) => text.push(itoa::Buffer::new().format(v).as_bytes()),
            None => {
                use fmt::Write as _;
                write!(text, "{}", self.0).expect("2^256 - 1 has 78 digits");
            }
        }
        text
    }

    /// Appends [`Amount::digits`] to `out`.
    pub fn push_digits(self, out: &mut Vec<u8>) {
        match self.narrow() {
            Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            None => out.extend_from_slice(self.digits().as_bytes()),
        }
    }
}

impl fmt::Display for Amount {
    /// Decimal base units, the same text as `U256`'s `Display` (see [`Amount::digits`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad_integral(true, "", self.digits().as_str())
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    /// Parses a decimal integer of base units (no sign, no fraction, no exponent).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_units(s, 0)
    }
}

impl Serialize for Amount {
    /// The decimal digits of the base units, as a string ([`Amount::digits`]).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.digits().as_str())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a human amount (`"1234.5"`) into base units of an asset with `decimals`.
///
/// Accepts digits with at most one `.`; `_` and `,` are not accepted, nor signs, exponents
/// or surrounding spaces (callers trim). `"1.50"` with 1 decimal is accepted (trailing
/// zeros are exact); `"1.05"` with 1 decimal is an error, never rounded.
///
/// # Errors
/// [`AmountError::Negative`], [`AmountError::Invalid`], [`AmountError::TooManyDecimals`],
/// [`AmountError::TooLarge`].
pub fn parse_units(s: &str, decimals: u8) -> Result<Amount, AmountError> {
    // At most 19 digits and nothing else (10^19 − 1 < 2^64), as base-unit columns mostly
    // are: one pass; then scaled as below. Anything else takes the general path.
    if (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        let v = s.bytes().fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
        return scale_up(U256::from(v), decimals as usize)
            .map(Amount)
            .ok_or_else(|| AmountError::TooLarge(s.to_owned()));
    }
    if s.starts_with('-') {
        return Err(AmountError::Negative(s.to_owned()));
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty())
        || !digits_ok(int)
        || !digits_ok(frac)
        || (s.contains('.') && frac.is_empty() && int.is_empty())
    {
        return Err(AmountError::Invalid(s.to_owned()));
    }
    let frac_trim = frac.trim_end_matches('0');
    if frac_trim.len() > decimals as usize {
        return Err(AmountError::TooManyDecimals {
            got: s.to_owned(),
            decimals,
        });
    }
    let too_large = || AmountError::TooLarge(s.to_owned());
    // Digits are gathered 19 at a time in a u64 (10^19 < 2^64) and folded into the U256 as
    // `v × 10^k + chunk`, checked: a balance of 20 digits costs two wide steps, not twenty.
    let mut v = U256::ZERO;
    let (mut chunk, mut k) = (0u64, 0u32);
    let pad = decimals as usize - frac_trim.len();
    let fold = |v: U256, chunk: u64, k: u32| -> Option<U256> {
        v.checked_mul(U256::from(10u64.pow(k)))?
            .checked_add(U256::from(chunk))
    };
    for b in int.bytes().chain(frac_trim.bytes()) {
        chunk = chunk * 10 + u64::from(b - b'0');
        k += 1;
        if k == 19 {
            v = fold(v, chunk, k).ok_or_else(too_large)?;
            (chunk, k) = (0, 0);
        }
    }
    v = fold(v, chunk, k).ok_or_else(too_large)?;
    scale_up(v, pad).map(Amount).ok_or_else(too_large)
}

/// `v × 10^pad`, checked (`None` past 2^256 − 1).
fn scale_up(mut v: U256, pad: usize) -> Option<U256> {
    for _ in 0..pad / 19 {
        v = v.checked_mul(U256::from(10u64.pow(19)))?;
    }
    v.checked_mul(U256::from(10u64.pow((pad % 19) as u32)))
}

/// Formats base units as a human amount with `decimals` places, trailing zeros trimmed
/// (`1500000, 6 → "1.5"`; `0 → "0"`). Exact: no rounding.
pub fn format_units(a: Amount, decimals: u8) -> String {
    let s = a.0.to_string();
    let d = decimals as usize;
    if d == 0 {
        return s;
    }
    let (int, frac) = if s.len() > d {
        let (i, f) = s.split_at(s.len() - d);
        (i.to_owned(), f.to_owned())
    } else {
        ("0".to_owned(), format!("{}{}", "0".repeat(d - s.len()), s))
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mul_div_rem` by the 512-bit route alone, as it was before the narrow fast paths.
    fn mul_div_rem_512(a: U256, num: U256, den: U256) -> Option<(U256, U256)> {
        let (q, r) = (U512::from(a) * U512::from(num)).div_rem(U512::from(den));
        (q.bit_len() <= 256).then(|| (q.to(), r.to()))
    }

    #[test]
    fn mul_div_gives_the_512_bit_result_on_both_sides_of_every_fast_path_boundary() {
        // Values around 2^k for k at and near 64, 128, 192 and 256 bits, so that products
        // fall just inside and just outside 128 and 256 bits.
        let mut vals = vec![
            U256::ZERO,
            U256::from(1u8),
            U256::from(3u8),
            U256::from(10u8).pow(U256::from(18u8)),
        ];
        for k in [
            1usize, 63, 64, 65, 100, 127, 128, 129, 170, 191, 192, 193, 255,
        ] {
            let p = U256::from(1u8) << k;
            vals.extend([
                p - U256::from(1u8),
                p,
                p + U256::from(1u8),
                p + p / U256::from(3u8),
            ]);
        }
        vals.push(U256::MAX);
        let mut checked = 0;
        for &a in &vals {
            for &num in &vals {
                for &den in &vals {
                    let got = Amount(a).mul_div_rem(num, den);
                    if den.is_zero() {
                        assert!(matches!(got, Err(AmountError::DivisionByZero)));
                        continue;
                    }
                    match mul_div_rem_512(a, num, den) {
                        Some((q, r)) => {
                            let (gq, gr) = got.unwrap();
                            assert_eq!((gq.0, gr), (q, r), "{a} × {num} / {den}");
                        }
                        None => assert!(
                            matches!(got, Err(AmountError::Overflow)),
                            "{a} × {num} / {den}"
                        ),
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn parse_and_format_round_trip() {
        assert_eq!(parse_units("1.5", 6).unwrap(), Amount::from(1_500_000u64));
        assert_eq!(parse_units("1.50", 1).unwrap(), Amount::from(15u64));
        assert_eq!(format_units(Amount::from(1_500_000u64), 6), "1.5");
        assert_eq!(format_units(Amount::from(5u64), 6), "0.000005");
        assert_eq!(format_units(Amount::ZERO, 18), "0");
    }

    #[test]
    fn parse_rejects_bad_text() {
        assert!(matches!(
            parse_units("-1", 18),
            Err(AmountError::Negative(_))
        ));
        assert!(matches!(
            parse_units("1.05", 1),
            Err(AmountError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            parse_units("1e5", 18),
            Err(AmountError::Invalid(_))
        ));
        assert!(matches!(parse_units("", 18), Err(AmountError::Invalid(_))));
        assert!(matches!(parse_units(".", 18), Err(AmountError::Invalid(_))));
        let max = U256::MAX.to_string();
        assert_eq!(parse_units(&max, 0).unwrap(), Amount::MAX);
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(matches!(
            parse_units(over, 0),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn parse_agrees_with_ruint_at_every_length_and_padding() {
        // Digit strings of 1..=78 digits, each also split as `int.frac` and padded out to
        // `decimals`: the 19-digit chunking must give ruint's own decimal parse.
        let digits = "9876543210123456789".repeat(5);
        for len in 1..=78 {
            let text = &digits[..len];
            // 78 digits of this pattern exceed 2^256 − 1: ruint refuses them too.
            let Ok(whole) = text.parse::<U256>() else {
                assert!(matches!(
                    parse_units(text, 0),
                    Err(AmountError::TooLarge(_))
                ));
                continue;
            };
            assert_eq!(parse_units(text, 0).unwrap(), Amount(whole), "{text}");
            // Whole tokens (digits only: up to 19 take the one-pass path) at every scale,
            // up to and past 2^256 − 1.
            for d in [1u8, 6, 18, 19, 20, 38, 57, 58, 59, 60, 77] {
                let expected = U256::from(10u8)
                    .checked_pow(U256::from(d))
                    .and_then(|p| whole.checked_mul(p));
                match expected {
                    Some(e) => assert_eq!(parse_units(text, d).unwrap(), Amount(e), "{text} @ {d}"),
                    None => assert!(
                        matches!(parse_units(text, d), Err(AmountError::TooLarge(_))),
                        "{text} @ {d}"
                    ),
                }
            }
            for frac in [0usize, 1, 7, 19, 20, 38] {
                if frac >= len {
                    continue;
                }
                let (i, f) = text.split_at(len - frac);
                if f.ends_with('0') {
                    continue;
                }
                for decimals in [frac, frac + 1, frac + 19, frac + 40] {
                    let Ok(d) = u8::try_from(decimals) else {
                        continue;
                    };
                    let scale = U256::from(10u8).checked_pow(U256::from(decimals - frac));
                    let expected = scale.and_then(|p| whole.checked_mul(p));
                    let got = parse_units(&format!("{i}.{f}"), d);
                    match expected {
                        Some(e) => assert_eq!(got.unwrap(), Amount(e), "{i}.{f} @ {d}"),
                        None => assert!(
                            matches!(got, Err(AmountError::TooLarge(_))),
                            "{i}.{f} @ {d}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn checked_ops_do_not_wrap() {
        assert_eq!(
            Amount::MAX.checked_add(Amount::from(1u64)),
            Err(AmountError::Overflow)
        );
        assert!(Amount::ZERO.checked_sub(Amount::from(1u64)).is_err());
        // MAX * MAX / MAX needs the 512-bit intermediate.
        assert_eq!(
            Amount::MAX.mul_div_floor(U256::MAX, U256::MAX).unwrap(),
            Amount::MAX
        );
        assert_eq!(
            Amount::from(10u64)
                .mul_div_rem(U256::from(1u8), U256::from(3u8))
                .unwrap(),
            (Amount::from(3u64), U256::from(1u8))
        );
        assert_eq!(
            Amount::from(10u64)
                .mul_div_ceil(U256::from(1u8), U256::from(3u8))
                .unwrap(),
            Amount::from(4u64)
        );
    }

    /// `Amount`'s text (`Display`, [`Amount::digits`], [`Amount::push_digits`], its serialization) is `U256`'s on every width the fast path has a boundary at: zero,
    /// 2^64 − 1, 2^64, 2^128 − 1, 2^128, 2^256 − 1, and drawn values with their top limbs
    /// cleared so that each width is drawn as often as the full one.
    #[test]
    fn display_is_the_text_of_u256() {
        let two = U256::from(2u8);
        for v in [
            U256::ZERO,
            U256::from(u64::MAX),
            two.pow(U256::from(64u8)),
            U256::from(u128::MAX),
            two.pow(U256::from(128u8)),
            U256::MAX,
        ] {
            assert_eq!(Amount(v).to_string(), v.to_string());
            assert_eq!(Amount(v).digits().as_str(), v.to_string());
            assert_eq!(
                serde_json::to_string(&Amount(v)).unwrap(),
                format!("\"{v}\"")
            );
        }
        proptest::proptest!(proptest::prelude::ProptestConfig::with_cases(4096), |(
            limbs in proptest::array::uniform4(proptest::prelude::any::<u64>()),
            top in 0..4usize,
        )| {
            let mut limbs = limbs;
            for l in &mut limbs[top + 1..] {
                *l = 0;
            }
            let v = U256::from_limbs(limbs);
            proptest::prop_assert_eq!(Amount(v).to_string(), v.to_string());
            let digits = Amount(v).digits();
            proptest::prop_assert_eq!(digits.as_str(), v.to_string());
            let mut pushed = b"x".to_vec();
            Amount(v).push_digits(&mut pushed);
            proptest::prop_assert_eq!(String::from_utf8(pushed[1..].to_vec()).unwrap(), v.to_string());
            proptest::prop_assert_eq!(serde_json::to_string(&Amount(v)).unwrap(), format!("\"{v}\""));
            // Width and fill apply as to any integer.
            proptest::prop_assert_eq!(format!("{:>80}", Amount(v)), format!("{:>80}", v.to_string()));
        });
    }
}
