//! Uniswap `merkle-distributor` trees and their `parseBalanceMap` JSON, and the packed
//! (address, amount) layered tree Beanstalk used.
//!
//! Uniswap leaf = `keccak256(abi.encodePacked(uint256 index, address account, uint256
//! amount))` (84 bytes, single hash), index = position of the EIP-55 checksummed address
//! in sorted order (JavaScript code-unit order = byte order of the ASCII text). The tree is
//! layered over the leaf hashes sorted and de-duplicated. Output:
//! `JSON.stringify({merkleRoot, tokenTotal, claims}, null, 2)` with amounts as ethers
//! `BigNumber.toHexString()` (minimal even-length hex). Reference:
//! Uniswap/merkle-distributor `src/parse-balance-map.ts` @ 25a79e8.

use super::json::{push_address_text, push_b256, push_str, push_usize, spill, spill_buffer};
use super::layered::LayeredTree;
use super::ClaimsError;
use crate::primitives::keccak::keccak256_many;
use crate::primitives::{format_address, Amount};
use alloy_primitives::{keccak256, Address, B256, U512};
use rayon::prelude::*;

/// The `flags` object of parseBalanceMap's new input format (`reasons` text containing
/// `socks`, `lp`, `user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ClaimFlags {
    /// `reasons` contains `"socks"`.
    #[serde(rename = "isSOCKS")]
    pub is_socks: bool,
    /// `reasons` contains `"lp"`.
    #[serde(rename = "isLP")]
    pub is_lp: bool,
    /// `reasons` contains `"user"`.
    #[serde(rename = "isUser")]
    pub is_user: bool,
}

impl ClaimFlags {
    /// Flags from a `reasons` text; `None` for an empty text (parseBalanceMap then writes
    /// no `flags` key).
    pub fn from_reasons(reasons: &str) -> Option<Self> {
        (!reasons.is_empty()).then(|| Self {
            is_socks: reasons.contains("socks"),
            is_lp: reasons.contains("lp"),
            is_user: reasons.contains("user"),
        })
    }
}

/// One input row of parseBalanceMap: an account and its amount in base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceEntry {
    /// The claimant.
    pub account: Address,
    /// Base units of the distributed token; must be positive.
    pub amount: Amount,
    /// Optional flags (new input format with non-empty `reasons`).
    pub flags: Option<ClaimFlags>,
}

/// One claim of a Uniswap distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniswapClaim {
    /// The claimant.
    pub account: Address,
    /// Its bitmap index in the distributor contract.
    pub index: u64,
    /// Base units.
    pub amount: Amount,
    /// Flags, when the input carried reasons.
    pub flags: Option<ClaimFlags>,
}

/// The Uniswap merkle-distributor leaf `keccak256(abi.encodePacked(index, account, amount))`.
pub fn uniswap_leaf(index: u64, account: &Address, amount: Amount) -> B256 {
    keccak256(uniswap_preimage(index, account, amount))
}

fn uniswap_preimage(index: u64, account: &Address, amount: Amount) -> [u8; 84] {
    let mut buf = [0u8; 84];
    buf[24..32].copy_from_slice(&index.to_be_bytes());
    buf[32..52].copy_from_slice(account.as_slice());
    buf[52..].copy_from_slice(&amount.raw().to_be_bytes::<32>());
    buf
}

/// The packed leaf `keccak256(abi.encodePacked(address account, uint256 amount))` (Beanstalk,
/// 1inch-style, single hash).
pub fn packed_leaf(account: &Address, amount: Amount) -> B256 {
    keccak256(packed_preimage(account, amount))
}

fn packed_preimage(account: &Address, amount: Amount) -> [u8; 52] {
    let mut buf = [0u8; 52];
    buf[..20].copy_from_slice(account.as_slice());
    buf[20..].copy_from_slice(&amount.raw().to_be_bytes::<32>());
    buf
}

/// Leaves of many rows in parallel blocks, each block hashed in a batch (eight at a time
/// with AVX-512F, primitives::keccak): `hash(preimage(row))` for every row, in order.
fn leaves_of<T: Sync, const N: usize>(
    rows: &[T],
    preimage: impl Fn(&T) -> [u8; N] + Sync,
) -> Vec<B256> {
    crate::par::blocks_in_place(rows, (1, 1024), B256::ZERO, |block, out| {
        let pre: Vec<[u8; N]> = block.iter().map(&preimage).collect();
        let mut hashes = Vec::with_capacity(pre.len());
        keccak256_many(&pre, &mut hashes);
        out.copy_from_slice(&hashes);
    })
}

