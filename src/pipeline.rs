//! The whole job on one incident manifest: ingest → loss → policy → claims.
//!
//! Pure apart from reading the manifest's input files: it returns everything a run
//! publishes as plain data ([`RunOutput`]); writing files and storing rows is the CLI's
//! and the store's business. A run is identified by [`RunOutput::run_id`], the SHA-256 of
//! the manifest bytes and of every input file's name and bytes, so the same inputs give
//! the same id and the same outputs, byte for byte.

use crate::claims::{build_tree, BuiltTree, ClaimEntry, ClaimTreeSpec, ClaimsError, EntryOrder};
use crate::ingest::files::{self, AmountRow, BalanceRow, HolderColumn, InputError, Name, Origin};
use crate::ingest::trace::UnmatchedSlots;
use crate::loss::{
    self, Exclusion, LossError, LossInputs, LossLedger, LossStats, VaultInput, WrapperInput,
};
use crate::manifest::{CsvInput, InputFormat, Manifest, ManifestError, Units};
use crate::policy::{self, CoverList, PolicyError, PolicyResult, Prices};
use crate::primitives::{Address, Asset, B256};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The pipeline stopped; nothing was produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An input file is invalid.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The loss stage failed.
    #[error("loss stage: {0}")]
    Loss(#[from] LossError),
    /// The policy stage failed, including a broken conservation invariant.
    #[error("policy stage: {0}")]
    Policy(#[from] PolicyError),
    /// A claim tree could not be built.
    #[error("claim tree {file} ({asset}): {source}")]
    Claims {
        /// Tree file.
        file: String,
        /// Payout asset.
        asset: String,
        /// Cause.
        source: ClaimsError,
    },
    /// The node state diffs could not be decoded.
    #[error("state diffs: {0}")]
    Trace(#[from] crate::ingest::trace::TraceError),
    /// A file could not be read for the run hash.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File.
        file: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl PipelineError {
    /// True when the error is a failed check (a broken invariant), not bad input: the CLI
    /// exits 1 for these and 2 for the rest.
    pub fn is_check_failure(&self) -> bool {
        matches!(self, Self::Policy(PolicyError::Invariant { .. }))
    }
}

/// One built claim tree and the spec it came from.
#[derive(Debug)]
pub struct TreeOutput {
    /// The `[[outputs.trees]]` spec.
    pub spec: ClaimTreeSpec,
    /// Payout asset symbol.
    pub asset: String,
    /// The tree.
    pub tree: BuiltTree,
    /// Its entries in the tree's value order (position = leaf's value index).
    pub entries: Vec<ClaimEntry>,
}

/// Where each user's leaf is in one claim tree: per user of the policy result (by its index
/// there), the leaf's index, if the user has one. That is the position of the user's entry in
/// the tree's values (the index into [`TreeOutput::entries`]: an OpenZeppelin dump's
/// `values`), except in a Uniswap distribution with sorted leaves, whose published `index` is
/// the rank of the account's EIP-55 text among the tree's
/// ([`crate::claims::IndexOrder::ChecksumSorted`], as `parseBalanceMap` assigns it). A layered
/// tree publishes no index: its leaf index is its value's position before any sorting by leaf
/// hash (account order with sorted leaves). Fixed by the policy and the tree's spec before the
/// tree is hashed, so that a caller of [`run_observed`] can store each user's claims while the
/// trees are still being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLeaves {
    /// Per user: the leaf's position, or [`TreeLeaves::NONE`].
    at: Vec<u32>,
}

impl TreeLeaves {
    const NONE: u32 = u32::MAX;

    /// The leaves of a tree whose entries are `entries`, in the order [`order_entries`] put
    /// them in, over the users with `accounts` (the policy's, ascending). With
    /// `sort_leaves` the values end in ascending account order whatever that order was
    /// ([`build_trees`]).
    ///
    /// # Panics
    /// When an entry's account is not among `accounts` (entries are made from the policy's
    /// users, [`claim_entries`]), or a tree has 2^32 − 1 entries or more.
    pub(crate) fn of(accounts: &[Address], entries: &[ClaimEntry], sort_leaves: bool) -> Self {
        let mut at = vec![Self::NONE; accounts.len()];
        // Entries in account order (the default) are found by walking the accounts once.
        let in_account_order = entries.is_sorted_by_key(|e| e.account);
        let mut from = 0;
        for (k, e) in entries.iter().enumerate() {
            let user = if in_account_order {
                from += accounts[from..]
                    .iter()
                    .position(|a| *a == e.account)
                    .expect("claim entries are made from the policy's users");
                from
            } else {
                accounts
                    .binary_search(&e.account)
                    .expect("claim entries are made from the policy's users")
            };
            at[user] = u32::try_from(k)
                .ok()
                .filter(|&k| k != Self::NONE)
                .expect("fewer than 2^32 - 1 leaves a tree");
        }
        if sort_leaves && !in_account_order {
            // Fewer leaves than entries' positions, checked above.
            for (k, p) in at.iter_mut().filter(|p| **p != Self::NONE).enumerate() {
                *p = k as u32;
            }
        }
        Self { at }
    }

    /// Renumbers the leaves in the order of their accounts' EIP-55 texts: `order` is every
    /// user once, in that order ([`RunOutput::text_order`]); users without a leaf are
    /// skipped.
    fn rank_by_text(&mut self, order: &[u32]) {
        let mut k = 0u32;
        for &u in order {
            let p = &mut self.at[u as usize];
            if *p != Self::NONE {
                *p = k;
                k += 1;
            }
        }
    }

    /// The index of user `user`'s leaf as the tree publishes it, if it has one.
    ///
    /// # Panics
    /// When `user` is not an index of the policy result's users.
    pub fn leaf(&self, user: usize) -> Option<u64> {
        let p = self.at[user];
        (p != Self::NONE).then_some(u64::from(p))
    }
}

/// Everything a run publishes.
#[derive(Debug)]
pub struct RunOutput {
    /// SHA-256 of the manifest and input bytes ([`run_id`]).
    pub run_id: B256,
    /// The loss ledger; its rows are empty when [`RunOptions::keep_loss_rows`] is off
    /// (`recoup run` turns it off); [`RunOutput::loss_rows`] counts them either way.
    pub ledger: LossLedger,
    /// Loss-stage totals.
    pub loss_stats: LossStats,
    /// The policy result: per user, per source, per group, checks. Shared, so that a caller
    /// of [`run_observed`] can keep reading it (storing its rows) while the run goes on.
    pub policy: Arc<PolicyResult>,
    /// The claim trees, in manifest order.
    pub trees: Vec<TreeOutput>,
    /// Each tree's leaves by user, in manifest order (as [`RunOutput::trees`]).
    pub leaves: Arc<Vec<TreeLeaves>>,
    /// The EIP-55 text of every user's account, in the policy's user order (42 ASCII bytes
    /// each), computed once on all threads ([`crate::primitives::checksum_many_par`]) and
    /// shared by the outputs that name accounts and the stored rows.
    pub account_texts: Arc<Vec<[u8; 42]>>,
    /// Every user (an index into the policy's users) once, in the byte order of their
    /// [`RunOutput::account_texts`] ([`text_order`]): the order of a tree indexed by
    /// checksum text and of the stored rows, sorted once for both.
    pub text_order: Arc<Vec<u32>>,
    /// Changed token slots of the state diffs that matched no candidate holder, per token
    /// (reported, never dropped silently).
    pub unmatched_slots: Vec<UnmatchedSlots>,
}

impl RunOutput {
    /// Number of loss rows: the policy result has one outcome per row of the ledger, so
    /// this holds whether or not [`RunOptions::keep_loss_rows`] kept the rows themselves.
    pub fn loss_rows(&self) -> usize {
        self.policy.row_count()
    }
}

/// Positions of `texts` in the byte order of the text (for ASCII the order of the strings,
/// and SQLite's BINARY collation), on all threads. EIP-55 text does not sort like the
/// address bytes: an upper-case hex letter sorts before every lower-case one.
///
/// # Panics
/// With 2^32 texts or more.
pub fn text_order(texts: &[[u8; 42]]) -> Vec<u32> {
    let n = u32::try_from(texts.len()).expect("fewer than 2^32 accounts");
    let mut order: Vec<u32> = (0..n).collect();
    order.par_sort_unstable_by_key(|&i| &texts[i as usize]);
    order
}

/// Hashes the manifest and every input file (name relative to the manifest, then bytes,
/// each length-prefixed) into the run id: SHA-256 (FIPS 180-4) of
/// `len(manifest) ‖ manifest ‖ (len(name) ‖ name ‖ len(file) ‖ file)…`, lengths as 8-byte
/// big-endian integers, files in [`Manifest::input_files`] order.
///
/// SHA-256 rather than the keccak256 recoup uses for everything on chain (and that earlier
/// builds used here): the id never goes on chain, and with the CPU's SHA extensions it is
/// about five times cheaper: over a million-claimant run's 276 MB of inputs, `openssl dgst`
/// took 0.25 s of user time for SHA-256 and 1.36 s for SHA3-256 (the same permutation)
/// on one of this project's machines (BENCHMARKS.md, "Session 17"). Runs stored by an
/// earlier recoup keep their keccak ids; the same inputs run again are stored as a new run.
///
/// # Errors
/// [`PipelineError::Io`] when a file cannot be read.
pub fn run_id(manifest: &Manifest) -> Result<B256, PipelineError> {
    use sha2::Digest as _;
    use std::io::Read as _;
    // Streamed: the same digest as over the concatenation, without holding the inputs in
    // memory.
    let mut h = sha2::Sha256::new();
    let push_len = |h: &mut sha2::Sha256, n: u64| h.update(n.to_be_bytes());
    let file = |h: &mut sha2::Sha256, p: &Path| -> Result<(), PipelineError> {
        let io = |source| PipelineError::Io {
            file: p.to_owned(),
            source,
        };
        let mut f = std::fs::File::open(p).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        push_len(h, len);
        let mut buf = vec![0u8; 1 << 20];
        let mut seen = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            seen += n as u64;
            h.update(&buf[..n]);
        }
        if seen != len {
            return Err(io(std::io::Error::other(
                "file changed while it was being read",
            )));
        }
        Ok(())
    };
    file(&mut h, &manifest.path)?;
    for f in manifest.input_files() {
        let rel = f
            .strip_prefix(&manifest.base_dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        h.update((rel.len() as u64).to_be_bytes());
        h.update(rel.as_bytes());
        file(&mut h, &f)?;
    }
    Ok(B256::from(<[u8; 32]>::from(h.finalize())))
}

/// Appends `rows` to `to`, taking `rows`' allocation when `to` is empty (the usual case: one
/// file per list). Extending an empty vector copied a million-claimant balance file's
/// 3M rows into a fresh allocation: the ingest stage's peak was 831 MiB with the copy and
/// 688 MiB without it (`RECOUP_TIMINGS=1`, BENCHMARKS.md session 8).
fn append<T>(to: &mut Vec<T>, rows: Vec<T>) {
    if to.is_empty() {
        *to = rows;
    } else {
        to.extend(rows);
    }
}

/// Runs `beside` on a scoped thread of its own while `here` runs on this one, and returns
/// both results (`beside`'s first). A panic on the other thread is resumed on this one.
fn side_by_side<A: Send, B>(beside: impl FnOnce() -> A + Send, here: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|s| {
        let other = s.spawn(beside);
        let mine = here();
        let other = other
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (other, mine)
    })
}

/// Reads the manifest's inputs into the loss stage's input.
///
/// # Errors
/// [`PipelineError::Input`] naming file, line, column and field.
pub fn load_inputs(m: &Manifest) -> Result<(LossInputs, Vec<UnmatchedSlots>), PipelineError> {
    // The balance files, much the largest inputs, are read on a thread of their own while
    // this one reads the others. Each file is parsed on every thread, but its rows are then
    // joined into one list and checked for repeats on one: at a million claimants a gap of
    // ≈ 0.45 s, which the other files now fill (BENCHMARKS.md, "Session 14"). Errors come in
    // the order reading one file after another meets them: the balance files' first.
    let (balances, rest) = side_by_side(|| read_balance_files(m), || load_other_inputs(m));
    let mut balances = balances?;
    let (mut inputs, unmatched) = rest?;
    // The balance files' rows first, then the state diff's (as read one after the other).
    append(&mut balances, std::mem::take(&mut inputs.balances));
    inputs.balances = balances;
    Ok((inputs, unmatched))
}

/// The rows of every balance file, in manifest order.
fn read_balance_files(m: &Manifest) -> Result<Vec<BalanceRow>, PipelineError> {
    let mut rows = Vec::new();
    for c in &m.inputs.balances {
        append(
            &mut rows,
            files::read_balances(
                &m.resolve(&c.path),
                c.units,
                c.pool.as_deref(),
                &m.assets,
                &c.columns,
            )?,
        );
    }
    Ok(rows)
}

/// Every input but the balance files (see [`load_inputs`]); `balances` holds the state
/// diff's balance rows, if any.
fn load_other_inputs(m: &Manifest) -> Result<(LossInputs, Vec<UnmatchedSlots>), PipelineError> {
    let mut unmatched = Vec::new();
    let assets: Vec<(Asset, rust_decimal::Decimal)> =
        m.assets.iter().map(|a| (a.asset(), a.price)).collect();
    let mut inputs = LossInputs {
        assets,
        ..LossInputs::default()
    };
    let amounts = |c: &CsvInput| match c.format {
        InputFormat::Csv => files::read_amounts(
            &m.resolve(&c.path),
            files::CsvOptions {
                units: c.units,
                pool: c.pool.as_deref(),
                asset: c.asset.as_deref(),
                columns: &c.columns,
            },
            &m.assets,
        ),
        InputFormat::AddressMap => files::read_address_map(
            &m.resolve(&c.path),
            c.units,
            c.asset.as_deref(),
            c.pool.as_deref(),
            &m.assets,
        ),
    };
    for c in &m.inputs.losses {
        append(&mut inputs.losses, amounts(c)?);
    }
    for c in &m.inputs.netting {
        append(&mut inputs.netting, amounts(c)?);
    }
    for v in &m.vaults {
        let holders =
            files::read_holders(&m.resolve(&v.holders), HolderColumn::Shares, Units::Base, 0)?;
        inputs.vaults.push(VaultInput {
            name: v.name.clone(),
            underlying: v.underlying.clone(),
            total_assets_before: v.total_assets_before,
            total_supply_before: v.total_supply_before,
            total_assets_after: v.total_assets_after,
            total_supply_after: v.total_supply_after,
            holders,
        });
    }
    for w in &m.wrappers {
        let holders = files::read_holders(
            &m.resolve(&w.holders),
            HolderColumn::Balance,
            Units::Base,
            0,
        )?;
        inputs.wrappers.push(WrapperInput {
            name: w.name.clone(),
            address: w.address,
            holders,
        });
    }
    if let Some(cfg) = &m.state_diff {
        let decoded = crate::ingest::trace::decode(cfg, &m.base_dir)?;
        let origin = Origin {
            file: m.path.join("[state_diff]").into(),
            line: 0,
        };
        let mut names: HashMap<String, Name> = HashMap::new();
        let mut name = |s: &str| -> Name {
            Name::clone(names.entry(s.to_owned()).or_insert_with(|| Name::from(s)))
        };
        // A vault's own drop in its underlying asset *is* its holders' share-price loss:
        // count it once, through the holders.
        let vaults: std::collections::HashSet<Address> =
            decoded.vaults.iter().map(|v| v.address).collect();
        for b in decoded
            .balance_changes
            .iter()
            .filter(|b| !vaults.contains(&b.account))
        {
            inputs.balances.push(BalanceRow {
                account: b.account,
                asset: name(&b.asset),
                pool: None,
                before: b.before,
                after: b.after,
                origin: origin.clone(),
            });
        }
        for l in decoded.share_losses.iter().filter(|l| !l.loss.is_zero()) {
            inputs.losses.push(AmountRow {
                account: l.account,
                asset: name(&l.asset),
                pool: Some(name(&l.vault)),
                amount: l.loss,
                kind: None,
                origin: origin.clone(),
            });
        }
        unmatched = decoded.unmatched;
    }
    inputs.exclusions = m
        .exclusions
        .iter()
        .map(|e| {
            (
                e.account,
                Exclusion {
                    reason: e.reason.clone(),
                    mode: e.mode,
                },
            )
        })
        .collect();
    if let Some(p) = &m.inputs.classes {
        // One shared name per class, however many accounts and rows carry it.
        let mut names: HashMap<String, Name> = HashMap::new();
        inputs.classes = files::read_classes(&m.resolve(p))?
            .into_iter()
            .map(|(a, c)| {
                let n = names
                    .entry(c)
                    .or_insert_with_key(|c| Name::from(c.as_str()));
                (a, Name::clone(n))
            })
            .collect::<HashMap<_, _>>();
    }
    Ok((inputs, unmatched))
}

/// Reads the cover lists of insurance sources.
///
/// # Errors
/// [`PipelineError::Input`].
pub fn load_covers(m: &Manifest) -> Result<CoverList, PipelineError> {
    let mut covers: CoverList = BTreeMap::new();
    for c in &m.inputs.covers {
        let decimals = m
            .funding
            .iter()
            .find(|f| f.id == c.source)
            .and_then(|f| m.asset(&f.asset))
            .map_or(0, |a| a.decimals);
        let rows =
            files::read_holders(&m.resolve(&c.path), HolderColumn::Amount, c.units, decimals)?;
        let entry = covers.entry(c.source.clone()).or_default();
        for r in rows {
            entry.insert(r.account, r.amount);
        }
    }
    Ok(covers)
}

/// The claim entries of one payout asset: every user paid a non-zero amount of it, in
/// ascending account order.
pub fn claim_entries(result: &PolicyResult, asset: &str) -> Vec<ClaimEntry> {
    result
        .users()
        .filter_map(|u| {
            u.payout(asset).map(|amount| ClaimEntry {
                account: u.account(),
                amount,
            })
        })
        .collect()
}

/// Puts one payout asset's entries in a tree's [`EntryOrder`]; `first_seen` ranks accounts by
/// their first appearance among that asset's input rows (accounts never seen rank last,
/// by address).
pub fn order_entries(
    entries: &mut [ClaimEntry],
    order: EntryOrder,
    asset: &str,
    first_seen: &FirstSeen,
) {
    let seen = first_seen.get(asset);
    let rank = |a: &Address| seen.and_then(|s| s.get(a)).copied().unwrap_or(usize::MAX);
    match order {
        EntryOrder::Account => entries.sort_by_key(|e| e.account),
        EntryOrder::AmountDesc => entries.sort_by(|a, b| {
            b.amount
                .cmp(&a.amount)
                .then(rank(&a.account).cmp(&rank(&b.account)))
                .then(a.account.cmp(&b.account))
        }),
        EntryOrder::Input => entries.sort_by(|a, b| {
            rank(&a.account)
                .cmp(&rank(&b.account))
                .then(a.account.cmp(&b.account))
        }),
    }
}

/// Per asset symbol: each account's rank by first appearance among that asset's rows.
pub type FirstSeen = HashMap<Name, foldhash::HashMap<Address, usize>>;

/// Rank of each (asset, account) by first appearance among that asset's rows: balances,
/// loss lists and vault holders (for the vault's underlying), in manifest order. Per asset,
/// so that one published list's order is not disturbed by another asset's list.
fn first_seen(inputs: &LossInputs) -> FirstSeen {
    let mut seen: FirstSeen = HashMap::new();
    let rows = inputs
        .balances
        .iter()
        .map(|r| (&*r.asset, r.account))
        .chain(inputs.losses.iter().map(|r| (&*r.asset, r.account)))
        .chain(inputs.vaults.iter().flat_map(|v| {
            v.holders
                .iter()
                .map(move |h| (v.underlying.as_str(), h.account))
        }));
    for (asset, account) in rows {
        let of_asset = match seen.get_mut(asset) {
            Some(m) => m,
            None => seen.entry(Name::from(asset)).or_default(),
        };
        let n = of_asset.len();
        of_asset.entry(account).or_insert(n);
    }
    seen
}

/// How [`run_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Keep the loss rows in [`RunOutput::ledger`]. Without them the rows are freed as soon
    /// as the policy has used them, before the claim trees are built: at a million
    /// claimants × 3 assets that is ≈ 400 MB off the run's peak memory. The counts stay in
    /// [`RunOutput::loss_rows`] and [`RunOutput::loss_stats`], the per-row outcomes in
    /// [`RunOutput::policy`].
    pub keep_loss_rows: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            keep_loss_rows: true,
        }
    }
}

