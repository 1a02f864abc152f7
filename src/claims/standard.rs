//! OpenZeppelin `StandardMerkleTree` (npm `@openzeppelin/merkle-tree` 1.0.8, format
//! `standard-v1`), bit for bit.
//!
//! Leaf = `keccak256(keccak256(abi.encode(values...)))`; node = keccak256 of the sorted
//! pair; a flat heap array of `2n − 1` nodes (`tree[0]` the root, children of `i` at
//! `2i+1`, `2i+2`), the leaves sorted ascending by hash (unless `sort_leaves` is off) and
//! stored from the end (`tree[len−1−k]` = k-th leaf). Values stay in input order; each
//! records its `treeIndex`. Reference: <https://github.com/OpenZeppelin/merkle-tree>
//! (`src/core.ts`, `src/merkletree.ts`, `src/standard.ts`).

use super::abi::{encode_into, LeafEncoding, LeafValue, SolType};
use super::hash::{hash_pair, hash_pairs, process_multiproof, process_proof};
use super::json::{
    leaf_value_addresses, push_b256, push_leaf_value, push_str, push_usize, spill, spill_buffer,
};
use super::ClaimsError;
use crate::primitives::keccak::{keccak256_many, keccak256_slices};
use alloy_primitives::{keccak256, B256};
use rayon::prelude::*;

/// Below this many items a level is hashed on the calling thread.
const PAR_MIN: usize = 2048;

/// Rows per block when leaves are hashed in parallel.
const LEAF_BLOCK: usize = 1024;

/// `keccak256(keccak256(abi.encode(values...)))` for values checked against `types`.
pub fn standard_leaf_hash(types: &[SolType], values: &[LeafValue]) -> B256 {
    let mut buf = Vec::with_capacity(32 * types.len());
    leaf_hash_with(types, values, &mut buf)
}

fn leaf_hash_with(types: &[SolType], values: &[LeafValue], buf: &mut Vec<u8>) -> B256 {
    buf.clear();
    encode_into(types, values, buf);
    keccak256(keccak256(&buf[..]))
}

/// A multiproof for several leaves at once, as OpenZeppelin's `getMultiProof` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiProof {
    /// Value indices (input order positions) of the proven leaves, in the order a contract
    /// must pass them (descending tree index; for a sorted tree, ascending leaf hash).
    pub leaves: Vec<usize>,
    /// Leaf hashes, same order as `leaves`.
    pub leaf_hashes: Vec<B256>,
    /// Sibling hashes the contract cannot compute itself.
    pub proof: Vec<B256>,
    /// `true`: combine with the next computed hash; `false`: with the next `proof` item.
    pub proof_flags: Vec<bool>,
}

/// An OpenZeppelin `StandardMerkleTree`: the values, the flat node array, and where each
/// value's leaf sits.
#[derive(Debug, Clone)]
pub struct StandardMerkleTree {
    encoding: LeafEncoding,
    /// Values row by row, `encoding.len()` per row, input order.
    values: Vec<LeafValue>,
    tree: Vec<B256>,
    tree_index: Vec<u32>,
}

/// Builds the heap array from leaves already in placement order (leaf k goes to
/// `tree[len-1-k]`); internal nodes level by level, each level in parallel.
pub(crate) fn build_heap(leaves: &[B256]) -> Vec<B256> {
    let n = leaves.len();
    let len = 2 * n - 1;
    let mut tree = vec![B256::ZERO; len];
    tree[n - 1..]
        .iter_mut()
        .rev()
        .zip(leaves)
        .for_each(|(slot, l)| *slot = *l);
    if n == 1 {
        return tree;
    }
    // Internal nodes are 0..n-1; depth d spans [2^d - 1, 2^(d+1) - 1). All children of a
    // depth-d node lie at or after the end of depth d, so each level splits cleanly.
    let last_internal = n - 2;
    let max_depth = usize::BITS - 1 - (last_internal + 1).leading_zeros();
    for d in (0..=max_depth).rev() {
        let a = (1usize << d) - 1;
        let b = ((1usize << (d + 1)) - 1).min(n - 1);
        let (lo, hi) = tree.split_at_mut(b);
        let level = &mut lo[a..b];
        // Node a + k has children 2(a + k) + 1 and + 2: a contiguous run of `hi`.
        let first = 2 * a + 1 - b;
        let children = &hi[first..first + 2 * level.len()];
        if level.len() >= PAR_MIN {
            level
                .par_chunks_mut(PAR_MIN / 2)
                .zip(children.par_chunks(PAR_MIN))
                .for_each(|(nodes, c)| hash_pairs(c, nodes));
        } else {
            hash_pairs(children, level);
        }
    }
    tree
}

