//! Leaf encodings: Solidity type names, typed leaf values, `abi.encode` and `abi.encodePacked`.
//!
//! A *leaf encoding* is the list of Solidity types a claim contract hashes, e.g.
//! `["address","uint256"]` (OpenZeppelin/Hedgey), `["uint256","address","uint256"]`
//! (Sablier-style index, account, amount) or `["uint256","address","(address,uint256)[]"]`
//! (Euler). Values are typed when parsed ([`LeafValue`]), so encoding never fails on text.
//!
//! Encoding follows the Solidity ABI specification
//! (<https://docs.soliditylang.org/en/latest/abi-spec.html>): `abi.encode` is the head/tail
//! encoding of the values as one tuple; `abi.encodePacked` concatenates the minimal
//! big-endian forms of elementary values (arrays in packed mode are not supported).

use crate::primitives::parse_address;
use alloy_primitives::{Address, U256};
use std::fmt;

/// Why a type name or a value does not fit a leaf encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbiError {
    /// The type name is not a Solidity type this encoder knows.
    #[error("unknown or unsupported Solidity type {0:?} (supported: address, bool, uint8..uint256, bytes1..bytes32, bytes, string, T[], T[k], (T,...))")]
    UnknownType(String),
    /// A value does not match its type.
    #[error("value {got} does not fit type {ty}: {why}")]
    BadValue {
        /// The Solidity type expected.
        ty: String,
        /// The value given (as text).
        got: String,
        /// What is wrong.
        why: String,
    },
    /// The number of values differs from the number of types.
    #[error("expected {expected} values for encoding [{encoding}], got {got}")]
    Arity {
        /// Types in the encoding.
        expected: usize,
        /// Values given.
        got: usize,
        /// The encoding, comma-separated.
        encoding: String,
    },
    /// A type cannot be packed (`abi.encodePacked` of arrays and tuples).
    #[error("type {0} is not supported by abi.encodePacked here (elementary types only)")]
    NotPackable(String),
}

/// A Solidity ABI type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SolType {
    /// `address`: 20 bytes.
    Address,
    /// `bool`.
    Bool,
    /// `uintN`, N in 8..=256, a multiple of 8 (bits).
    Uint(u16),
    /// `bytesN`, N in 1..=32 (bytes).
    FixedBytes(u8),
    /// `bytes`: dynamic byte string.
    Bytes,
    /// `string`: dynamic UTF-8 string.
    String,
    /// `T[]`: dynamic array.
    Array(Box<SolType>),
    /// `T[k]`: fixed-length array.
    FixedArray(Box<SolType>, usize),
    /// `(T1,T2,...)`: tuple.
    Tuple(Vec<SolType>),
}

/// Splits `s` at its top-level commas: commas inside `(…)` and `[…]` stay (tuple types,
/// array values). The pieces are not trimmed. `None` when the brackets do not balance.
pub fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    (depth == 0).then(|| {
        parts.push(&s[start..]);
        parts
    })
}

