//! Claim trees: turn `{account → amount}` into a Merkle root, proofs and the tree file a
//! claim contract's tooling reads.
//!
//! Three formats, each bit-exact with its reference client:
//!
//! | [`TreeFormat`] | leaf | shape | file |
//! |---|---|---|---|
//! | `oz-standard` | `keccak256(keccak256(abi.encode(values)))` over a [`LeafEncoding`] | OpenZeppelin heap array, leaves sorted by hash | `StandardMerkleTree.dump()` (`standard-v1`) |
//! | `uniswap` | `keccak256(abi.encodePacked(uint256 index, address, uint256 amount))` | layered, sorted, odd node carried up | `parseBalanceMap` JSON |
//! | `layered-packed` | `keccak256(abi.encodePacked(address, uint256 amount))` | layered, odd node carried up | Beanstalk `*-merkle.json` |
//!
//! The pipeline calls [`build_tree`] with a [`ClaimTreeSpec`] (a `[[outputs.trees]]` table
//! of the incident manifest) and one payout asset's [`ClaimEntry`] rows. The lower-level
//! types ([`StandardMerkleTree`], [`UniswapDistribution`], [`PackedDistribution`],
//! [`LayeredTree`]) reproduce published trees whose order or encoding differs.
//!
//! Amounts are base units of the tree's one payout asset. Every total is checked against
//! 2^256 − 1 (a contract could never hold more).

pub mod abi;
pub mod hash;
mod json;
pub mod layered;
pub mod standard;
pub mod uniswap;

pub use abi::{AbiError, LeafEncoding, LeafValue, SolType};
pub use hash::{hash_pair, parse_hash, process_multiproof, process_proof};
pub use layered::LayeredTree;
pub use standard::{standard_leaf_hash, MultiProof, StandardMerkleTree};
pub use uniswap::{
    packed_leaf, uniswap_leaf, verify_uniswap, BalanceEntry, ClaimFlags, IndexOrder,
    PackedDistribution, UniswapClaim, UniswapDistribution, UniswapOptions,
};

use crate::primitives::{format_address, Amount};
use alloy_primitives::{Address, B256, U256};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Errors building, loading or proving claim trees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// No claims: a Merkle tree needs at least one leaf.
    #[error("no claims: a Merkle tree needs at least one leaf")]
    Empty,
    /// A row's values do not fit the leaf encoding.
    #[error("row {row}: {source}")]
    Value {
        /// Row number (0-based, input order).
        row: usize,
        /// What does not fit.
        #[source]
        source: AbiError,
    },
    /// The same account appears twice.
    #[error("account {account} appears more than once; merge its claims first")]
    DuplicateAccount {
        /// The account, EIP-55 checksummed.
        account: String,
    },
    /// The sum of the claims exceeds 2^256 − 1 base units.
    #[error("total of claims {total} exceeds 2^256-1 base units: no token contract can hold it")]
    TotalOverflow {
        /// The exact total, `0x` hex.
        total: String,
    },
    /// A zero amount in a format that rejects it (Uniswap `parseBalanceMap`).
    #[error("account {account} has a zero amount; the uniswap format requires amounts > 0 (drop the row)")]
    ZeroAmount {
        /// The account, EIP-55 checksummed.
        account: String,
    },
    /// A row index past the end.
    #[error("index {index} out of range for a tree of {len} leaves")]
    IndexOutOfRange {
        /// Index asked for.
        index: usize,
        /// Number of leaves.
        len: usize,
    },
    /// A malformed multiproof.
    #[error("invalid multiproof: {0}")]
    InvalidMultiproof(String),
    /// A tree dump that cannot be read.
    #[error("invalid tree dump: {0}")]
    Dump(String),
    /// A dumped value whose leaf hash differs from the node at its `treeIndex`.
    #[error("values[{value_index}] hashes to {expected} but tree[{tree_index}] is {got}")]
    LeafMismatch {
        /// Position in `values`.
        value_index: usize,
        /// Its `treeIndex`.
        tree_index: usize,
        /// The hash of the value.
        expected: B256,
        /// The node in the dump.
        got: B256,
    },
    /// A dumped internal node that is not the hash of its children.
    #[error("tree[{tree_index}] is {got} but the hash of its children is {expected}")]
    NodeMismatch {
        /// Node index.
        tree_index: usize,
        /// Hash of the two children.
        expected: B256,
        /// The node in the dump.
        got: B256,
    },
    /// A tree spec that cannot be built.
    #[error("tree spec: {0}")]
    Spec(String),
}

