//! Normalised state diffs: per account, per slot `from → to`, and their chaining over
//! successive transactions.
//!
//! Every source format is turned into [`TxDiff`]: only real changes (`from != to`), with
//! "missing means zero" already applied. [`Timeline`] chains them in order and checks that
//! each slot's `from` equals the previous transaction's `to`.

use super::TraceError;
use crate::primitives::{Address, B256, U256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// A value before and after one transaction (or a window of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Change<T> {
    /// Value before.
    pub from: T,
    /// Value after.
    pub to: T,
}

/// What happened to an account in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountKind {
    /// It existed before and after.
    Modified,
    /// It did not exist before (only in geth `post`, or Parity `"+"`).
    Created,
    /// It was deleted by SELFDESTRUCT (only in geth `pre`, or Parity `"-"`). After Cancun
    /// (EIP-6780) an old contract that self-destructs is *not* deleted: it stays
    /// [`AccountKind::Modified`] with its balance going to zero.
    Destroyed,
}

/// One account's changes in one transaction. Fields that did not change are `None` /
/// absent; storage values are raw 32-byte words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    /// Created, destroyed or modified.
    pub kind: AccountKind,
    /// ETH balance in wei, when it changed.
    pub balance: Option<Change<U256>>,
    /// Nonce, when it changed.
    pub nonce: Option<Change<u64>>,
    /// Whether the code changed (creation, destruction, EIP-7702 delegation).
    pub code_changed: bool,
    /// Changed storage slots (slot → from/to); a slot missing on a side was zero there.
    pub storage: BTreeMap<B256, Change<B256>>,
}

impl AccountChange {
    /// An empty change of the given kind.
    pub fn new(kind: AccountKind) -> Self {
        Self {
            kind,
            balance: None,
            nonce: None,
            code_changed: false,
            storage: BTreeMap::new(),
        }
    }

    /// True when nothing changed (such entries are dropped).
    pub fn is_noop(&self) -> bool {
        self.kind == AccountKind::Modified
            && self.balance.is_none()
            && self.nonce.is_none()
            && !self.code_changed
            && self.storage.is_empty()
    }
}

/// The state changes of one transaction, as read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxDiff {
    /// The file it was read from.
    pub file: PathBuf,
    /// Position of this transaction in the file (0-based), for error messages.
    pub position: usize,
    /// Block number, when the format (or the manifest) gives it.
    pub block: Option<u64>,
    /// Transaction hash, when the format (or the manifest) gives it.
    pub tx_hash: Option<B256>,
    /// Changed accounts.
    pub accounts: BTreeMap<Address, AccountChange>,
}

impl TxDiff {
    /// A short human label: `tx 0x… (block N)` or `file f, entry i`.
    pub fn label(&self) -> String {
        let mut s = match self.tx_hash {
            Some(h) => format!("tx {h}"),
            None => format!("entry {}", self.position),
        };
        if let Some(b) = self.block {
            s.push_str(&format!(" (block {b})"));
        }
        s
    }
}

/// A fast hasher for 32-byte words and addresses (FxHash-style multiply-rotate over 8-byte
/// chunks). Storage keys are mostly keccak outputs, so SipHash's flood resistance buys
/// little here and costs much of the decode time.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordHasher(u64);

impl std::hash::Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut x = [0u8; 8];
            x[..c.len()].copy_from_slice(c);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(x)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.write(&n.to_le_bytes());
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `HashMap` with [`WordHasher`].
pub type WordMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<WordHasher>>;

/// Where a value stands relative to the incident window `[w0, w1)`.
///
/// Because the chain is checked (each `from` equals the previous `to`), the value at a
/// bound is the `from` of the first change at or after it, or else the `to` of the last
/// change before it.
#[derive(Debug, Clone, Copy)]
struct Track<T> {
    start: T,
    end: T,
    current: T,
    last_tx: u32,
    start_fixed: bool,
    end_fixed: bool,
    changed_in_window: bool,
}

impl<T: Copy + PartialEq> Track<T> {
    fn new(i: usize, window: (usize, usize), c: Change<T>) -> Self {
        let mut t = Track {
            start: c.from,
            end: c.from,
            current: c.from,
            last_tx: 0,
            start_fixed: false,
            end_fixed: false,
            changed_in_window: false,
        };
        t.push(i, window, c);
        t
    }
    fn push(&mut self, i: usize, window: (usize, usize), c: Change<T>) {
        if !self.start_fixed {
            if i >= window.0 {
                self.start = c.from;
                self.start_fixed = true;
            } else {
                self.start = c.to;
            }
        }
        if !self.end_fixed {
            if i >= window.1 {
                self.end = c.from;
                self.end_fixed = true;
            } else {
                self.end = c.to;
            }
        }
        if i >= window.0 && i < window.1 {
            self.changed_in_window = true;
        }
        self.current = c.to;
        self.last_tx = i as u32;
    }
    fn value(&self) -> WindowValue<T> {
        WindowValue {
            start: self.start,
            end: self.end,
            changed_in_window: self.changed_in_window,
        }
    }
}

