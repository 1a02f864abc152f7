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