/// A claim tree file format. Names as written in manifests and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TreeFormat {
    /// OpenZeppelin `StandardMerkleTree` (`standard-v1` dump): Morpho URD, Sablier,
    /// Hedgey, any contract using `MerkleProof.verify` with the double-hashed leaf.
    OzStandard,
    /// Uniswap `merkle-distributor` (`parseBalanceMap` JSON): Uniswap, Harvest, Eminence,
    /// 1inch-style bitmap distributors.
    Uniswap,
    /// Layered tree over `keccak256(abi.encodePacked(address, uint256))` leaves
    /// (Beanstalk).
    LayeredPacked,
}

impl std::str::FromStr for TreeFormat {
    type Err = ClaimsError;

    /// `oz-standard`, `uniswap` or `layered-packed`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oz-standard" => Ok(Self::OzStandard),
            "uniswap" => Ok(Self::Uniswap),
            "layered-packed" => Ok(Self::LayeredPacked),
            _ => Err(ClaimsError::Spec(format!(
                "unknown tree format {s:?}; expected oz-standard, uniswap or layered-packed"
            ))),
        }
    }
}

impl std::fmt::Display for TreeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OzStandard => "oz-standard",
            Self::Uniswap => "uniswap",
            Self::LayeredPacked => "layered-packed",
        })
    }
}

fn default_true() -> bool {
    true
}

/// One claim tree to publish: a `[[outputs.trees]]` table of the incident manifest.
///
/// ```toml
/// [[outputs.trees]]
/// format = "oz-standard"                        # or "uniswap", "layered-packed"
/// leaf_encoding = ["uint256","address","uint256"] # oz-standard only; default ["address","uint256"]
/// sort_leaves = true                            # default
/// asset = "DAI"                                 # which payout asset the pipeline feeds in
/// file = "dai-tree.json"
/// ```
///
/// Leaf fields are filled by role for `oz-standard`: `["address","uintN"]` = (account,
/// amount); `["uintN","address","uintN"]` = (index, account, amount), where *index* is
/// the row's position in the tree's value order (ascending account when `sort_leaves`,
/// else the order of the entries given). The amount must fit `uintN`.
///
/// `sort_leaves = true` (default) makes the output independent of row order: entries
/// are put in ascending account order, and `oz-standard` / `layered-packed` sort leaves
/// by hash (OZ's default). `false` keeps the entries' order for values and leaves (to
/// reproduce a tree built from a CSV in file order, e.g. Beanstalk). For `uniswap` the
/// leaves are always sorted (its tree code does it); `false` assigns claim indices in
/// entry order instead of checksummed-address order (as the 2020 script behind Eminence's
/// file did; that file also wrote minimal hex, see [`UniswapOptions::LEGACY_2020`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimTreeSpec {
    /// File format and leaf/tree construction.
    pub format: TreeFormat,
    /// Solidity types of the leaf (`oz-standard` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_encoding: Option<Vec<String>>,
    /// Sort leaves (and canonicalise entry order); see the type docs.
    #[serde(default = "default_true")]
    pub sort_leaves: bool,
    /// The payout asset whose claims this tree carries (the pipeline selects the entries;
    /// [`build_tree`] does not read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Output file name, relative to the run's output directory.
    pub file: String,
    /// Order the pipeline gives the entries (and so the leaf indices when `sort_leaves`
    /// is false); [`build_tree`] does not read it.
    #[serde(default, skip_serializing_if = "EntryOrder::is_default")]
    pub order: EntryOrder,
    /// `uniswap` only: how amounts are written, `even-length` (today's parseBalanceMap,
    /// the default) or `minimal` (the 2020 script behind Eminence's file).
    #[serde(default, skip_serializing_if = "is_even_length")]
    pub hex: uniswap::HexStyle,
}

fn is_even_length(h: &uniswap::HexStyle) -> bool {
    *h == uniswap::HexStyle::EvenLength
}

/// The order of a tree's entries, which fixes leaf indices when `sort_leaves = false`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum EntryOrder {
    /// Ascending account (the default; independent of input order).
    #[default]
    Account,
    /// Descending amount, ties in order of first appearance in the inputs: how the
    /// Eminence 2020 script numbered its claims.
    AmountDesc,
    /// Order of first appearance in the inputs (a published claim list's own order, e.g.
    /// Beanstalk's CSVs).
    Input,
}