fn sibling(i: usize) -> usize {
    if i % 2 == 1 {
        i + 1
    } else {
        i - 1
    }
}

impl StandardMerkleTree {
    /// Builds a tree from rows of values (`StandardMerkleTree.of(values, leafEncoding,
    /// { sortLeaves })`). Rows are kept in the given order; leaves are sorted by hash
    /// when `sort_leaves` (OZ's default), else placed in row order.
    ///
    /// # Errors
    /// [`ClaimsError::Empty`] for no rows; [`ClaimsError::Value`] naming the first row
    /// whose values do not match the encoding.
    pub fn of(
        encoding: LeafEncoding,
        rows: &[Vec<LeafValue>],
        sort_leaves: bool,
    ) -> Result<Self, ClaimsError> {
        if rows.is_empty() {
            return Err(ClaimsError::Empty);
        }
        let flat: Vec<LeafValue> = rows.iter().flat_map(|r| r.iter().cloned()).collect();
        for (i, r) in rows.iter().enumerate() {
            encoding
                .check(r)
                .map_err(|source| ClaimsError::Value { row: i, source })?;
        }
        Ok(Self::of_checked_flat(encoding, flat, sort_leaves))
    }

    /// Builds a tree from values laid out flat, `encoding.len()` per row (no per-row
    /// allocation: the fast path for large trees).
    ///
    /// # Errors
    /// [`ClaimsError::Empty`]; [`ClaimsError::Value`] for the first bad row; a flat list
    /// whose length is not a multiple of the row width is reported as a bad last row.
    pub fn of_flat(
        encoding: LeafEncoding,
        values: Vec<LeafValue>,
        sort_leaves: bool,
    ) -> Result<Self, ClaimsError> {
        let w = encoding.len().max(1);
        if values.is_empty() {
            return Err(ClaimsError::Empty);
        }
        if let Some((row, source)) = values
            .par_chunks(w)
            .enumerate()
            .find_map_first(|(i, r)| encoding.check(r).err().map(|e| (i, e)))
        {
            return Err(ClaimsError::Value { row, source });
        }
        Ok(Self::of_checked_flat(encoding, values, sort_leaves))
    }

    fn of_checked_flat(encoding: LeafEncoding, values: Vec<LeafValue>, sort_leaves: bool) -> Self {
        let w = encoding.len().max(1);
        let n = values.len() / w;
        let types = encoding.types();
        // Rows go in blocks: encode the block, hash every encoding, then hash every hash,
        // in batches (eight at a time with AVX-512F, primitives::keccak). Same leaves as
        // `standard_leaf_hash`.
        let hashes =
            crate::par::blocks_in_place(&values, (w, LEAF_BLOCK), B256::ZERO, |rows, out| {
                let mut enc = Vec::with_capacity(rows.len() * 32);
                let mut ends = Vec::with_capacity(rows.len() / w);
                for r in rows.chunks(w) {
                    encode_into(types, r, &mut enc);
                    ends.push(enc.len());
                }
                let msgs: Vec<&[u8]> = std::iter::once(0)
                    .chain(ends.iter().copied())
                    .zip(&ends)
                    .map(|(a, b)| &enc[a..*b])
                    .collect();
                let mut inner = Vec::with_capacity(msgs.len());
                keccak256_slices(&msgs, &mut inner);
                let inner: Vec<[u8; 32]> = inner.into_iter().map(|h| h.0).collect();
                let mut leaves = Vec::with_capacity(inner.len());
                keccak256_many(&inner, &mut leaves);
                out.copy_from_slice(&leaves);
            });
        Self::from_leaf_hashes(encoding, values, hashes, n, sort_leaves)
    }