/// ethers `BigNumber.toHexString()`: `0x` + minimal hex, left-padded to an even length
/// (`0x00` for zero).
pub fn to_hex_string(v: U512) -> String {
    let h = format!("{v:x}");
    if h.len() % 2 == 1 {
        format!("0x0{h}")
    } else {
        format!("0x{h}")
    }
}

/// Total of amounts, or [`ClaimsError::TotalOverflow`] carrying the exact (512-bit) total.
pub(crate) fn checked_total(
    amounts: impl Iterator<Item = Amount> + Clone,
) -> Result<Amount, ClaimsError> {
    Amount::checked_sum(amounts.clone()).map_err(|_| {
        let wide = amounts.fold(U512::ZERO, |acc, a| acc + U512::from(a.raw())); // < n * 2^256, no wrap
        ClaimsError::TotalOverflow {
            total: to_hex_string(wide),
        }
    })
}

/// How claim indices are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexOrder {
    /// Position of the checksummed address in sorted order (parseBalanceMap since 2020).
    ChecksumSorted,
    /// Position in the input (the 2020 script Eminence used; its 07 file is in input
    /// order, largest payout first).
    Input,
}

/// How amounts are written in hex (`[[outputs.trees]] hex = "even-length" | "minimal"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HexStyle {
    /// ethers v5 `BigNumber.toHexString()`: even number of digits (`0x02ee`), current
    /// parseBalanceMap.
    #[default]
    EvenLength,
    /// Minimal digits (`0x2ee`): the 2020 script behind Eminence's file.
    Minimal,
}

/// Options of [`UniswapDistribution::parse_balance_map_with`]. The default is the current
/// parseBalanceMap (sorted checksummed indices, even-length hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniswapOptions {
    /// How claim indices are assigned.
    pub index_order: IndexOrder,
    /// How amounts and the total are written.
    pub hex: HexStyle,
}

impl Default for UniswapOptions {
    fn default() -> Self {
        Self {
            index_order: IndexOrder::ChecksumSorted,
            hex: HexStyle::EvenLength,
        }
    }
}

impl UniswapOptions {
    /// What Eminence's 2020 distribution script did: indices in input order, minimal hex.
    pub const LEGACY_2020: Self = Self {
        index_order: IndexOrder::Input,
        hex: HexStyle::Minimal,
    };
}

/// Appends `amount` (base units) as a JSON string in hex as `style` says: `"0x02ee"` (even length, the
/// same text as [`to_hex_string`], `"0x00"` for zero) or `"0x2ee"` (minimal, `"0x0"` for
/// zero). Written in place from the big-endian bytes, without `fmt`.
fn push_hex_amount(out: &mut Vec<u8>, amount: Amount, style: HexStyle) {
    let bytes = amount.raw().to_be_bytes::<32>();
    // Leading zero bytes skipped; zero keeps its last byte (`00`).
    let lead = bytes.iter().position(|&b| b != 0).unwrap_or(31);
    let at = out.len();
    out.extend_from_slice(b"\"0x");
    out.resize(at + 3 + 2 * (32 - lead), 0);
    // Two digits a byte always fit: cannot fail.
    alloy_primitives::hex::encode_to_slice(&bytes[lead..], &mut out[at + 3..])
        .expect("two hex digits a byte fit");
    if style == HexStyle::Minimal && out[at + 3] == b'0' {
        // A leading zero nibble is dropped; the last digit stays (`0x0`).
        out.remove(at + 3);
    }
    out.push(b'"');
}

/// Claims whose proofs [`UniswapDistribution::write_json_to`] gathers before it renders
/// them. A proof reads one node a layer at a random place (the leaf layer is in hash
/// order, the claims in index order); gathered in a run of their own, the loads of many
/// proofs overlap instead of waiting between claims' text.
const PROOF_BATCH: usize = 256;

/// A Uniswap merkle-distributor distribution (what `parseBalanceMap` computes).
#[derive(Debug, Clone)]
pub struct UniswapDistribution {
    /// Claims in index order.
    claims: Vec<UniswapClaim>,
    /// Checksummed account text per claim (the JSON keys, and the sort key of the index):
    /// 42 ASCII bytes each, not a `String` each (a million allocations at a million claims).
    keys: Vec<[u8; 42]>,
    /// (account, index) sorted by account.
    by_account: Vec<(Address, u32)>,
    /// Position of each claim's leaf in the tree's leaf layer.
    leaf_pos: Vec<u32>,
    tree: LayeredTree,
    token_total: Amount,
    hex: HexStyle,
}