impl SolType {
    /// Parses a Solidity type name: `address`, `bool`, `uint` (= `uint256`), `uintN`,
    /// `bytesN`, `bytes`, `string`, `T[]`, `T[k]`, `(T1,T2)` and `tuple(T1,T2)`.
    ///
    /// # Errors
    /// [`AbiError::UnknownType`].
    pub fn parse(name: &str) -> Result<Self, AbiError> {
        let unknown = || AbiError::UnknownType(name.to_owned());
        let s = name.trim();
        if let Some(inner) = s.strip_suffix(']') {
            let open = inner.rfind('[').ok_or_else(unknown)?;
            let elem = Box::new(Self::parse(&inner[..open])?);
            let len = &inner[open + 1..];
            return if len.is_empty() {
                Ok(Self::Array(elem))
            } else {
                let k: usize = len.parse().map_err(|_| unknown())?;
                Ok(Self::FixedArray(elem, k))
            };
        }
        let tuple_body = s.strip_prefix("tuple").unwrap_or(s);
        if let Some(body) = tuple_body
            .strip_prefix('(')
            .and_then(|b| b.strip_suffix(')'))
        {
            if body.trim().is_empty() {
                return Ok(Self::Tuple(Vec::new()));
            }
            let parts = split_top_level(body)
                .ok_or_else(unknown)?
                .into_iter()
                .map(Self::parse)
                .collect::<Result<_, _>>()?;
            return Ok(Self::Tuple(parts));
        }
        match s {
            "address" => return Ok(Self::Address),
            "bool" => return Ok(Self::Bool),
            "bytes" => return Ok(Self::Bytes),
            "string" => return Ok(Self::String),
            "uint" => return Ok(Self::Uint(256)),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("uint") {
            let bits: u16 = n.parse().map_err(|_| unknown())?;
            if bits == 0 || bits > 256 || !bits.is_multiple_of(8) || n.starts_with('0') {
                return Err(unknown());
            }
            return Ok(Self::Uint(bits));
        }
        if let Some(n) = s.strip_prefix("bytes") {
            let len: u8 = n.parse().map_err(|_| unknown())?;
            if len == 0 || len > 32 || n.starts_with('0') {
                return Err(unknown());
            }
            return Ok(Self::FixedBytes(len));
        }
        Err(unknown())
    }

    /// True for types whose `abi.encode` has a tail (bytes, string, `T[]`, and arrays or
    /// tuples containing those).
    pub fn is_dynamic(&self) -> bool {
        match self {
            Self::Bytes | Self::String | Self::Array(_) => true,
            Self::FixedArray(t, _) => t.is_dynamic(),
            Self::Tuple(ts) => ts.iter().any(Self::is_dynamic),
            _ => false,
        }
    }

    /// Size of the head of a static type in `abi.encode` (bytes); 32 for dynamic types
    /// (their offset).
    fn head_size(&self) -> usize {
        if self.is_dynamic() {
            return 32;
        }
        match self {
            Self::FixedArray(t, k) => t.head_size() * k,
            Self::Tuple(ts) => ts.iter().map(Self::head_size).sum(),
            _ => 32,
        }
    }
}

impl fmt::Display for SolType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address => f.write_str("address"),
            Self::Bool => f.write_str("bool"),
            Self::Uint(n) => write!(f, "uint{n}"),
            Self::FixedBytes(n) => write!(f, "bytes{n}"),
            Self::Bytes => f.write_str("bytes"),
            Self::String => f.write_str("string"),
            Self::Array(t) => write!(f, "{t}[]"),
            Self::FixedArray(t, k) => write!(f, "{t}[{k}]"),
            Self::Tuple(ts) => {
                f.write_str("(")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A typed value of one leaf field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LeafValue {
    /// An `address`.
    Address(Address),
    /// A `bool`.
    Bool(bool),
    /// A `uintN` (checked to fit N bits at parse time).
    Uint(U256),
    /// A `bytesN` value (exactly N bytes) or a `bytes` value.
    Bytes(Vec<u8>),
    /// A `string`.
    String(String),
    /// The elements of a `T[]`, `T[k]` or the components of a tuple.
    List(Vec<LeafValue>),
}

fn bad(ty: &SolType, got: impl fmt::Display, why: impl Into<String>) -> AbiError {
    AbiError::BadValue {
        ty: ty.to_string(),
        got: got.to_string(),
        why: why.into(),
    }
}

/// Parses an unsigned integer written in decimal, or in hex with a `0x` prefix.
fn parse_uint_text(ty: &SolType, s: &str, bits: u16) -> Result<U256, AbiError> {
    let v = if let Some(h) = s.strip_prefix("0x") {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(ty, format!("{s:?}"), "not a hex integer"));
        }
        U256::from_str_radix(h, 16).map_err(|_| bad(ty, format!("{s:?}"), "exceeds 2^256-1"))?
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                ty,
                format!("{s:?}"),
                "expected a non-negative decimal integer",
            ));
        }
        U256::from_str_radix(s, 10).map_err(|_| bad(ty, format!("{s:?}"), "exceeds 2^256-1"))?
    };
    check_uint_fits(ty, v, bits)?;
    Ok(v)
}

fn check_uint_fits(ty: &SolType, v: U256, bits: u16) -> Result<(), AbiError> {
    if v.bit_len() > bits as usize {
        return Err(bad(ty, v, format!("does not fit {bits} bits")));
    }
    Ok(())
}