    fn from_leaf_hashes(
        encoding: LeafEncoding,
        values: Vec<LeafValue>,
        hashes: Vec<B256>,
        n: usize,
        sort_leaves: bool,
    ) -> Self {
        let len = 2 * n - 1;
        let mut tree_index = vec![0u32; n];
        let tree = if sort_leaves {
            let mut order: Vec<(B256, u32)> = hashes
                .into_par_iter()
                .enumerate()
                .map(|(i, h)| (h, i as u32))
                .collect();
            // (hash, input index): ties between equal values keep input order, as JS's
            // stable sort does in OZ.
            order.par_sort_unstable();
            for (p, (_, i)) in order.iter().enumerate() {
                tree_index[*i as usize] = (len - 1 - p) as u32;
            }
            let sorted: Vec<B256> = order.into_par_iter().map(|(h, _)| h).collect();
            build_heap(&sorted)
        } else {
            for (i, t) in tree_index.iter_mut().enumerate() {
                *t = (len - 1 - i) as u32;
            }
            build_heap(&hashes)
        };
        Self {
            encoding,
            values,
            tree,
            tree_index,
        }
    }

    /// The root, `tree[0]`.
    pub fn root(&self) -> B256 {
        self.tree[0]
    }

    /// The leaf encoding.
    pub fn encoding(&self) -> &LeafEncoding {
        &self.encoding
    }

    /// Number of values (= leaves).
    pub fn len(&self) -> usize {
        self.tree_index.len()
    }

