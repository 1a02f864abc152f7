//! Layered sorted-pair Merkle trees (Uniswap merkle-distributor, merkletreejs
//! `sortPairs`, Beanstalk, Euler): each layer pairs neighbours with the sorted-pair hash;
//! an odd last node is carried up unchanged, so proofs can be shorter than ⌈log₂ n⌉.
//!
//! This shape gives the same root as the OpenZeppelin heap layout over the same leaves
//! only for n = 1, 2, 3, 4, 6, 8 (the "layout trap"): use the layout the claim contract's
//! tooling used. Reference: Uniswap/merkle-distributor `src/merkle-tree.ts`.

use super::hash::hash_pairs;
use super::ClaimsError;
use alloy_primitives::B256;
use rayon::prelude::*;

/// A layered tree: `layers[0]` the leaves in placement order, the last layer the root.
#[derive(Debug, Clone)]
pub struct LayeredTree {
    layers: Vec<Vec<B256>>,
}

impl LayeredTree {
    /// Builds the layers over leaves in the given order (no sorting, no de-duplication:
    /// the Beanstalk / merkletreejs shape).
    ///
    /// # Errors
    /// [`ClaimsError::Empty`].
    pub fn new(leaves: Vec<B256>) -> Result<Self, ClaimsError> {
        if leaves.is_empty() {
            return Err(ClaimsError::Empty);
        }
        let mut layers = vec![leaves];
        while layers.last().map_or(0, Vec::len) > 1 {
            let prev = layers.last().expect("non-empty");
            // Pairs hashed in batches (eight at a time with AVX-512F, primitives::keccak); an
            // odd last node is carried up as it is.
            let pairs = prev.len() / 2;
            let mut next = vec![B256::ZERO; prev.len().div_ceil(2)];
            next[..pairs]
                .par_chunks_mut(1024)
                .zip(prev[..2 * pairs].par_chunks(2048))
                .for_each(|(nodes, c)| hash_pairs(c, nodes));
            if prev.len() % 2 == 1 {
                next[pairs] = prev[prev.len() - 1];
            }
            layers.push(next);
        }
        Ok(Self { layers })
    }

    /// Builds the layers the way Uniswap's `MerkleTree` does: leaves sorted by bytes and
    /// adjacent duplicates removed first.
    ///
    /// # Errors
    /// [`ClaimsError::Empty`].
    pub fn new_sorted_dedup(mut leaves: Vec<B256>) -> Result<Self, ClaimsError> {
        leaves.par_sort_unstable();
        leaves.dedup();
        Self::new(leaves)
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.layers.last().expect("at least one layer")[0]
    }

    /// The leaves in placement order.
    pub fn leaves(&self) -> &[B256] {
        &self.layers[0]
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.layers[0].len()
    }

    /// Never true: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.layers[0].is_empty()
    }

    /// Appends the proof of the leaf at `pos` (siblings bottom-up; a layer where the node
    /// has no sibling contributes nothing). Panics when `pos >= len()`.
    pub fn proof_into(&self, mut pos: usize, out: &mut Vec<B256>) {
        assert!(pos < self.len(), "leaf position {pos} out of range");
        for layer in &self.layers[..self.layers.len() - 1] {
            let s = pos ^ 1;
            if s < layer.len() {
                out.push(layer[s]);
            }
            pos /= 2;
        }
    }

    /// The proof of the leaf at `pos`. Panics when `pos >= len()`.
    pub fn proof(&self, pos: usize) -> Vec<B256> {
        let mut out = Vec::with_capacity(self.layers.len());
        self.proof_into(pos, &mut out);
        out
    }
}