impl EntryOrder {
    fn is_default(&self) -> bool {
        *self == Self::Account
    }
}

impl ClaimTreeSpec {
    /// Whether the tree's published leaf index is the rank of its account's EIP-55 text among
    /// the tree's accounts ([`IndexOrder::ChecksumSorted`], `parseBalanceMap`'s): a Uniswap
    /// distribution with sorted leaves. Otherwise it is the position of its value.
    pub fn indexes_by_checksum_text(&self) -> bool {
        self.format == TreeFormat::Uniswap && self.sort_leaves
    }

    /// A spec with defaults: `["address","uint256"]` for `oz-standard`, sorted leaves.
    pub fn new(format: TreeFormat, file: impl Into<String>) -> Self {
        Self {
            format,
            leaf_encoding: None,
            sort_leaves: true,
            asset: None,
            file: file.into(),
            order: EntryOrder::Account,
            hex: uniswap::HexStyle::EvenLength,
        }
    }
}

/// One row of a claim tree: an account and what it may claim, in base units of the
/// tree's payout asset.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ClaimEntry {
    /// The claimant.
    pub account: Address,
    /// Base units of the payout asset.
    pub amount: Amount,
}

/// Role of each field of an `oz-standard` leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Index(u16),
    Account,
    Amount(u16),
}

fn roles_for(encoding: &LeafEncoding) -> Result<Vec<Role>, ClaimsError> {
    let t = encoding.types();
    let roles = match t {
        [SolType::Address, SolType::Uint(b)] => vec![Role::Account, Role::Amount(*b)],
        [SolType::Uint(i), SolType::Address, SolType::Uint(b)] => vec![Role::Index(*i), Role::Account, Role::Amount(*b)],
        _ => {
            return Err(ClaimsError::Spec(format!(
                "leaf_encoding [{}] has no account/amount mapping; use [\"address\",\"uintN\"] (account, amount) or [\"uintN\",\"address\",\"uintN\"] (index, account, amount)",
                encoding.names().join(",")
            )))
        }
    };
    Ok(roles)
}

#[derive(Debug)]
enum Inner {
    Oz {
        tree: StandardMerkleTree,
        account_field: usize,
    },
    Uniswap(UniswapDistribution),
    Packed(PackedDistribution),
}

/// A built claim tree of any [`TreeFormat`].
#[derive(Debug)]
pub struct BuiltTree {
    inner: Inner,
    /// (account, row) sorted by account, built on first lookup.
    lookup: OnceLock<Vec<(Address, u32)>>,
}

/// A claim as a contract checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimProof {
    /// The claimant.
    pub account: Address,
    /// Base units.
    pub amount: Amount,
    /// The leaf's index field (`uniswap`, and `oz-standard` with an index field).
    pub index: Option<u64>,
    /// The leaf hash.
    pub leaf: B256,
    /// Sibling hashes, leaf to root.
    pub proof: Vec<B256>,
}