fn parse_hex_bytes(ty: &SolType, s: &str) -> Result<Vec<u8>, AbiError> {
    let h = s
        .strip_prefix("0x")
        .ok_or_else(|| bad(ty, format!("{s:?}"), "expected 0x-prefixed hex"))?;
    alloy_primitives::hex::decode(h).map_err(|e| bad(ty, format!("{s:?}"), e.to_string()))
}

impl LeafValue {
    /// Parses a value of type `ty` from text: addresses as `0x…` (EIP-55 checked when
    /// mixed case), integers in decimal or `0x` hex, `true`/`false`, bytes as `0x` hex,
    /// strings verbatim. Arrays and tuples need [`LeafValue::from_json`].
    ///
    /// # Errors
    /// [`AbiError::BadValue`].
    pub fn from_text(ty: &SolType, s: &str) -> Result<Self, AbiError> {
        match ty {
            SolType::Address => parse_address(s)
                .map(Self::Address)
                .map_err(|e| bad(ty, format!("{s:?}"), e.to_string())),
            SolType::Bool => match s {
                "true" => Ok(Self::Bool(true)),
                "false" => Ok(Self::Bool(false)),
                _ => Err(bad(ty, format!("{s:?}"), "expected true or false")),
            },
            SolType::Uint(bits) => parse_uint_text(ty, s, *bits).map(Self::Uint),
            SolType::FixedBytes(n) => {
                let b = parse_hex_bytes(ty, s)?;
                if b.len() != *n as usize {
                    return Err(bad(
                        ty,
                        format!("{s:?}"),
                        format!("expected exactly {n} bytes, got {}", b.len()),
                    ));
                }
                Ok(Self::Bytes(b))
            }
            SolType::Bytes => parse_hex_bytes(ty, s).map(Self::Bytes),
            SolType::String => Ok(Self::String(s.to_owned())),
            SolType::Array(_) | SolType::FixedArray(..) | SolType::Tuple(_) => {
                let v: serde_json::Value = serde_json::from_str(s).map_err(|e| {
                    bad(ty, format!("{s:?}"), format!("expected a JSON array: {e}"))
                })?;
                Self::from_json(ty, &v)
            }
        }
    }

    /// Parses a value of type `ty` from JSON as OpenZeppelin's `dump()` writes it:
    /// strings for addresses, integers, bytes and strings; JSON booleans (or the strings
    /// `"true"`/`"false"`); non-negative JSON integers are also accepted for `uintN`;
    /// arrays for `T[]`, `T[k]` and tuples.
    ///
    /// # Errors
    /// [`AbiError::BadValue`].
    pub fn from_json(ty: &SolType, v: &serde_json::Value) -> Result<Self, AbiError> {
        use serde_json::Value as J;
        match (ty, v) {
            (SolType::Bool, J::Bool(b)) => Ok(Self::Bool(*b)),
            (SolType::Uint(bits), J::Number(n)) => {
                let u = n
                    .as_u64()
                    .ok_or_else(|| bad(ty, n, "expected a non-negative integer"))?;
                let u = U256::from(u);
                check_uint_fits(ty, u, *bits)?;
                Ok(Self::Uint(u))
            }
            (SolType::Array(elem), J::Array(items)) => items
                .iter()
                .map(|x| Self::from_json(elem, x))
                .collect::<Result<_, _>>()
                .map(Self::List),
            (SolType::FixedArray(elem, k), J::Array(items)) => {
                if items.len() != *k {
                    return Err(bad(
                        ty,
                        v,
                        format!("expected {k} elements, got {}", items.len()),
                    ));
                }
                items
                    .iter()
                    .map(|x| Self::from_json(elem, x))
                    .collect::<Result<_, _>>()
                    .map(Self::List)
            }
            (SolType::Tuple(ts), J::Array(items)) => {
                if items.len() != ts.len() {
                    return Err(bad(
                        ty,
                        v,
                        format!("expected {} components, got {}", ts.len(), items.len()),
                    ));
                }
                ts.iter()
                    .zip(items)
                    .map(|(t, x)| Self::from_json(t, x))
                    .collect::<Result<_, _>>()
                    .map(Self::List)
            }
            (SolType::Array(_) | SolType::FixedArray(..) | SolType::Tuple(_), _) => {
                Err(bad(ty, v, "expected a JSON array"))
            }
            (_, J::String(s)) => Self::from_text(ty, s),
            _ => Err(bad(ty, v, "wrong JSON type")),
        }
    }