/// Runs ingest → loss → policy → claims, keeping every stage's output
/// ([`RunOptions::default`]).
///
/// # Errors
/// Any stage's error; [`PipelineError::is_check_failure`] tells a broken invariant apart.
pub fn run(m: &Manifest) -> Result<RunOutput, PipelineError> {
    run_with(m, RunOptions::default())
}

/// [`run`] with [`RunOptions`].
///
/// # Errors
/// As [`run`].
pub fn run_with(m: &Manifest, opts: RunOptions) -> Result<RunOutput, PipelineError> {
    run_observed(m, opts, |_, _, _, _| {})
}

/// [`run_with`], calling `on_checked` with the run id and the policy's result as soon as the
/// result has passed its conservation checks, while the claim trees are still being built
/// (on other threads). `recoup run` starts storing the per-user rows there: at a million
/// claimants that is ≈ 1M rows the database no longer has to wait for the trees and the files
/// to be finished. `on_checked` is not called when a stage before it fails; a later stage
/// (a claim tree) can still fail after it, so whatever it starts must be able to be undone.
///
/// # Errors
/// As [`run`].
pub fn run_observed(
    m: &Manifest,
    opts: RunOptions,
    on_checked: impl FnOnce(
        B256,
        &Arc<PolicyResult>,
        &Arc<Vec<TreeLeaves>>,
        (&Arc<Vec<[u8; 42]>>, &Arc<Vec<u32>>),
    ),
) -> Result<RunOutput, PipelineError> {
    let t = crate::timing::StageTimer::new();
    // The cover lists beside the other inputs (see `load_inputs`); their errors after the
    // others', as when read after them.
    let (covers, inputs) = side_by_side(|| load_covers(m), || load_inputs(m));
    let (inputs, unmatched_slots) = inputs?;
    let covers = covers?;
    t.lap("ingest");
    // The run id hashes every input byte on one thread (276 MB at a million claimants):
    // beside the loss and policy stages, which leave a core idle for much of their time
    // (their walks in row order between the steps that run on every thread), not beside
    // the parse, which uses them all.
    let (run_id, policy_stage) = side_by_side(
        || run_id(m),
        || loss_and_policy(m, opts, &t, inputs, covers),
    );
    let (run_id, policy_stage) = (run_id?, policy_stage?);
    let PolicyStage {
        ledger,
        loss_stats,
        mut result,
        totals,
        entries,
        mut leaves,
    } = policy_stage;
    // The conservation checks (`policy::apply`'s last step, ≈ 0.65 s on one thread at a
    // million claimants) run on this thread while the claim trees are built on the others:
    // the trees need only their entries, taken from the result before. Nothing leaves this
    // function unless the checks pass, and a broken invariant is reported before any tree
    // error, as when the checks ran first.
    // The trees on a thread of their own (which hands the hashing to rayon): the checks'
    // short-lived allocations then stay in this thread's malloc arena, apart from the trees'.
    let (trees, checked) = side_by_side(
        || build_trees(m, entries),
        || {
            result.checks = policy::verify_against(&result, &totals, &m.funding, &m.policy)?;
            let texts = Arc::new(crate::primitives::checksum_many_par(result.accounts()));
            let order = Arc::new(text_order(&texts));
            for (spec, l) in m.outputs.trees.iter().zip(&mut leaves) {
                if spec.indexes_by_checksum_text() {
                    l.rank_by_text(&order);
                }
            }
            let (policy, leaves) = (Arc::new(result), Arc::new(leaves));
            on_checked(run_id, &policy, &leaves, (&texts, &order));
            Ok::<_, PipelineError>((policy, leaves, texts, order))
        },
    );
    let ((policy, leaves, account_texts, text_order), trees) = (checked?, trees?);
    t.lap("checks + claim trees");
    Ok(RunOutput {
        run_id,
        unmatched_slots,
        ledger,
        loss_stats,
        policy,
        trees,
        leaves,
        account_texts,
        text_order,
    })
}