    /// Never true: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.tree_index.is_empty()
    }

    /// The flat node array (`2n − 1` nodes, root first).
    pub fn tree(&self) -> &[B256] {
        &self.tree
    }

    /// The values of row `i` (input order). Panics when `i >= len()`.
    pub fn value(&self, i: usize) -> &[LeafValue] {
        let w = self.encoding.len().max(1);
        &self.values[i * w..(i + 1) * w]
    }

    /// Where row `i`'s leaf sits in [`Self::tree`]. Panics when `i >= len()`.
    pub fn tree_index(&self, i: usize) -> usize {
        self.tree_index[i] as usize
    }

    /// The leaf hash of row `i`. Panics when `i >= len()`.
    pub fn leaf_hash(&self, i: usize) -> B256 {
        self.tree[self.tree_index(i)]
    }

    /// Appends the proof of row `i` (siblings from leaf to root) to `out`; a slice walk
    /// of the node array, no hashing. Panics when `i >= len()`.
    pub fn proof_into(&self, i: usize, out: &mut Vec<B256>) {
        let mut t = self.tree_index(i);
        while t > 0 {
            out.push(self.tree[sibling(t)]);
            t = (t - 1) / 2;
        }
    }

    /// The proof of row `i` (`getProof(i)`). Panics when `i >= len()`.
    pub fn proof(&self, i: usize) -> Vec<B256> {
        let mut out = Vec::with_capacity(32);
        self.proof_into(i, &mut out);
        out
    }

    /// A multiproof for rows `indices` (`getMultiProof`).
    ///
    /// # Errors
    /// [`ClaimsError::IndexOutOfRange`]; [`ClaimsError::InvalidMultiproof`] for a
    /// duplicated index.
    pub fn multiproof(&self, indices: &[usize]) -> Result<MultiProof, ClaimsError> {
        let mut picked: Vec<(usize, usize)> = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(ClaimsError::IndexOutOfRange {
                    index: i,
                    len: self.len(),
                });
            }
            picked.push((self.tree_index(i), i));
        }
        picked.sort_unstable_by_key(|p| std::cmp::Reverse(p.0));
        if picked.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(ClaimsError::InvalidMultiproof(
                "cannot prove a duplicated index".into(),
            ));
        }
        let mut stack: std::collections::VecDeque<usize> = picked.iter().map(|p| p.0).collect();
        let (mut proof, mut proof_flags) = (Vec::new(), Vec::new());
        while let Some(&j) = stack.front() {
            if j == 0 {
                break;
            }
            stack.pop_front();
            let s = sibling(j);
            if stack.front() == Some(&s) {
                proof_flags.push(true);
                stack.pop_front();
            } else {
                proof_flags.push(false);
                proof.push(self.tree[s]);
            }
            stack.push_back((j - 1) / 2);
        }
        if picked.is_empty() {
            proof.push(self.tree[0]);
        }
        Ok(MultiProof {
            leaves: picked.iter().map(|p| p.1).collect(),
            leaf_hashes: picked.iter().map(|p| self.tree[p.0]).collect(),
            proof,
            proof_flags,
        })
    }

    /// Whether `proof` proves row `i` against this tree's root.
    pub fn verify_row(&self, i: usize, proof: &[B256]) -> bool {
        process_proof(self.leaf_hash(i), proof) == self.root()
    }

    /// `StandardMerkleTree.verify(root, leafEncoding, value, proof)`: hashes the values and
    /// folds the proof.
    ///
    /// # Errors
    /// [`ClaimsError::Value`] (row 0) when the values do not match the encoding.
    pub fn verify(
        root: B256,
        encoding: &LeafEncoding,
        values: &[LeafValue],
        proof: &[B256],
    ) -> Result<bool, ClaimsError> {
        encoding
            .check(values)
            .map_err(|source| ClaimsError::Value { row: 0, source })?;
        Ok(process_proof(standard_leaf_hash(encoding.types(), values), proof) == root)
    }

    /// `StandardMerkleTree.verifyMultiProof(root, leafEncoding, multiproof)` over hashed
    /// leaves.
    ///
    /// # Errors
    /// [`ClaimsError::InvalidMultiproof`] for malformed lengths.
    pub fn verify_multiproof(
        root: B256,
        leaf_hashes: &[B256],
        proof: &[B256],
        proof_flags: &[bool],
    ) -> Result<bool, ClaimsError> {
        Ok(process_multiproof(leaf_hashes, proof, proof_flags)? == root)
    }

    /// Appends `JSON.stringify(tree.dump())` to `out`. See [`Self::write_dump_to`].
    pub fn write_dump(&self, out: &mut Vec<u8>) {
        self.write_dump_to(out)
            .expect("writing to a Vec cannot fail");
    }

    /// Writes `JSON.stringify(tree.dump())` to `w` in pieces of about 1 MiB: byte-identical
    /// to OZ 1.0.8 for the same values (addresses are written EIP-55 checksummed, integers
    /// as decimal strings).
    ///
    /// # Errors
    /// The writer's.
    pub fn write_dump_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let out = &mut spill_buffer();
        out.extend_from_slice(b"{\"format\":\"standard-v1\",\"leafEncoding\":[");
        for (i, n) in self.encoding.names().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, n);
        }
        out.extend_from_slice(b"],\"tree\":[");
        for (i, h) in self.tree.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_b256(out, h);
            spill(out, w)?;
        }
        out.extend_from_slice(b"],\"values\":[");
        // Addresses are checksummed in batches of values (primitives::checksum_many).
        const VALUES_PER_BATCH: usize = 4096;
        let mut addresses = Vec::new();
        for start in (0..self.len()).step_by(VALUES_PER_BATCH) {
            let end = (start + VALUES_PER_BATCH).min(self.len());
            addresses.clear();
            for i in start..end {
                for v in self.value(i) {
                    leaf_value_addresses(v, &mut addresses);
                }
            }
            let mut texts = crate::primitives::checksum_many(&addresses).into_iter();
            for i in start..end {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"value\":[");
                for (k, v) in self.value(i).iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    push_leaf_value(out, v, &mut texts);
                }
                out.extend_from_slice(b"],\"treeIndex\":");
                push_usize(out, self.tree_index(i));
                out.push(b'}');
                spill(out, w)?;
            }
        }
        out.extend_from_slice(b"]}");
        w.write_all(out)
    }

    /// `JSON.stringify(tree.dump())` as a string. See [`Self::write_dump`].
    pub fn dump(&self) -> String {
        let mut out = Vec::new();
        self.write_dump(&mut out);
        // Only ASCII and valid UTF-8 string contents are written.
        String::from_utf8(out).expect("dump is UTF-8")
    }

    /// `StandardMerkleTree.load(dump)`: parses a `standard-v1` dump and validates all of
    /// it: every value re-encoded and re-hashed against its `treeIndex`, every internal
    /// node re-hashed from its children, every leaf slot used by exactly one value.
    ///
    /// # Errors
    /// [`ClaimsError::Dump`] for JSON or shape problems (wrong format, bad hex, bad type
    /// name, a value that does not fit its type, a tree index outside the leaves);
    /// [`ClaimsError::LeafMismatch`] naming the value whose hash differs from its node;
    /// [`ClaimsError::NodeMismatch`] naming the internal node that is not the hash of its
    /// children.
    pub fn load(json: &str) -> Result<Self, ClaimsError> {
        #[derive(serde::Deserialize)]
        struct DumpValue {
            value: Vec<serde_json::Value>,
            #[serde(rename = "treeIndex")]
            tree_index: usize,
        }
        #[derive(serde::Deserialize)]
        struct Dump {
            format: String,
            #[serde(rename = "leafEncoding")]
            leaf_encoding: Option<Vec<String>>,
            tree: Vec<String>,
            values: Vec<DumpValue>,
        }
        let dump_err = |what: String| ClaimsError::Dump(what);
        let d: Dump = serde_json::from_str(json)
            .map_err(|e| dump_err(format!("not a standard-v1 dump: {e}")))?;
        if d.format != "standard-v1" {
            return Err(dump_err(format!(
                "unknown format {:?}, expected \"standard-v1\"",
                d.format
            )));
        }
        let names = d
            .leaf_encoding
            .ok_or_else(|| dump_err("missing leafEncoding".into()))?;
        let encoding =
            LeafEncoding::new(&names).map_err(|e| dump_err(format!("leafEncoding: {e}")))?;
        let len = d.tree.len();
        if len == 0 || len.is_multiple_of(2) {
            return Err(dump_err(format!(
                "tree has {len} nodes; a tree of n leaves has 2n-1 (odd, at least 1)"
            )));
        }
        let n = len.div_ceil(2);
        let tree: Vec<B256> = d
            .tree
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_node(s).ok_or_else(|| {
                    dump_err(format!(
                        "tree[{i}] = {s:?} is not a 0x-prefixed 32-byte hex"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        if d.values.len() != n {
            return Err(dump_err(format!(
                "{} values for a tree of {n} leaves",
                d.values.len()
            )));
        }
        let mut used = vec![false; n];
        let mut tree_index = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n * encoding.len());
        for (i, v) in d.values.iter().enumerate() {
            if v.tree_index < n - 1 || v.tree_index >= len {
                return Err(dump_err(format!(
                    "values[{i}].treeIndex {} is not a leaf slot ({}..{len})",
                    v.tree_index,
                    n - 1
                )));
            }
            if std::mem::replace(&mut used[v.tree_index - (n - 1)], true) {
                return Err(dump_err(format!(
                    "values[{i}].treeIndex {} is used by another value",
                    v.tree_index
                )));
            }
            let row = encoding
                .parse_json_row(&v.value)
                .map_err(|e| dump_err(format!("values[{i}]: {e}")))?;
            values.extend(row);
            tree_index.push(v.tree_index as u32);
        }
        let t = Self {
            encoding,
            values,
            tree,
            tree_index,
        };
        t.validate()?;
        Ok(t)
    }

    /// Re-hashes every value and every internal node (what `load()` runs).
    ///
    /// # Errors
    /// [`ClaimsError::LeafMismatch`], [`ClaimsError::NodeMismatch`]: the lowest failing
    /// index.
    pub fn validate(&self) -> Result<(), ClaimsError> {
        let types = self.encoding.types();
        let w = self.encoding.len().max(1);
        if let Some(e) = self
            .values
            .par_chunks(w)
            .enumerate()
            .map_init(Vec::new, |buf, (i, r)| (i, leaf_hash_with(types, r, buf)))
            .find_map_first(|(i, h)| {
                let ti = self.tree_index(i);
                (h != self.tree[ti]).then(|| ClaimsError::LeafMismatch {
                    value_index: i,
                    tree_index: ti,
                    expected: h,
                    got: self.tree[ti],
                })
            })
        {
            return Err(e);
        }
        let n = self.len();
        if let Some(e) = (0..n - 1).into_par_iter().find_map_first(|i| {
            let h = hash_pair(&self.tree[2 * i + 1], &self.tree[2 * i + 2]);
            (h != self.tree[i]).then(|| ClaimsError::NodeMismatch {
                tree_index: i,
                expected: h,
                got: self.tree[i],
            })
        }) {
            return Err(e);
        }
        Ok(())
    }
}

/// Parses `0x` + 64 hex digits (either case).
pub(crate) fn parse_node(s: &str) -> Option<B256> {
    let h = s.strip_prefix("0x")?;
    if h.len() != 64 {
        return None;
    }
    let mut b = [0u8; 32];
    alloy_primitives::hex::decode_to_slice(h, &mut b).ok()?;
    Some(B256::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{b256, Address, U256};

    fn readme_tree(sort: bool) -> StandardMerkleTree {
        let enc = LeafEncoding::new(&["address", "uint256"]).unwrap();
        let rows = vec![
            vec![
                LeafValue::Address(Address::repeat_byte(0x11)),
                LeafValue::Uint(U256::from(5_000_000_000_000_000_000u128)),
            ],
            vec![
                LeafValue::Address(Address::repeat_byte(0x22)),
                LeafValue::Uint(U256::from(2_500_000_000_000_000_000u128)),
            ],
        ];
        StandardMerkleTree::of(enc, &rows, sort).unwrap()
    }

    /// The OZ README example (root from the OZ README, reused by every port).
    #[test]
    fn readme_example_root_and_proofs() {
        let t = readme_tree(true);
        assert_eq!(
            t.root(),
            b256!("d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77")
        );
        assert_eq!(
            t.proof(0),
            vec![b256!(
                "b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc"
            )]
        );
        assert_eq!(
            t.proof(1),
            vec![b256!(
                "eb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283"
            )]
        );
    }

    #[test]
    fn heap_builder_matches_naive_for_all_small_sizes() {
        for n in 1..70usize {
            let leaves: Vec<B256> = (0..n)
                .map(|i| keccak256((i as u64).to_be_bytes()))
                .collect();
            let fast = build_heap(&leaves);
            let len = 2 * n - 1;
            let mut naive = vec![B256::ZERO; len];
            for (k, l) in leaves.iter().enumerate() {
                naive[len - 1 - k] = *l;
            }
            for i in (0..n.saturating_sub(1)).rev() {
                naive[i] = hash_pair(&naive[2 * i + 1], &naive[2 * i + 2]);
            }
            assert_eq!(fast, naive, "n = {n}");
        }
    }
}