/// Builds one claim tree from one payout asset's entries.
///
/// # Errors
/// [`ClaimsError::Empty`], [`ClaimsError::DuplicateAccount`],
/// [`ClaimsError::TotalOverflow`] (Σ amounts > 2^256 − 1), [`ClaimsError::Spec`] (an
/// encoding without an account/amount mapping, a `leaf_encoding` on another format),
/// [`ClaimsError::Value`] (an amount wider than the encoding's `uintN`),
/// [`ClaimsError::ZeroAmount`] (`uniswap` only).
pub fn build_tree(spec: &ClaimTreeSpec, entries: &[ClaimEntry]) -> Result<BuiltTree, ClaimsError> {
    if entries.is_empty() {
        return Err(ClaimsError::Empty);
    }
    uniswap::checked_total(entries.iter().map(|e| e.amount))?;
    // Entries already in account order (as the pipeline passes a sorted tree's) are used
    // as they are: at a million claimants a copy is 56 MB of fresh pages a tree.
    let ordered: std::borrow::Cow<'_, [ClaimEntry]> =
        if spec.sort_leaves && !entries.is_sorted_by_key(|e| e.account) {
            let mut sorted = entries.to_vec();
            sorted.par_sort_unstable_by(|a, b| a.account.cmp(&b.account));
            sorted.into()
        } else {
            entries.into()
        };
    if spec.sort_leaves {
        if let Some(w) = ordered.windows(2).find(|w| w[0].account == w[1].account) {
            return Err(ClaimsError::DuplicateAccount {
                account: format_address(&w[0].account),
            });
        }
    } else {
        let mut accounts: Vec<Address> = ordered.par_iter().map(|e| e.account).collect();
        accounts.par_sort_unstable();
        if let Some(w) = accounts.windows(2).find(|w| w[0] == w[1]) {
            return Err(ClaimsError::DuplicateAccount {
                account: format_address(&w[0]),
            });
        }
    }
    if spec.format != TreeFormat::OzStandard && spec.leaf_encoding.is_some() {
        return Err(ClaimsError::Spec(format!(
            "leaf_encoding applies to oz-standard only; {} has a fixed leaf",
            spec.format
        )));
    }
    let inner = match spec.format {
        TreeFormat::OzStandard => {
            let names = spec
                .leaf_encoding
                .clone()
                .unwrap_or_else(|| vec!["address".into(), "uint256".into()]);
            let encoding =
                LeafEncoding::new(&names).map_err(|e| ClaimsError::Spec(e.to_string()))?;
            let roles = roles_for(&encoding)?;
            let account_field = roles
                .iter()
                .position(|r| *r == Role::Account)
                .expect("every mapping has an account");
            // Row-major, `roles.len()` values a leaf; indexed, so rayon writes them in place.
            let w = roles.len();
            let values: Vec<LeafValue> = (0..ordered.len() * w)
                .into_par_iter()
                .map(|k| {
                    let (i, e) = (k / w, &ordered[k / w]);
                    match roles[k % w] {
                        Role::Index(_) => LeafValue::Uint(U256::from(i)),
                        Role::Account => LeafValue::Address(e.account),
                        Role::Amount(_) => LeafValue::Uint(e.amount.raw()),
                    }
                })
                .collect();
            let tree = StandardMerkleTree::of_flat(encoding, values, spec.sort_leaves)?;
            Inner::Oz {
                tree,
                account_field,
            }
        }
        TreeFormat::Uniswap => {
            let rows: Vec<BalanceEntry> = ordered
                .iter()
                .map(|e| BalanceEntry {
                    account: e.account,
                    amount: e.amount,
                    flags: None,
                })
                .collect();
            let index_order = if spec.indexes_by_checksum_text() {
                IndexOrder::ChecksumSorted
            } else {
                IndexOrder::Input
            };
            let opts = UniswapOptions {
                index_order,
                hex: spec.hex,
            };
            Inner::Uniswap(UniswapDistribution::parse_balance_map_with(&rows, opts)?)
        }
        TreeFormat::LayeredPacked => {
            let mut rows: Vec<(Address, Amount)> =
                ordered.iter().map(|e| (e.account, e.amount)).collect();
            if spec.sort_leaves {
                // Sort by leaf hash (merkletreejs `sortLeaves`); accounts are distinct so
                // leaves are too.
                let mut keyed: Vec<(B256, (Address, Amount))> = rows
                    .par_iter()
                    .map(|r| (packed_leaf(&r.0, r.1), *r))
                    .collect();
                keyed.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
                rows = keyed.into_iter().map(|k| k.1).collect();
            }
            Inner::Packed(PackedDistribution::new(&rows)?)
        }
    };
    Ok(BuiltTree {
        inner,
        lookup: OnceLock::new(),
    })
}

impl BuiltTree {
    /// The Merkle root a claim contract is deployed with.
    pub fn root(&self) -> B256 {
        match &self.inner {
            Inner::Oz { tree, .. } => tree.root(),
            Inner::Uniswap(u) => u.root(),
            Inner::Packed(p) => p.root(),
        }
    }

    /// The format.
    pub fn format(&self) -> TreeFormat {
        match &self.inner {
            Inner::Oz { .. } => TreeFormat::OzStandard,
            Inner::Uniswap(_) => TreeFormat::Uniswap,
            Inner::Packed(_) => TreeFormat::LayeredPacked,
        }
    }