impl UniswapDistribution {
    /// `parseBalanceMap`: checksums and sorts the accounts, assigns indices, hashes the
    /// packed leaves and builds the layered tree. Same as
    /// [`Self::parse_balance_map_with`] with the default [`UniswapOptions`].
    ///
    /// # Errors
    /// As [`Self::parse_balance_map_with`].
    pub fn parse_balance_map(entries: &[BalanceEntry]) -> Result<Self, ClaimsError> {
        Self::parse_balance_map_with(entries, UniswapOptions::default())
    }

    /// `parseBalanceMap` with a choice of index order and hex style ([`UniswapOptions`]).
    ///
    /// Stricter than the original: the total must fit 2^256 − 1 base units
    /// (parseBalanceMap does not check it, so a contract could never hold it).
    ///
    /// # Errors
    /// [`ClaimsError::Empty`], [`ClaimsError::DuplicateAccount`],
    /// [`ClaimsError::ZeroAmount`] (parseBalanceMap rejects amounts ≤ 0),
    /// [`ClaimsError::TotalOverflow`].
    pub fn parse_balance_map_with(
        entries: &[BalanceEntry],
        opts: UniswapOptions,
    ) -> Result<Self, ClaimsError> {
        if entries.is_empty() {
            return Err(ClaimsError::Empty);
        }
        if let Some(e) = entries.iter().find(|e| e.amount.is_zero()) {
            return Err(ClaimsError::ZeroAmount {
                account: format_address(&e.account),
            });
        }
        let token_total = checked_total(entries.iter().map(|e| e.amount))?;
        let accounts: Vec<Address> = entries.iter().map(|e| e.account).collect();
        // Sorted as bytes, which for ASCII is the order of the strings parseBalanceMap sorts.
        let mut keyed: Vec<([u8; 42], &BalanceEntry)> =
            crate::primitives::checksum_many_par(&accounts)
                .into_par_iter()
                .zip(entries.par_iter())
                .collect();
        drop(accounts);
        if opts.index_order == IndexOrder::ChecksumSorted {
            keyed.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        let mut by_account: Vec<(Address, u32)> = keyed
            .iter()
            .enumerate()
            .map(|(i, (_, e))| (e.account, i as u32))
            .collect();
        by_account.par_sort_unstable();
        if let Some(w) = by_account.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ClaimsError::DuplicateAccount {
                account: format_address(&w[0].0),
            });
        }
        let claims: Vec<UniswapClaim> = keyed
            .iter()
            .enumerate()
            .map(|(i, (_, e))| UniswapClaim {
                account: e.account,
                index: i as u64,
                amount: e.amount,
                flags: e.flags,
            })
            .collect();
        let keys: Vec<[u8; 42]> = keyed.into_iter().map(|(k, _)| k).collect();
        let mut leaves: Vec<(B256, u32)> =
            leaves_of(&claims, |c| uniswap_preimage(c.index, &c.account, c.amount))
                .into_iter()
                .zip(claims.iter().map(|c| c.index as u32))
                .collect();
        leaves.par_sort_unstable();
        // Indices are distinct, so no two leaves are equal and de-duplication is a no-op.
        let mut leaf_pos = vec![0u32; claims.len()];
        for (p, (_, i)) in leaves.iter().enumerate() {
            leaf_pos[*i as usize] = p as u32;
        }
        let tree = LayeredTree::new(leaves.into_iter().map(|(h, _)| h).collect())?;
        Ok(Self {
            claims,
            keys,
            by_account,
            leaf_pos,
            tree,
            token_total,
            hex: opts.hex,
        })
    }

    /// The Merkle root.
    pub fn root(&self) -> B256 {
        self.tree.root()
    }

    /// Σ amounts, base units.
    pub fn token_total(&self) -> Amount {
        self.token_total
    }

    /// The claims in index order.
    pub fn claims(&self) -> &[UniswapClaim] {
        &self.claims
    }

    /// The claim index of `account`, if it has one.
    pub fn index_of(&self, account: &Address) -> Option<usize> {
        let k = self
            .by_account
            .binary_search_by(|(a, _)| a.cmp(account))
            .ok()?;
        Some(self.by_account[k].1 as usize)
    }

    /// The proof of the claim with `index`. Panics when out of range.
    pub fn proof(&self, index: usize) -> Vec<B256> {
        self.tree.proof(self.leaf_pos[index] as usize)
    }

    /// Appends `JSON.stringify(parseBalanceMap(...), null, 2)` (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_to(out)
            .expect("writing to a Vec cannot fail");
    }

    /// Writes the JSON of [`Self::write_json`] to `w` in pieces of about 1 MiB.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_json_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let out = &mut spill_buffer();
        out.extend_from_slice(b"{\n  \"merkleRoot\": ");
        push_b256(out, &self.root());
        out.extend_from_slice(b",\n  \"tokenTotal\": ");
        push_hex_amount(out, self.token_total, self.hex);
        out.extend_from_slice(b",\n  \"claims\": {");
        // The proofs of a batch of claims, one after another, and where each ends.
        let mut proofs: Vec<B256> = Vec::with_capacity(PROOF_BATCH * 32);
        let mut ends: Vec<usize> = Vec::with_capacity(PROOF_BATCH);
        for (i, c) in self.claims.iter().enumerate() {
            let k = i % PROOF_BATCH;
            if k == 0 {
                proofs.clear();
                ends.clear();
                let batch = i..(i + PROOF_BATCH).min(self.claims.len());
                for &pos in &self.leaf_pos[batch] {
                    self.tree.proof_into(pos as usize, &mut proofs);
                    ends.push(proofs.len());
                }
            }
            let proof = &proofs[if k == 0 { 0 } else { ends[k - 1] }..ends[k]];
            out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
            push_address_text(out, &self.keys[i]);
            out.extend_from_slice(b": {\n      \"index\": ");
            push_usize(out, c.index as usize);
            out.extend_from_slice(b",\n      \"amount\": ");
            push_hex_amount(out, c.amount, self.hex);
            out.extend_from_slice(b",\n      \"proof\": [");
            push_proof(out, proof, 8, 6);
            if let Some(f) = c.flags {
                out.extend_from_slice(b",\n      \"flags\": {\n        \"isSOCKS\": ");
                out.extend_from_slice(if f.is_socks { b"true" } else { b"false" });
                out.extend_from_slice(b",\n        \"isLP\": ");
                out.extend_from_slice(if f.is_lp { b"true" } else { b"false" });
                out.extend_from_slice(b",\n        \"isUser\": ");
                out.extend_from_slice(if f.is_user { b"true" } else { b"false" });
                out.extend_from_slice(b"\n      }");
            }
            out.extend_from_slice(b"\n    }");
            spill(out, w)?;
        }
        out.extend_from_slice(b"\n  }\n}");
        w.write_all(out)
    }

    /// The JSON as a string. See [`Self::write_json`].
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).expect("ASCII JSON")
    }
}

