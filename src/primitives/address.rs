//! Addresses with EIP-55 checksum validation (<https://eips.ethereum.org/EIPS/eip-55>).

use alloy_primitives::{Address, B256};

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
    let (addr, mixed) = decode(s)?;
    if mixed {
        // Compared in a stack buffer: no allocation for the (common) valid case.
        let expected = addr.to_checksum_buffer(None);
        if expected.as_str() != s {
            return Err(AddressError::BadChecksum {
                got: s.to_owned(),
                expected: expected.as_str().to_owned(),
            });
        }
    }
    Ok(addr)
}

/// The address `0x` + 40 hex digits spell, and whether its letters are of mixed case (so
/// that its EIP-55 checksum must be checked).
fn decode(s: &str) -> Result<(Address, bool), AddressError> {
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
    Ok((addr, has_lower && has_upper))
}

/// Addresses parsed now whose EIP-55 checksums are checked later, many at once: the
/// checksums' keccak256 hashed eight at a time with AVX-512F
/// ([`crate::primitives::keccak::keccak256_many`]) instead of one scalar keccak each as
/// [`parse_address`] does. For readers of large files that can afford to learn only at
/// the end of a block of rows that one of them was bad (and then read the block again with
/// [`parse_address`] to name the row): a million-claimant input has ≈ 1.7M checksummed
/// account texts (after a parse's repeated-row memo), and their scalar hashes took ≈ 0.9
/// CPU-seconds of it (`perf`; BENCHMARKS.md, "Session 17").
#[derive(Debug, Default)]
pub struct ChecksumBatch {
    /// The queued mixed-case texts, without `0x`.
    texts: Vec<[u8; 40]>,
    lower: Vec<[u8; 40]>,
    hashes: Vec<B256>,
}

impl ChecksumBatch {
    /// Parses `s` as [`parse_address`] does, except that a mixed-case text's checksum is
    /// queued for [`ChecksumBatch::check`] instead of checked now.
    ///
    /// # Errors
    /// [`AddressError::Malformed`] (a bad checksum is found by [`ChecksumBatch::check`]).
    pub fn parse(&mut self, s: &str) -> Result<Address, AddressError> {
        let (addr, mixed) = decode(s)?;
        if mixed {
            let mut t = [0u8; 40];
            t.copy_from_slice(&s.as_bytes()[2..]);
            self.texts.push(t);
        }
        Ok(addr)
    }

    /// Number of checksums queued.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether no checksum is queued.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Checks every queued checksum and empties the queue: `true` when all of them match.
    pub fn check(&mut self) -> bool {
        self.lower.clear();
        self.lower
            .extend(self.texts.iter().map(|t| t.map(|c| c.to_ascii_lowercase())));
        self.hashes.clear();
        crate::primitives::keccak::keccak256_many::<40>(&self.lower, &mut self.hashes);
        let ok = self
            .texts
            .iter()
            .zip(&self.lower)
            .zip(&self.hashes)
            .all(|((t, l), h)| eip55(l, h) == *t);
        self.texts.clear();
        ok
    }
}

/// EIP-55: the lower-case hex `lower` of an address with its i-th letter in upper case
/// where the i-th nibble of `hash` (keccak256 of `lower`) is 8 or more.
fn eip55(lower: &[u8; 40], hash: &B256) -> [u8; 40] {
    std::array::from_fn(|i| {
        let nibble = if i % 2 == 0 {
            hash[i / 2] >> 4
        } else {
            hash[i / 2] & 0x0f
        };
        let c = lower[i];
        if c.is_ascii_lowercase() && nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        }
    })
}

/// The EIP-55 checksummed form (`0xAbC…`), the one every output of recoup uses.
pub fn format_address(a: &Address) -> String {
    a.to_checksum(None)
}

/// The EIP-55 checksummed text (`0xAbC…`, 42 ASCII bytes) of each address, in order: the
/// same bytes as [`format_address`], with the checksums' keccak256 hashed as a batch
/// ([`crate::primitives::keccak::keccak256_many`]: eight at a time with AVX-512F), and
/// their lower-case hex made once for both the hash and the text. For outputs that name many accounts:
/// a million-claimant run names each account in several files, and one scalar keccak per
/// name was about a sixth of the time spent writing them (`perf`).
pub fn checksum_many(addrs: &[Address]) -> Vec<[u8; 42]> {
    let mut out = vec![[0u8; 42]; addrs.len()];
    checksum_into(addrs, &mut out);
    out
}