    /// Checks that a value built in code has the shape of `ty` (lengths, bit widths).
    ///
    /// # Errors
    /// [`AbiError::BadValue`].
    pub fn check(&self, ty: &SolType) -> Result<(), AbiError> {
        match (ty, self) {
            (SolType::Address, Self::Address(_))
            | (SolType::Bool, Self::Bool(_))
            | (SolType::String, Self::String(_))
            | (SolType::Bytes, Self::Bytes(_)) => Ok(()),
            (SolType::Uint(bits), Self::Uint(u)) => check_uint_fits(ty, *u, *bits),
            (SolType::FixedBytes(n), Self::Bytes(b)) if b.len() == *n as usize => Ok(()),
            (SolType::Array(t), Self::List(xs)) => xs.iter().try_for_each(|x| x.check(t)),
            (SolType::FixedArray(t, k), Self::List(xs)) if xs.len() == *k => {
                xs.iter().try_for_each(|x| x.check(t))
            }
            (SolType::Tuple(ts), Self::List(xs)) if xs.len() == ts.len() => {
                ts.iter().zip(xs).try_for_each(|(t, x)| x.check(t))
            }
            _ => Err(bad(ty, format!("{self:?}"), "wrong kind of value")),
        }
    }
}

/// A parsed leaf encoding: the Solidity type names as written (kept for `dump()`), and
/// their parsed types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEncoding {
    names: Vec<String>,
    types: Vec<SolType>,
}

impl LeafEncoding {
    /// Parses a list of Solidity type names, e.g. `["address","uint256"]`.
    ///
    /// # Errors
    /// [`AbiError::UnknownType`].
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, AbiError> {
        let types = names
            .iter()
            .map(|n| SolType::parse(n.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            names: names.iter().map(|n| n.as_ref().to_owned()).collect(),
            types,
        })
    }

    /// The type names as given (what `dump()` writes as `leafEncoding`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The parsed types.
    pub fn types(&self) -> &[SolType] {
        &self.types
    }

    /// Number of fields per leaf.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True for an encoding with no fields (never useful, but representable).
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Checks a row of values against the encoding (count, kinds, widths).
    ///
    /// # Errors
    /// [`AbiError::Arity`], [`AbiError::BadValue`].
    pub fn check(&self, values: &[LeafValue]) -> Result<(), AbiError> {
        if values.len() != self.types.len() {
            return Err(AbiError::Arity {
                expected: self.types.len(),
                got: values.len(),
                encoding: self.names.join(","),
            });
        }
        self.types
            .iter()
            .zip(values)
            .try_for_each(|(t, v)| v.check(t))
    }

    /// Parses a row of values from JSON (one JSON value per type).
    ///
    /// # Errors
    /// [`AbiError::Arity`], [`AbiError::BadValue`].
    pub fn parse_json_row(&self, row: &[serde_json::Value]) -> Result<Vec<LeafValue>, AbiError> {
        if row.len() != self.types.len() {
            return Err(AbiError::Arity {
                expected: self.types.len(),
                got: row.len(),
                encoding: self.names.join(","),
            });
        }
        self.types
            .iter()
            .zip(row)
            .map(|(t, v)| LeafValue::from_json(t, v))
            .collect()
    }
}

/// `abi.encode(values...)` for values already checked against `types`, appended to `out`.
///
/// The values are encoded as one tuple (the way Solidity's `abi.encode(a, b, c)` does).
pub fn encode_into(types: &[SolType], values: &[LeafValue], out: &mut Vec<u8>) {
    encode_tuple(types.iter().zip(values), out);
}

/// `abi.encode(values...)` as a new byte vector. See [`encode_into`].
pub fn encode(types: &[SolType], values: &[LeafValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 * types.len());
    encode_into(types, values, &mut out);
    out
}

