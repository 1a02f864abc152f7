//! Small helpers for running a stage's per-item work on every thread while keeping the
//! one-thread result and the one-thread error.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Items a thread takes at a time where a walk over the rows is split into pieces and the
/// pieces' results are joined in order (the loss stage's gross totals, the policy's names).
pub(crate) const PIECE: usize = 1 << 16;

/// `f` of every item, in order, on every thread; `None` when it failed for any item (the
/// caller then walks the items in order, which reports the first failure as the one-thread
/// code did). `stand_in` fills a failed item's place until the end.
pub(crate) fn map_or_none<T: Sync, U: Send + Sync + Clone, E>(
    items: &[T],
    f: impl Fn(&T) -> Result<U, E> + Sync + Send,
    stand_in: U,
) -> Option<Vec<U>> {
    map_init_or_none(items, || (), |(), x| f(x), stand_in)
}

/// [`map_or_none`] with a state of each piece of work: `init` makes it once for every
/// run of items one thread takes (rayon's `map_init`), and `f` gets it with each item.
pub(crate) fn map_init_or_none<T: Sync, S, U: Send + Sync + Clone, E>(
    items: &[T],
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, &T) -> Result<U, E> + Sync + Send,
    stand_in: U,
) -> Option<Vec<U>> {
    let failed = AtomicBool::new(false);
    let mut out = Vec::new();
    items
        .par_iter()
        .map_init(init, |state, x| {
            f(state, x).unwrap_or_else(|_| {
                failed.store(true, Relaxed);
                stand_in.clone()
            })
        })
        .collect_into_vec(&mut out);
    (!failed.into_inner()).then_some(out)
}

/// `f` over `items` in blocks, written in place: block `k` is `items[k × per × block ..]`
/// (`block` groups of `per` items, the last block shorter), and `f` fills its outputs,
/// `out[k × block ..]` (one a group), in order.
///
/// rayon's `flat_map_iter(..).collect()` over the same blocks gathers each thread's
/// outputs in vectors of their own and then copies them into a new one: every output is
/// written twice, into twice the fresh pages (at a million claimants, 32 MB of leaf hashes
/// a claim tree; BENCHMARKS.md, "Session 23").
///
/// # Panics
/// When `per` or `block` is zero, or `items.len()` is not a multiple of `per` (the blocks
/// of items and of outputs would no longer pair up, and the last items would be dropped).
pub(crate) fn blocks_in_place<T: Sync, U: Send + Sync + Clone>(
    items: &[T],
    (per, block): (usize, usize),
    blank: U,
    f: impl Fn(&[T], &mut [U]) + Sync + Send,
) -> Vec<U> {
    assert!(per > 0 && block > 0, "groups and blocks of at least one");
    assert_eq!(items.len() % per, 0, "whole groups of {per}");
    let mut out = vec![blank; items.len() / per];
    out.par_chunks_mut(block)
        .zip(items.par_chunks(per * block))
        .for_each(|(out, items)| f(items, out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_in_place_fills_every_group_in_order_whatever_the_block_size() {
        // Groups of 3 items; each output is its group's sum, and a short last block.
        let items: Vec<u64> = (0..3 * 1001).collect();
        let want: Vec<u64> = items.chunks(3).map(|g| g.iter().sum()).collect();
        for block in [1, 2, 7, 64, 1000, 1001, 5000] {
            let got = blocks_in_place(&items, (3, block), u64::MAX, |items, out| {
                assert_eq!(items.len(), 3 * out.len());
                for (o, g) in out.iter_mut().zip(items.chunks(3)) {
                    *o = g.iter().sum();
                }
            });
            assert_eq!(got, want, "block {block}");
        }
        assert!(blocks_in_place(&[] as &[u64], (3, 8), 0u64, |_, _| unreachable!()).is_empty());
    }

    #[test]
    #[should_panic(expected = "whole groups of 3")]
    fn blocks_in_place_refuses_a_partial_group() {
        blocks_in_place(&[1u64; 7], (3, 2), 0u64, |_, _| {});
    }
}
