//! Shared names: asset symbols, pools, classes, source ids, tiers, file paths.

use std::sync::Arc;

/// A shared name (asset symbol, pool, class, source id, tier): one allocation per distinct
/// name however many rows carry it. Serialises as a plain string.
pub type Name = Arc<str>;

/// One thread's own copies of the names the rows it makes share (the file path in an
/// [`Origin`](crate::ingest::files::Origin), asset symbols, pools, classes), for the rows
/// the ingest parses and the loss stage makes. Every row holds a clone of them; on shared
/// `Arc`s, the reference counts of rows made on two threads at once bounce one cache line
/// between the cores (measured: half a second over three million parsed rows; ≈ 85% of
/// the loss rows' making, by `perf annotate`, was their `lock incq`).
#[derive(Default)]
pub(crate) struct LocalNames {
    copies: std::cell::RefCell<Vec<(Name, Name)>>,
}

impl LocalNames {
    /// Names copied at most; past them a name is shared as it is (a linear search finds a
    /// copy, and rows share few names).
    const MAX: usize = 64;

    /// This thread's copy of `shared` (equal text).
    pub(crate) fn get(&self, shared: &Name) -> Name {
        let mut copies = self.copies.borrow_mut();
        if let Some((_, local)) = copies.iter().find(|(s, _)| Arc::ptr_eq(s, shared)) {
            return Name::clone(local);
        }
        if copies.len() >= Self::MAX {
            return Name::clone(shared);
        }
        let local = Name::from(&**shared);
        copies.push((Name::clone(shared), Name::clone(&local)));
        local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name comes back as this thread's own copy (equal text, its own allocation), the
    /// same copy every time, until [`LocalNames::MAX`] names are copied; later names are
    /// shared as given.
    #[test]
    fn local_names_copy_each_name_once_up_to_their_bound() {
        let local = LocalNames::default();
        let shared: Vec<Name> = (0..LocalNames::MAX + 3)
            .map(|k| Name::from(format!("pool-{k}")))
            .collect();
        for (k, name) in shared.iter().enumerate() {
            let (a, b) = (local.get(name), local.get(name));
            assert_eq!(a, *name);
            assert!(Arc::ptr_eq(&a, &b), "one copy of name {k}");
            assert_eq!(Arc::ptr_eq(&a, name), k >= LocalNames::MAX, "name {k}");
        }
    }
}