fn encode_tuple<'a>(
    items: impl Iterator<Item = (&'a SolType, &'a LeafValue)> + Clone,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let head_len: usize = items.clone().map(|(t, _)| t.head_size()).sum();
    out.resize(start + head_len, 0);
    let mut head_pos = start;
    for (t, v) in items {
        if t.is_dynamic() {
            let offset = out.len() - start;
            out[head_pos..head_pos + 32].copy_from_slice(&U256::from(offset).to_be_bytes::<32>());
            head_pos += 32;
            encode_dynamic(t, v, out);
        } else {
            let size = t.head_size();
            encode_static(t, v, &mut out[head_pos..head_pos + size]);
            head_pos += size;
        }
    }
}

/// Writes a static value into `dst` (exactly its head size; `dst` is zeroed).
fn encode_static(t: &SolType, v: &LeafValue, dst: &mut [u8]) {
    match (t, v) {
        (SolType::Address, LeafValue::Address(a)) => dst[12..32].copy_from_slice(a.as_slice()),
        (SolType::Bool, LeafValue::Bool(b)) => dst[31] = u8::from(*b),
        (SolType::Uint(_), LeafValue::Uint(u)) => dst[..32].copy_from_slice(&u.to_be_bytes::<32>()),
        (SolType::FixedBytes(_), LeafValue::Bytes(b)) => dst[..b.len()].copy_from_slice(b),
        (SolType::FixedArray(elem, _), LeafValue::List(xs)) => {
            let size = elem.head_size();
            for (x, chunk) in xs.iter().zip(dst.chunks_mut(size)) {
                encode_static(elem, x, chunk);
            }
        }
        (SolType::Tuple(ts), LeafValue::List(xs)) => {
            let mut pos = 0;
            for (t, x) in ts.iter().zip(xs) {
                let size = t.head_size();
                encode_static(t, x, &mut dst[pos..pos + size]);
                pos += size;
            }
        }
        // Values are checked against their types before encoding; a mismatch is a bug.
        _ => unreachable!("value {v:?} was not checked against static type {t}"),
    }
}

fn push_padded_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&U256::from(b.len()).to_be_bytes::<32>());
    out.extend_from_slice(b);
    let pad = (32 - b.len() % 32) % 32;
    out.resize(out.len() + pad, 0);
}

/// Appends the tail encoding of a dynamic value.
fn encode_dynamic(t: &SolType, v: &LeafValue, out: &mut Vec<u8>) {
    match (t, v) {
        (SolType::Bytes, LeafValue::Bytes(b)) => push_padded_bytes(out, b),
        (SolType::String, LeafValue::String(s)) => push_padded_bytes(out, s.as_bytes()),
        (SolType::Array(elem), LeafValue::List(xs)) => {
            out.extend_from_slice(&U256::from(xs.len()).to_be_bytes::<32>());
            encode_tuple(std::iter::repeat_n(&**elem, xs.len()).zip(xs.iter()), out);
        }
        (SolType::FixedArray(elem, _), LeafValue::List(xs)) => {
            encode_tuple(std::iter::repeat_n(&**elem, xs.len()).zip(xs.iter()), out)
        }
        (SolType::Tuple(ts), LeafValue::List(xs)) => encode_tuple(ts.iter().zip(xs.iter()), out),
        // Values are checked against their types before encoding; a mismatch is a bug.
        _ => unreachable!("value {v:?} was not checked against dynamic type {t}"),
    }
}