/// [`checksum_many`] into `out` (one slot an address, `out.len() == addrs.len()`).
fn checksum_into(addrs: &[Address], out: &mut [[u8; 42]]) {
    debug_assert_eq!(addrs.len(), out.len());
    let lower: Vec<[u8; 40]> = addrs
        .iter()
        .map(|a| {
            let mut b = [0u8; 40];
            alloy_primitives::hex::encode_to_slice(a, &mut b).expect("40 hex digits for 20 bytes");
            b
        })
        .collect();
    let mut hashes = Vec::with_capacity(addrs.len());
    crate::primitives::keccak::keccak256_many::<40>(&lower, &mut hashes);
    for ((slot, l), h) in out.iter_mut().zip(&lower).zip(&hashes) {
        slot[..2].copy_from_slice(b"0x");
        slot[2..].copy_from_slice(&eip55(l, h));
    }
}

/// [`checksum_many`] split over the rayon pool, for whole account lists. Each part writes
/// into its place in the one result: collected part by part, the texts of a million accounts
/// (42 MB) touched ≈ 240 MB of new memory on their way (`perf`, page faults).
pub fn checksum_many_par(addrs: &[Address]) -> Vec<[u8; 42]> {
    use rayon::prelude::*;
    // Addresses a part: a few hundred parts at a million accounts for the threads to share,
    // each with ≈ 290 KB of scratch (hex and hashes) in `checksum_into`.
    const PART: usize = 1 << 12;
    let mut out = vec![[0u8; 42]; addrs.len()];
    out.par_chunks_mut(PART)
        .zip(addrs.par_chunks(PART))
        .for_each(|(out, addrs)| checksum_into(addrs, out));
    out
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
    fn checksum_many_matches_alloy_for_every_group_size() {
        // A known EIP-55 vector, then pseudo-random addresses (every length 0..=20 covers
        // full and partial groups of eight).
        let known: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
            .parse()
            .unwrap();
        assert_eq!(
            &checksum_many(&[known])[0][..],
            b"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        // More than two of `checksum_many_par`'s parts, the last one partial.
        let addrs: Vec<Address> = (0..10_000)
            .map(|_| {
                let mut a = [0u8; 20];
                for b in &mut a {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                Address::from(a)
            })
            .collect();
        for n in 0..=20 {
            let got = checksum_many(&addrs[..n]);
            assert_eq!(got.len(), n);
            for (a, t) in addrs.iter().zip(&got) {
                assert_eq!(std::str::from_utf8(t).unwrap(), format_address(a));
            }
        }
        let par = checksum_many_par(&addrs);
        assert_eq!(par.len(), addrs.len());
        for (a, t) in addrs.iter().zip(&par) {
            assert_eq!(std::str::from_utf8(t).unwrap(), format_address(a));
        }
    }

    #[test]
    fn a_checksum_batch_accepts_what_parse_address_accepts() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let addrs: Vec<Address> = (0..300)
            .map(|_| {
                Address::from(std::array::from_fn(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }))
            })
            .collect();
        let good: Vec<String> = addrs.iter().map(format_address).collect();
        let mut batch = ChecksumBatch::default();
        for (a, t) in addrs.iter().zip(&good) {
            assert_eq!(batch.parse(t).unwrap(), *a);
        }
        assert!(batch.len() > 250, "checksummed texts are queued");
        assert!(batch.check());
        assert!(batch.is_empty());
        // Lower- and upper-case texts need no check; a malformed one fails at once.
        assert_eq!(batch.parse(&good[0].to_lowercase()).unwrap(), addrs[0]);
        assert_eq!(
            batch
                .parse(&format!("0x{}", good[0][2..].to_uppercase()))
                .unwrap(),
            addrs[0]
        );
        assert!(batch.is_empty());
        assert!(matches!(
            batch.parse("0x12"),
            Err(AddressError::Malformed(_))
        ));
        // One letter of one text in the wrong case, at every position of a batch of up
        // to 17 (full and partial groups of eight lanes): the batch fails, as
        // `parse_address` does on that text.
        for n in 1..=17 {
            for bad in 0..n {
                let mut texts = good[..n].to_vec();
                let mut b = texts[bad].clone().into_bytes();
                let i = 2 + b[2..].iter().position(u8::is_ascii_alphabetic).unwrap();
                b[i] ^= 0x20;
                texts[bad] = String::from_utf8(b).unwrap();
                let mixed = parse_address(&texts[bad]).is_err();
                for t in &texts {
                    batch.parse(t).unwrap();
                }
                assert_eq!(batch.check(), !mixed, "{n} texts, bad {bad}");
            }
        }
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
