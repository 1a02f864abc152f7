//! Node hashing shared by every tree shape: keccak256 of the sorted pair, and proof folding
//! (OpenZeppelin `MerkleProof.processProof` / `processMultiProof`).

use super::ClaimsError;
use crate::primitives::keccak::{keccak256_x8, LANES};
use alloy_primitives::{keccak256, B256};
use std::collections::VecDeque;

/// `keccak256(min(a,b) ‖ max(a,b))`: OpenZeppelin `Hashes.commutativeKeccak256`, the node
/// hash of every sorted-pair tree (OZ, Uniswap, Beanstalk, Euler). Byte order equals OZ's
/// numeric comparison for 32-byte values.
#[inline]
pub fn hash_pair(a: &B256, b: &B256) -> B256 {
    keccak256(pair_preimage(a, b))
}

/// `min(a,b) ‖ max(a,b)`, the 64 bytes [`hash_pair`] hashes.
#[inline]
fn pair_preimage(a: &B256, b: &B256) -> [u8; 64] {
    let mut buf = [0u8; 64];
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    buf
}

/// [`hash_pair`] of each adjacent pair: `out[k] = hash_pair(children[2k], children[2k + 1])`,
/// in batches of eight ([`crate::primitives::keccak::keccak256_x8`]: eight lanes at once with
/// AVX-512F, one at a time otherwise). `children` must hold exactly
/// `2 × out.len()` hashes.
pub fn hash_pairs(children: &[B256], out: &mut [B256]) {
    assert_eq!(
        children.len(),
        2 * out.len(),
        "hash_pairs: children ≠ 2 × nodes"
    );
    let mut pre = [[0u8; 64]; LANES];
    for (pairs, nodes) in children.chunks(2 * LANES).zip(out.chunks_mut(LANES)) {
        for (p, c) in pre.iter_mut().zip(pairs.chunks_exact(2)) {
            *p = pair_preimage(&c[0], &c[1]);
        }
        let h = keccak256_x8::<64>(std::array::from_fn(|i| &pre[i]));
        nodes.copy_from_slice(&h[..nodes.len()]);
    }
}

/// Parses a 32-byte hash written `0x` + 64 hex digits (either case); `None` otherwise.
pub fn parse_hash(s: &str) -> Option<B256> {
    crate::claims::standard::parse_node(s)
}

/// Folds a proof from a leaf up to a root (`MerkleProof.processProof`).
pub fn process_proof(leaf: B256, proof: &[B256]) -> B256 {
    proof.iter().fold(leaf, |acc, sib| hash_pair(&acc, sib))
}

/// Recomputes a root from a multiproof (`MerkleProof.processMultiProof`, OZ merkle-tree
/// `core.processMultiProof`): `leaves` in the order the tree's `multiproof` returns them
/// (descending tree index), `proof_flags[i]` true = take the next hash from the queue,
/// false = take the next `proof` item.
///
/// # Errors
/// [`ClaimsError::InvalidMultiproof`] when the lengths do not satisfy
/// `leaves + proof == flags + 1` or the proof runs out.
pub fn process_multiproof(
    leaves: &[B256],
    proof: &[B256],
    proof_flags: &[bool],
) -> Result<B256, ClaimsError> {
    let invalid = |why: &str| ClaimsError::InvalidMultiproof(why.to_owned());
    if proof.len() < proof_flags.iter().filter(|f| !**f).count() {
        return Err(invalid("fewer proof hashes than false flags"));
    }
    if leaves.len() + proof.len() != proof_flags.len() + 1 {
        return Err(invalid("leaves + proof must equal proofFlags + 1"));
    }
    let mut stack: VecDeque<B256> = leaves.iter().copied().collect();
    let mut proof: VecDeque<B256> = proof.iter().copied().collect();
    for &flag in proof_flags {
        let a = stack
            .pop_front()
            .ok_or_else(|| invalid("queue exhausted"))?;
        let b = if flag {
            stack.pop_front()
        } else {
            proof.pop_front()
        }
        .ok_or_else(|| invalid("queue exhausted"))?;
        stack.push_back(hash_pair(&a, &b));
    }
    if stack.len() + proof.len() != 1 {
        return Err(invalid("broken invariant: more than one root candidate"));
    }
    Ok(stack
        .pop_back()
        .or_else(|| proof.pop_front())
        .expect("one element left"))
}