/// `abi.encodePacked(values...)` for elementary types: addresses as 20 bytes, `uintN` as
/// N/8 big-endian bytes, `bool` as 1 byte, `bytesN` as N bytes, `bytes`/`string` raw.
///
/// # Errors
/// [`AbiError::NotPackable`] for arrays and tuples; [`AbiError::Arity`] /
/// [`AbiError::BadValue`] when the values do not match.
pub fn encode_packed(types: &[SolType], values: &[LeafValue]) -> Result<Vec<u8>, AbiError> {
    if types.len() != values.len() {
        return Err(AbiError::Arity {
            expected: types.len(),
            got: values.len(),
            encoding: types
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    let mut out = Vec::new();
    for (t, v) in types.iter().zip(values) {
        v.check(t)?;
        match (t, v) {
            (SolType::Address, LeafValue::Address(a)) => out.extend_from_slice(a.as_slice()),
            (SolType::Bool, LeafValue::Bool(b)) => out.push(u8::from(*b)),
            (SolType::Uint(bits), LeafValue::Uint(u)) => {
                out.extend_from_slice(&u.to_be_bytes::<32>()[32 - *bits as usize / 8..])
            }
            (SolType::FixedBytes(_) | SolType::Bytes, LeafValue::Bytes(b)) => {
                out.extend_from_slice(b)
            }
            (SolType::String, LeafValue::String(s)) => out.extend_from_slice(s.as_bytes()),
            _ => return Err(AbiError::NotPackable(t.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_sol_types::SolValue;

    #[test]
    fn type_names_round_trip() {
        for n in [
            "address",
            "uint256",
            "uint8",
            "bytes32",
            "bytes",
            "string",
            "bool",
            "uint256[]",
            "(address,uint256)[]",
            "(address,(uint8,string)[2])",
        ] {
            assert_eq!(SolType::parse(n).unwrap().to_string(), n);
        }
        assert_eq!(SolType::parse("uint").unwrap(), SolType::Uint(256));
        for bad in [
            "uint7", "uint264", "bytes33", "bytes0", "int256", "addr", "uint08", "(address",
        ] {
            assert!(SolType::parse(bad).is_err(), "{bad}");
        }
    }

    /// Cross-check the hand-written encoder against alloy-sol-types' static encoder.
    #[test]
    fn encode_matches_alloy_sol_types_for_euler_leaf() {
        let a = Address::repeat_byte(0x11);
        let t1 = Address::repeat_byte(0x22);
        let t2 = Address::repeat_byte(0x33);
        let alloy = (
            U256::from(7u8),
            a,
            vec![(t1, U256::from(5u8)), (t2, U256::MAX)],
        )
            .abi_encode_params();
        let types = [
            SolType::Uint(256),
            SolType::Address,
            SolType::parse("(address,uint256)[]").unwrap(),
        ];
        let values = [
            LeafValue::Uint(U256::from(7u8)),
            LeafValue::Address(a),
            LeafValue::List(vec![
                LeafValue::List(vec![
                    LeafValue::Address(t1),
                    LeafValue::Uint(U256::from(5u8)),
                ]),
                LeafValue::List(vec![LeafValue::Address(t2), LeafValue::Uint(U256::MAX)]),
            ]),
        ];
        assert_eq!(encode(&types, &values), alloy);
    }

    #[test]
    fn encode_matches_alloy_sol_types_for_strings_and_bytes() {
        let alloy = (
            String::from("hello world, a string longer than thirty-two bytes"),
            true,
            alloy_primitives::Bytes::from(vec![1u8, 2, 3]),
        )
            .abi_encode_params();
        let types = [SolType::String, SolType::Bool, SolType::Bytes];
        let values = [
            LeafValue::String("hello world, a string longer than thirty-two bytes".into()),
            LeafValue::Bool(true),
            LeafValue::Bytes(vec![1, 2, 3]),
        ];
        assert_eq!(encode(&types, &values), alloy);
    }

    #[test]
    fn packed_uint_address_uint_is_84_bytes() {
        let types = [SolType::Uint(256), SolType::Address, SolType::Uint(256)];
        let v = [
            LeafValue::Uint(U256::ZERO),
            LeafValue::Address(Address::repeat_byte(0x11)),
            LeafValue::Uint(U256::from(5u8)),
        ];
        let p = encode_packed(&types, &v).unwrap();
        assert_eq!(p.len(), 84);
        assert_eq!(&p[32..52], &[0x11; 20]);
        assert_eq!(p[83], 5);
    }

    #[test]
    fn values_out_of_range_are_rejected() {
        assert!(LeafValue::from_text(&SolType::Uint(8), "256").is_err());
        assert!(LeafValue::from_text(&SolType::Uint(8), "255").is_ok());
        assert!(LeafValue::from_text(&SolType::Uint(256), "-1").is_err());
        assert!(LeafValue::from_text(&SolType::FixedBytes(32), "0x1234").is_err());
        assert!(LeafValue::from_text(&SolType::Address, "0x11").is_err());
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(LeafValue::from_text(&SolType::Uint(256), over).is_err());
    }
}