/// A value at the start and at the end of the incident window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowValue<T> {
    /// Value just before the first transaction of the window.
    pub start: T,
    /// Value just after the last transaction of the window.
    pub end: T,
    /// Whether any transaction inside the window changed it.
    pub changed_in_window: bool,
}

/// One account's changed slots in a [`Timeline`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotTable<'a>(&'a WordMap<B256, Track<B256>>);

impl SlotTable<'_> {
    /// As [`Timeline::slot`] for this account.
    pub(crate) fn get(&self, slot: &B256) -> Option<WindowValue<B256>> {
        self.0.get(slot).map(Track::value)
    }

    /// Number of changed slots.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The changed slots, in no particular order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &B256> + '_ {
        self.0.keys()
    }
}

/// Successive transaction diffs chained into one history, with an incident window.
///
/// Any slot that changes anywhere in the history has a known value at every point: the
/// last `to` before that point, or else the first `from` after it. The window is the
/// half-open range of transaction positions `[start, end)` in chain order.
#[derive(Debug, Default)]
pub struct Timeline {
    storage: WordMap<Address, WordMap<B256, Track<B256>>>,
    balances: WordMap<Address, Track<U256>>,
    window: (usize, usize),
    txs: usize,
    created: Vec<Address>,
    destroyed: Vec<Address>,
}

impl Timeline {
    /// Chains `diffs` in order; the incident window is transactions `window.0 .. window.1`
    /// (positions in `diffs`).
    ///
    /// # Errors
    /// [`TraceError::ChainGap`] when a slot's, balance's or nonce's `from` differs from the
    /// previous transaction's `to`, naming the account, slot and both transactions.
    pub fn build(diffs: &[TxDiff], window: (usize, usize)) -> Result<Self, TraceError> {
        use std::collections::hash_map::Entry;
        let mut t = Timeline {
            window,
            txs: diffs.len(),
            ..Default::default()
        };
        // Each account's slot map is sized up front (an upper bound: slots changed in
        // several transactions are counted once per change) instead of growing through
        // rehashes.
        let mut sizes: WordMap<Address, usize> = WordMap::default();
        for d in diffs {
            for (addr, acc) in &d.accounts {
                if !acc.storage.is_empty() {
                    *sizes.entry(*addr).or_default() += acc.storage.len();
                }
            }
        }
        t.storage.reserve(sizes.len());
        for (addr, n) in sizes {
            t.storage.insert(
                addr,
                WordMap::with_capacity_and_hasher(n, Default::default()),
            );
        }
        let mut nonces: WordMap<Address, (u64, usize)> = WordMap::default();
        for (i, d) in diffs.iter().enumerate() {
            for (addr, acc) in &d.accounts {
                if i >= window.0 && i < window.1 {
                    match acc.kind {
                        AccountKind::Created => t.created.push(*addr),
                        AccountKind::Destroyed => t.destroyed.push(*addr),
                        AccountKind::Modified => {}
                    }
                }
                if let Some(b) = acc.balance {
                    match t.balances.entry(*addr) {
                        Entry::Occupied(mut o) => {
                            let tr = o.get_mut();
                            if tr.current != b.from {
                                let prev = &diffs[tr.last_tx as usize];
                                return Err(gap(
                                    d,
                                    prev,
                                    *addr,
                                    "balance".into(),
                                    tr.current.to_string(),
                                    b.from.to_string(),
                                ));
                            }
                            tr.push(i, window, b);
                        }
                        Entry::Vacant(v) => {
                            v.insert(Track::new(i, window, b));
                        }
                    }
                }
                if let Some(n) = acc.nonce {
                    if let Some((cur, j)) = nonces.get(addr) {
                        if *cur != n.from {
                            return Err(gap(
                                d,
                                &diffs[*j],
                                *addr,
                                "nonce".into(),
                                cur.to_string(),
                                n.from.to_string(),
                            ));
                        }
                    }
                    nonces.insert(*addr, (n.to, i));
                }
                if acc.storage.is_empty() {
                    continue;
                }
                let slots = t.storage.entry(*addr).or_default();
                for (slot, c) in &acc.storage {
                    match slots.entry(*slot) {
                        Entry::Occupied(mut o) => {
                            let tr = o.get_mut();
                            if tr.current != c.from {
                                let prev = &diffs[tr.last_tx as usize];
                                return Err(gap(
                                    d,
                                    prev,
                                    *addr,
                                    format!("storage slot {slot}"),
                                    tr.current.to_string(),
                                    c.from.to_string(),
                                ));
                            }
                            tr.push(i, window, *c);
                        }
                        Entry::Vacant(v) => {
                            v.insert(Track::new(i, window, *c));
                        }
                    }
                }
            }
        }
        Ok(t)
    }

    /// Number of transactions chained.
    pub fn len(&self) -> usize {
        self.txs
    }

    /// True when no transaction was chained.
    pub fn is_empty(&self) -> bool {
        self.txs == 0
    }