/// A layered tree over packed `(address, uint256)` leaves (Beanstalk's unripe claims):
/// single hash, leaves in the given order, sorted-pair nodes, odd node promoted.
#[derive(Debug, Clone)]
pub struct PackedDistribution {
    accounts: Vec<Address>,
    amounts: Vec<Amount>,
    tree: LayeredTree,
}

impl PackedDistribution {
    /// Builds the tree over `entries` in the given order.
    ///
    /// # Errors
    /// [`ClaimsError::Empty`], [`ClaimsError::DuplicateAccount`] (the JSON is keyed by
    /// account), [`ClaimsError::TotalOverflow`].
    pub fn new(entries: &[(Address, Amount)]) -> Result<Self, ClaimsError> {
        if entries.is_empty() {
            return Err(ClaimsError::Empty);
        }
        checked_total(entries.iter().map(|e| e.1))?;
        let mut sorted: Vec<&Address> = entries.iter().map(|e| &e.0).collect();
        sorted.par_sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ClaimsError::DuplicateAccount {
                account: format_address(w[0]),
            });
        }
        let leaves = leaves_of(entries, |(a, v)| packed_preimage(a, *v));
        Ok(Self {
            accounts: entries.iter().map(|e| e.0).collect(),
            amounts: entries.iter().map(|e| e.1).collect(),
            tree: LayeredTree::new(leaves)?,
        })
    }

    /// The Merkle root.
    pub fn root(&self) -> B256 {
        self.tree.root()
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Accounts in leaf order.
    pub fn accounts(&self) -> &[Address] {
        &self.accounts
    }

    /// Amounts in leaf order, base units.
    pub fn amounts(&self) -> &[Amount] {
        &self.amounts
    }

    /// The proof of leaf `pos`. Panics when out of range.
    pub fn proof(&self, pos: usize) -> Vec<B256> {
        self.tree.proof(pos)
    }

    /// Appends Beanstalk's `*-merkle.json` shape: `{"0xAccount": {"amount": "<decimal>",
    /// "leaf": "0x…", "proof": [...]}}` in leaf order, 4-space indented, no trailing newline.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_to(out)
            .expect("writing to a Vec cannot fail");
    }

    /// Writes the JSON of [`Self::write_json`] to `w` in pieces of about 1 MiB.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_json_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let out = &mut spill_buffer();
        out.push(b'{');
        let mut proof = Vec::with_capacity(32);
        for (i, (a, v)) in self.accounts.iter().zip(&self.amounts).enumerate() {
            out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
            push_str(out, &format_address(a));
            out.extend_from_slice(b": {\n        \"amount\": ");
            push_str(out, &v.to_string());
            out.extend_from_slice(b",\n        \"leaf\": ");
            push_b256(out, &self.tree.leaves()[i]);
            out.extend_from_slice(b",\n        \"proof\": [");
            proof.clear();
            self.tree.proof_into(i, &mut proof);
            push_proof(out, &proof, 12, 8);
            out.extend_from_slice(b"\n    }");
            spill(out, w)?;
        }
        out.extend_from_slice(b"\n}");
        w.write_all(out)
    }
}