    /// Number of leaves (= claims).
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Oz { tree, .. } => tree.len(),
            Inner::Uniswap(u) => u.claims().len(),
            Inner::Packed(p) => p.len(),
        }
    }

    /// Never true: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The OpenZeppelin tree, for `oz-standard`.
    pub fn as_standard(&self) -> Option<&StandardMerkleTree> {
        match &self.inner {
            Inner::Oz { tree, .. } => Some(tree),
            _ => None,
        }
    }

    /// The Uniswap distribution, for `uniswap`.
    pub fn as_uniswap(&self) -> Option<&UniswapDistribution> {
        match &self.inner {
            Inner::Uniswap(u) => Some(u),
            _ => None,
        }
    }

    /// Σ amounts, base units (checked at build time to fit 2^256 − 1).
    pub fn total(&self) -> Amount {
        let total = match &self.inner {
            Inner::Oz { .. } => Amount::checked_sum((0..self.len()).map(|i| self.row_claim(i).1)),
            Inner::Uniswap(u) => Ok(u.token_total()),
            Inner::Packed(p) => Amount::checked_sum(p.amounts().iter().copied()),
        };
        total.expect("total checked at build")
    }

    /// (account, amount, index field) of row `i`.
    fn row_claim(&self, i: usize) -> (Address, Amount, Option<u64>) {
        match &self.inner {
            Inner::Oz {
                tree,
                account_field,
            } => {
                let row = tree.value(i);
                let account = match &row[*account_field] {
                    LeafValue::Address(a) => *a,
                    _ => unreachable!("account field holds an address"),
                };
                let amount = match row.last() {
                    Some(LeafValue::Uint(u)) => Amount::new(*u),
                    _ => unreachable!("amount field holds a uint"),
                };
                let index = (*account_field == 1).then(|| match &row[0] {
                    LeafValue::Uint(u) => u.to::<u64>(),
                    _ => unreachable!("index field holds a uint"),
                });
                (account, amount, index)
            }
            Inner::Uniswap(u) => {
                let c = &u.claims()[i];
                (c.account, c.amount, Some(c.index))
            }
            Inner::Packed(p) => (p.accounts()[i], p.amounts()[i], None),
        }
    }

    fn row_of(&self, account: &Address) -> Option<usize> {
        let lookup = self.lookup.get_or_init(|| {
            let mut v: Vec<(Address, u32)> = (0..self.len())
                .into_par_iter()
                .map(|i| (self.row_claim(i).0, i as u32))
                .collect();
            v.par_sort_unstable();
            v
        });
        lookup
            .binary_search_by(|(a, _)| a.cmp(account))
            .ok()
            .map(|k| lookup[k].1 as usize)
    }

    /// The proof of `account`'s claim, or `None` when it has no leaf. A slice walk of the
    /// built tree (the first call builds an account index, O(n log n)).
    pub fn proof(&self, account: &Address) -> Option<Vec<B256>> {
        self.claim(account).map(|c| c.proof)
    }

    /// Everything a claim transaction needs for `account`, or `None`.
    pub fn claim(&self, account: &Address) -> Option<ClaimProof> {
        let i = self.row_of(account)?;
        Some(self.claim_at(i))
    }

    /// The claim at row `i` (the file's order: values order for `oz-standard`, index order
    /// for `uniswap`, leaf order for `layered-packed`). Panics when `i >= len()`.
    pub fn claim_at(&self, i: usize) -> ClaimProof {
        let (account, amount, index) = self.row_claim(i);
        let (leaf, proof) = match &self.inner {
            Inner::Oz { tree, .. } => (tree.leaf_hash(i), tree.proof(i)),
            Inner::Uniswap(u) => (
                uniswap_leaf(u.claims()[i].index, &account, amount),
                u.proof(i),
            ),
            Inner::Packed(p) => (packed_leaf(&account, amount), p.proof(i)),
        };
        ClaimProof {
            account,
            amount,
            index,
            leaf,
            proof,
        }
    }

    /// Appends the format's own file (OZ `dump()`, parseBalanceMap JSON, Beanstalk JSON).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_to(out)
            .expect("writing to a Vec cannot fail");
    }

    /// Writes the format's own file to `w` in pieces of about 1 MiB, never holding it
    /// whole (a million-leaf Uniswap file with its proofs is over a gigabyte).
    ///
    /// # Errors
    /// The writer's.
    pub fn write_json_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        match &self.inner {
            Inner::Oz { tree, .. } => tree.write_dump_to(w),
            Inner::Uniswap(u) => u.write_json_to(w),
            Inner::Packed(p) => p.write_json_to(w),
        }
    }

    /// The format's own file as a string. See [`Self::write_json`].
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON writers emit UTF-8")
    }
}