    /// The incident window `[start, end)` in chain positions.
    pub fn window(&self) -> (usize, usize) {
        self.window
    }

    /// A storage word at the window's start and end; `None` when the slot never changes in
    /// the whole history (its value is then unknown from diffs alone).
    pub fn slot(&self, account: Address, slot: B256) -> Option<WindowValue<B256>> {
        Some(self.storage.get(&account)?.get(&slot)?.value())
    }

    /// The changed slots of `account`, for many look-ups (see [`Timeline::slot`]).
    pub(crate) fn slot_table(&self, account: Address) -> Option<SlotTable<'_>> {
        self.storage.get(&account).map(SlotTable)
    }

    /// Every slot of `account` that changes somewhere in the history, with its window
    /// values, in no particular order.
    pub fn slots_of(
        &self,
        account: Address,
    ) -> impl Iterator<Item = (B256, WindowValue<B256>)> + '_ {
        self.storage
            .get(&account)
            .into_iter()
            .flat_map(|m| m.iter().map(|(s, t)| (*s, t.value())))
    }

    /// An ETH balance (wei) at the window's start and end; `None` when it never changes.
    pub fn balance(&self, account: Address) -> Option<WindowValue<U256>> {
        Some(self.balances.get(&account)?.value())
    }

    /// Every account whose ETH balance changes somewhere in the history, sorted.
    pub fn balance_accounts(&self) -> Vec<Address> {
        let mut v: Vec<_> = self.balances.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Accounts created inside the window, in order.
    pub fn created(&self) -> &[Address] {
        &self.created
    }

    /// Accounts destroyed (deleted) inside the window, in order.
    pub fn destroyed(&self) -> &[Address] {
        &self.destroyed
    }
}

fn gap(
    d: &TxDiff,
    prev: &TxDiff,
    account: Address,
    what: String,
    expected: String,
    got: String,
) -> TraceError {
    TraceError::ChainGap(Box::new(super::ChainGap {
        file: d.file.clone(),
        tx: d.label(),
        prev_file: prev.file.clone(),
        prev_tx: prev.label(),
        account,
        what,
        expected,
        got,
    }))
}

/// Interprets a 32-byte storage word as an unsigned integer.
pub fn word(w: B256) -> U256 {
    U256::from_be_bytes(w.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tx(changes: &[(u8, u8, u8)]) -> TxDiff {
        // (slot, from, to) on one account.
        let mut a = AccountChange::new(AccountKind::Modified);
        for (s, f, t) in changes {
            a.storage.insert(
                B256::with_last_byte(*s),
                Change {
                    from: B256::with_last_byte(*f),
                    to: B256::with_last_byte(*t),
                },
            );
        }
        let mut accounts = BTreeMap::new();
        accounts.insert(Address::ZERO, a);
        TxDiff {
            file: "t.json".into(),
            position: 0,
            block: None,
            tx_hash: None,
            accounts,
        }
    }

    proptest! {
        // Slow reference: replay every write into a full state and read it at the bounds.
        #[test]
        fn window_values_equal_a_full_replay(writes in proptest::collection::vec(proptest::collection::vec((0u8..4, 1u8..5), 0..4), 1..12), s in 0usize..12, len in 1usize..12) {
            let n = writes.len();
            let start = s % n;
            let end = (start + len).min(n).max(start + 1);
            let mut state = [0u8; 4];
            let (mut snap_start, mut snap_end) = (state, state);
            let mut diffs = Vec::new();
            for (i, w) in writes.iter().enumerate() {
                if i == start { snap_start = state; }
                let mut ch = BTreeMap::new();
                for (slot, v) in w {
                    let from = *ch.get(slot).map(|(f, _)| f).unwrap_or(&state[*slot as usize]);
                    ch.insert(*slot, (from, *v));
                    state[*slot as usize] = *v;
                }
                let c: Vec<(u8, u8, u8)> = ch.into_iter().filter(|(_, (f, t))| f != t).map(|(s, (f, t))| (s, f, t)).collect();
                diffs.push(tx(&c));
                if i + 1 == end { snap_end = state; }
            }
            let tl = Timeline::build(&diffs, (start, end)).unwrap();
            for slot in 0..4u8 {
                if let Some(v) = tl.slot(Address::ZERO, B256::with_last_byte(slot)) {
                    prop_assert_eq!(v.start, B256::with_last_byte(snap_start[slot as usize]));
                    prop_assert_eq!(v.end, B256::with_last_byte(snap_end[slot as usize]));
                }
            }
        }
    }

    #[test]
    fn gap_between_transactions_names_slot_and_both_transactions() {
        let d = vec![tx(&[(1, 0, 5)]), tx(&[(1, 6, 7)])];
        let e = Timeline::build(&d, (0, 2)).unwrap_err().to_string();
        assert!(
            e.contains(
                "storage slot 0x0000000000000000000000000000000000000000000000000000000000000001"
            ),
            "{e}"
        );
        assert!(e.contains("entry 0") && e.contains("left it at"), "{e}");
    }
}
