//! Value types every stage shares: checked token amounts in base units, assets,
//! addresses with EIP-55 checks, basis points, and numeraire values.
//!
//! Nothing outside this module does raw `U256` arithmetic: alloy's `U256` `+`, `*` and
//! `Sum` wrap silently (`U256::MAX + 1 == 0`), so every operation on [`Amount`] is checked
//! and every division states its rounding.

mod address;
mod amount;
mod asset;
mod bps;
mod column;
pub mod keccak;
mod name;
mod stack_text;
mod value;

pub use address::{
    checksum_many, checksum_many_par, format_address, parse_address, AddressError, ChecksumBatch,
};
pub use amount::{format_units, parse_units, Amount, AmountDigits, AmountError};
pub use asset::Asset;
pub use bps::{Bps, BpsError};
pub use column::AmountColumn;
pub(crate) use name::LocalNames;
pub use name::Name;
pub use stack_text::StackText;
pub use value::{value_of, DecimalChars, DecimalText, ValueError};

pub use alloy_primitives::{keccak256, Address, B256, U256, U512};
pub use rust_decimal::Decimal;
