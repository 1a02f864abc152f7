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

/// Where a value stands relative to the incident window.
#[derive(Debug, Clone, Copy, Default)]
struct Track<T> {
    /// Last `to` of a transaction before the window.
    last_before: Option<T>,
    /// First `from` of a transaction in or after the window start.
    first_from_start: Option<T>,
    /// Last `to` of a transaction before the window end.
    last_before_end: Option<T>,
    /// First `from` of a transaction at or after the window end.
    first_from_end: Option<T>,
    /// Latest `to` seen (for the chain check).
    current: Option<T>,
    /// Whether it changed inside the window.
    changed_in_window: bool,
}

impl<T: Copy + PartialEq> Track<T> {
    fn at_start(&self) -> Option<T> {
        self.last_before.or(self.first_from_start)
    }
    fn at_end(&self) -> Option<T> {
        self.last_before_end.or(self.first_from_end)
    }
    fn push(&mut self, i: usize, window: (usize, usize), c: Change<T>) {
        if i < window.0 {
            self.last_before = Some(c.to);
        } else if self.first_from_start.is_none() {
            self.first_from_start = Some(c.from);
        }
        if i < window.1 {
            self.last_before_end = Some(c.to);
        } else if self.first_from_end.is_none() {
            self.first_from_end = Some(c.from);
        }
        if i >= window.0 && i < window.1 {
            self.changed_in_window = true;
        }
        self.current = Some(c.to);
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

/// Successive transaction diffs chained into one history, with an incident window.
///
/// Any slot that changes anywhere in the history has a known value at every point: the
/// last `to` before that point, or else the first `from` after it. The window is the
/// half-open range of transaction positions `[start, end)` in chain order.
#[derive(Debug, Default)]
pub struct Timeline {
    storage: HashMap<(Address, B256), Track<B256>>,
    balances: HashMap<Address, Track<U256>>,
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
        let mut t = Timeline {
            window,
            txs: diffs.len(),
            ..Default::default()
        };
        let mut nonces: HashMap<Address, (u64, usize)> = HashMap::new();
        let mut last_slot_tx: HashMap<(Address, B256), usize> = HashMap::new();
        let mut last_bal_tx: HashMap<Address, usize> = HashMap::new();
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
                    let tr = t.balances.entry(*addr).or_default();
                    if let Some(cur) = tr.current {
                        if cur != b.from {
                            let prev = &diffs[last_bal_tx[addr]];
                            return Err(gap(
                                d,
                                prev,
                                *addr,
                                "balance".into(),
                                cur.to_string(),
                                b.from.to_string(),
                            ));
                        }
                    }
                    tr.push(i, window, b);
                    last_bal_tx.insert(*addr, i);
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
                for (slot, c) in &acc.storage {
                    let key = (*addr, *slot);
                    let tr = t.storage.entry(key).or_default();
                    if let Some(cur) = tr.current {
                        if cur != c.from {
                            let prev = &diffs[last_slot_tx[&key]];
                            return Err(gap(
                                d,
                                prev,
                                *addr,
                                format!("storage slot {slot}"),
                                cur.to_string(),
                                c.from.to_string(),
                            ));
                        }
                    }
                    tr.push(i, window, *c);
                    last_slot_tx.insert(key, i);
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
        let tr = self.storage.get(&(account, slot))?;
        Some(WindowValue {
            start: tr.at_start()?,
            end: tr.at_end()?,
            changed_in_window: tr.changed_in_window,
        })
    }

    /// An ETH balance (wei) at the window's start and end; `None` when it never changes.
    pub fn balance(&self, account: Address) -> Option<WindowValue<U256>> {
        let tr = self.balances.get(&account)?;
        Some(WindowValue {
            start: tr.at_start()?,
            end: tr.at_end()?,
            changed_in_window: tr.changed_in_window,
        })
    }

    /// Every (account, slot) that changes somewhere in the history, sorted.
    pub fn slots(&self) -> Vec<(Address, B256)> {
        let mut v: Vec<_> = self.storage.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Every account's changed slots (anywhere in the history), slots sorted.
    pub fn storage_by_account(&self) -> HashMap<Address, Vec<B256>> {
        let mut m: HashMap<Address, Vec<B256>> = HashMap::new();
        for (a, s) in self.storage.keys() {
            m.entry(*a).or_default().push(*s);
        }
        for v in m.values_mut() {
            v.sort_unstable();
        }
        m
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
