//! Addresses with EIP-55 checksum validation (<https://eips.ethereum.org/EIPS/eip-55>).

use alloy_primitives::Address;

/// Why a text is not an acceptable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not `0x` followed by 40 hex digits.
    #[error("expected 0x followed by 40 hex digits, got {0:?}")]
    Malformed(String),
    /// Mixed case that does not match the EIP-55 checksum.
    #[error("{got:?} has mixed case but fails its EIP-55 checksum (expected {expected})")]
    BadChecksum {
        /// The text given.
        got: String,
        /// The correctly checksummed form.
        expected: String,
    },
}

/// Parses an address. All-lowercase and all-uppercase hex are accepted as they are;
/// mixed case must match the EIP-55 checksum exactly.
///
/// # Errors
/// [`AddressError::Malformed`], [`AddressError::BadChecksum`].
pub fn parse_address(s: &str) -> Result<Address, AddressError> {
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| AddressError::Malformed(s.to_owned()))?;
    if hex.len() != 40 {
        return Err(AddressError::Malformed(s.to_owned()));
    }
    // const-hex checks every digit while decoding (vectorised); the case scan below is a
    // branch-free fold, since per-digit branches on random hex mispredict (they cost ~10×
    // the decode on a 1M-line holder list).
    let addr = Address::from(
        alloy_primitives::hex::decode_to_array::<_, 20>(hex)
            .map_err(|_| AddressError::Malformed(s.to_owned()))?,
    );
    let (has_lower, has_upper) = hex.bytes().fold((false, false), |(l, u), b| {
        (l | b.is_ascii_lowercase(), u | b.is_ascii_uppercase())
    });
    if has_lower && has_upper {
        let expected = addr.to_checksum(None);
        if expected != s {
            return Err(AddressError::BadChecksum {
                got: s.to_owned(),
                expected,
            });
        }
    }
    Ok(addr)
}

/// The EIP-55 checksummed form (`0xAbC…`), the one every output of recoup uses.
pub fn format_address(a: &Address) -> String {
    a.to_checksum(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_cases() {
        let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert!(parse_address(good).is_ok());
        assert!(parse_address(&good.to_lowercase()).is_ok());
        assert!(parse_address(&format!("0x{}", good[2..].to_uppercase())).is_ok());
        let bad = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert!(matches!(
            parse_address(bad),
            Err(AddressError::BadChecksum { .. })
        ));
        assert!(matches!(
            parse_address("0x1234"),
            Err(AddressError::Malformed(_))
        ));
        assert!(matches!(
            parse_address("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            Err(AddressError::Malformed(_))
        ));
    }

    #[test]
    fn every_malformed_shape_is_rejected_and_the_address_is_exact() {
        let good = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        let a = parse_address(good).unwrap();
        assert_eq!(format!("{a:#x}"), good);
        // A non-hex digit at each position; a doubled prefix; a non-ASCII text of 40 bytes;
        // an upper-case prefix; one digit too many.
        for i in 2..42 {
            let mut b = good.as_bytes().to_vec();
            b[i] = b'g';
            let t = String::from_utf8(b).unwrap();
            assert!(
                matches!(parse_address(&t), Err(AddressError::Malformed(_))),
                "{t}"
            );
        }
        for t in [
            format!("0x0x{}", &good[4..]),
            format!("0x{}", "é".repeat(20)),
            format!("0X{}", &good[2..]),
            format!("{good}0"),
        ] {
            assert!(
                matches!(parse_address(&t), Err(AddressError::Malformed(_))),
                "{t}"
            );
        }
    }
}