/// Appends the body and closing bracket of a JSON proof array (the `[` is already written):
/// one hash a line indented by `indent` spaces, then `]` on its own line indented by `close`;
/// `]` alone when empty.
fn push_proof(out: &mut Vec<u8>, proof: &[B256], indent: usize, close: usize) {
    const SPACES: &[u8] = b"                ";
    for (k, h) in proof.iter().enumerate() {
        out.extend_from_slice(if k == 0 { b"\n" } else { b",\n" });
        out.extend_from_slice(&SPACES[..indent]);
        push_b256(out, h);
    }
    if !proof.is_empty() {
        out.push(b'\n');
        out.extend_from_slice(&SPACES[..close]);
    }
    out.push(b']');
}

/// Whether `proof` proves `(index, account, amount)` against a Uniswap distributor root.
pub fn verify_uniswap(
    root: B256,
    index: u64,
    account: &Address,
    amount: Amount,
    proof: &[B256],
) -> bool {
    super::hash::process_proof(uniswap_leaf(index, account, amount), proof) == root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_hex_string_is_even_length() {
        assert_eq!(to_hex_string(U512::ZERO), "0x00");
        assert_eq!(to_hex_string(U512::from(0x2eeu32)), "0x02ee");
        assert_eq!(to_hex_string(U512::from(200u32)), "0xc8");
    }

    /// The in-place hex amounts are ethers' `toHexString()` (even length) and plain
    /// `{:x}` (minimal), quoted: at zero, at each nibble and byte boundary, at the
    /// maximum, and at every width in between.
    #[test]
    fn hex_amounts_written_in_place_are_the_formatted_ones() {
        use crate::primitives::U256;
        let mut values = vec![U256::ZERO, U256::MAX];
        for bits in 0..256 {
            let p = U256::from(1u8) << bits;
            values.extend([
                p,
                p - U256::from(1u8),
                p | (p >> 1),
                p + U256::from(0x2eeu32),
            ]);
        }
        for v in values {
            let a = Amount::from(v);
            for (style, want) in [
                (HexStyle::EvenLength, to_hex_string(U512::from(v))),
                (HexStyle::Minimal, format!("0x{v:x}")),
            ] {
                let mut out = b"[".to_vec();
                push_hex_amount(&mut out, a, style);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("[\"{want}\""),
                    "{v:#x} {style:?}"
                );
            }
        }
    }

    /// Proofs are gathered [`PROOF_BATCH`] claims at a time: every claim's proof in the
    /// JSON, across the batch boundaries, is its own and verifies against the root.
    #[test]
    fn json_proofs_across_batches_are_each_claims_own() {
        let n = 2 * PROOF_BATCH + 37;
        let entries: Vec<BalanceEntry> = (0..n)
            .map(|k| BalanceEntry {
                account: Address::from_word(keccak256((k as u64).to_be_bytes())),
                amount: Amount::from(1_000u64 + k as u64),
                flags: None,
            })
            .collect();
        let d = UniswapDistribution::parse_balance_map(&entries).unwrap();
        let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        let claims = json["claims"].as_object().unwrap();
        assert_eq!(claims.len(), n);
        for c in d.claims() {
            let got: Vec<B256> = claims[&format_address(&c.account)]["proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().parse().unwrap())
                .collect();
            assert_eq!(got, d.proof(c.index as usize), "claim {}", c.index);
            assert!(verify_uniswap(
                d.root(),
                c.index,
                &c.account,
                c.amount,
                &got
            ));
        }
    }

    #[test]
    fn zero_amount_is_rejected_like_parse_balance_map() {
        let e = [BalanceEntry {
            account: Address::repeat_byte(1),
            amount: Amount::ZERO,
            flags: None,
        }];
        assert!(matches!(
            UniswapDistribution::parse_balance_map(&e),
            Err(ClaimsError::ZeroAmount { .. })
        ));
    }
}