/// The loss and policy stages' output: the result before its conservation checks, the
/// totals they check it against, and each claim tree's entries in the order its values are
/// built from, and its leaves by user.
struct PolicyStage {
    ledger: LossLedger,
    loss_stats: LossStats,
    result: PolicyResult,
    totals: policy::LedgerTotals,
    entries: Vec<Vec<ClaimEntry>>,
    leaves: Vec<TreeLeaves>,
}

/// The stages after ingest up to the claim trees: loss → policy, and the trees' entries.
fn loss_and_policy(
    m: &Manifest,
    opts: RunOptions,
    t: &crate::timing::StageTimer,
    inputs: LossInputs,
    covers: CoverList,
) -> Result<PolicyStage, PipelineError> {
    let (mut ledger, loss_stats) = loss::compute(&inputs)?;
    t.lap("loss");
    let needs_rank = m
        .outputs
        .trees
        .iter()
        .any(|t| t.order != EntryOrder::Account);
    let ranks = if needs_rank {
        first_seen(&inputs)
    } else {
        HashMap::new()
    };
    let assets: Vec<Asset> = m.assets.iter().map(|a| a.asset()).collect();
    let prices: Prices = m
        .assets
        .iter()
        .map(|a| (a.symbol.clone(), a.price))
        .collect();
    // The policy walks its rows on this thread (its conversions, divisions and settlements
    // run on every thread, see `policy::engine`). Beside it: the freeing of the inputs
    // (≈ 0.1 s at a million claimants: 3M balance rows, each holding shared names; long done
    // before the policy's peak, at the end of its run), then the ledger's totals for the
    // checks (≈ 0.14 s; their error comes first, as when they were taken before the policy
    // ran). The loss rows, when not kept, are freed the same way while
    // the trees' entries are taken (≈ 0.08 s).
    let ledger_rows = &ledger.rows;
    let (totals, result) = side_by_side(
        move || {
            drop(inputs);
            policy::LedgerTotals::of(ledger_rows)
        },
        || policy::apply_unverified(&ledger, &m.funding, &m.policy, &covers, &assets, &prices),
    );
    let (totals, result) = (totals?, result?);
    let rows = if opts.keep_loss_rows {
        Vec::new()
    } else {
        std::mem::take(&mut ledger.rows)
    };
    let ((), (entries, leaves)) = side_by_side(
        move || drop(rows),
        || {
            // One list per tree, the trees on every thread (≈ 50 ms each at a million
            // claimants); `unzip` keeps the trees' order.
            m.outputs
                .trees
                .par_iter()
                .map(|spec| {
                    let asset = spec.asset.as_deref().unwrap_or_default();
                    let mut entries = claim_entries(&result, asset);
                    order_entries(&mut entries, spec.order, asset, &ranks);
                    let leaves = TreeLeaves::of(result.accounts(), &entries, spec.sort_leaves);
                    (entries, leaves)
                })
                .unzip::<_, _, Vec<_>, Vec<_>>()
        },
    );
    t.lap("policy");
    Ok(PolicyStage {
        ledger,
        loss_stats,
        result,
        totals,
        entries,
        leaves,
    })
}

/// The manifest's claim trees over their `entries` (one list per tree, in the tree's value
/// order), in manifest order.
fn build_trees(
    m: &Manifest,
    entries: Vec<Vec<ClaimEntry>>,
) -> Result<Vec<TreeOutput>, PipelineError> {
    let mut trees = Vec::with_capacity(m.outputs.trees.len());
    for (spec, mut entries) in m.outputs.trees.iter().zip(entries) {
        let asset = spec.asset.clone().unwrap_or_default();
        if spec.sort_leaves {
            // Sorted trees put their values in ascending account order whatever the input;
            // sorted here, the tree takes them as they are. Two entries of one account
            // (whichever comes first) are the tree's error.
            entries.par_sort_unstable_by_key(|e| e.account);
        }
        let tree = build_tree(spec, &entries).map_err(|source| PipelineError::Claims {
            file: spec.file.clone(),
            asset: asset.clone(),
            source,
        })?;
        trees.push(TreeOutput {
            spec: spec.clone(),
            asset,
            tree,
            entries,
        });
    }
    Ok(trees)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::Amount;

    /// Leaf positions are positions in the tree's values as [`build_trees`] leaves them: the
    /// entries' own order, or ascending account order for a sorted tree, whichever order the
    /// entries came in; users without an entry have none.
    #[test]
    fn leaves_are_the_users_positions_in_the_tree_s_values() {
        let accounts: Vec<Address> = (1..=5).map(Address::repeat_byte).collect();
        let entry = |n: u8| ClaimEntry {
            account: Address::repeat_byte(n),
            amount: Amount::from(u64::from(n)),
        };
        let positions =
            |l: &TreeLeaves| -> Vec<Option<u64>> { (0..5).map(|u| l.leaf(u)).collect() };
        // In account order (walked), users 2 and 4 without a leaf.
        let sorted = [entry(1), entry(3), entry(5)];
        let want = [Some(0), None, Some(1), None, Some(2)];
        assert_eq!(positions(&TreeLeaves::of(&accounts, &sorted, false)), want);
        assert_eq!(positions(&TreeLeaves::of(&accounts, &sorted, true)), want);
        // In another order (searched): their own positions, unless the tree sorts them.
        let shuffled = [entry(5), entry(1), entry(3)];
        assert_eq!(
            positions(&TreeLeaves::of(&accounts, &shuffled, false)),
            [Some(1), None, Some(2), None, Some(0)]
        );
        assert_eq!(positions(&TreeLeaves::of(&accounts, &shuffled, true)), want);
        // Every user, none.
        assert_eq!(positions(&TreeLeaves::of(&accounts, &[], false)), [None; 5]);
    }
}
