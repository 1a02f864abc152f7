//! From ingested rows to a [`LossLedger`]: balance deltas, loss lists, share-price
//! losses, look-through of wrappers, netting, exclusions and valuation.

use super::{Exclusion, GainRow, LossLedger, LossRow};
use crate::ingest::files::{AmountRow, BalanceRow, HolderRow, Origin};
use crate::primitives::{
    value_of, Address, Amount, AmountError, Asset, Decimal, LocalNames, Name, ValueError, U256,
};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// The loss stage failed; nothing was produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LossError {
    /// The same (account, asset, pool) is given by two inputs.
    #[error("{file}:{line}: account {account}, asset {asset}, pool {pool:?} already has a loss from {first_file}:{first_line}; give each (account, asset, pool) once or name distinct pools")]
    Conflict {
        /// Second file.
        file: PathBuf,
        /// Second line.
        line: u64,
        /// First file.
        first_file: PathBuf,
        /// First line.
        first_line: u64,
        /// Account.
        account: Address,
        /// Asset.
        asset: String,
        /// Pool.
        pool: Option<String>,
    },
    /// A netting row matches several pools of the account's asset.
    #[error("{file}:{line}: netting for account {account}, asset {asset} is ambiguous: it lost in pools {pools:?}; add a pool column")]
    AmbiguousNetting {
        /// File.
        file: PathBuf,
        /// Line.
        line: u64,
        /// Account.
        account: Address,
        /// Asset.
        asset: String,
        /// Candidate pools.
        pools: Vec<Option<String>>,
    },
    /// A vault's holder list holds more shares than its supply.
    #[error("vault {vault}: holders hold {held} shares but total_supply_before is {supply}")]
    VaultShares {
        /// Vault name.
        vault: String,
        /// Σ holder shares.
        held: Amount,
        /// Declared supply.
        supply: Amount,
    },
    /// A wrapper has losses but its holders hold nothing.
    #[error(
        "wrapper {wrapper} ({address}) lost {asset} but its holder list has a zero total balance"
    )]
    EmptyWrapper {
        /// Wrapper name.
        wrapper: String,
        /// Wrapper address.
        address: Address,
        /// Asset.
        asset: String,
    },
    /// An asset symbol without a declared asset (an internal inconsistency).
    #[error("unknown asset {0:?}: declare it in [[assets]]")]
    UnknownAsset(String),
    /// Arithmetic overflow (amounts above 2^256 − 1).
    #[error("{context}: {source}")]
    Amount {
        /// What was being computed.
        context: String,
        /// The arithmetic error.
        source: AmountError,
    },
    /// A value overflowed Decimal.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Look-through did not conserve a wrapper's loss (a bug guard).
    #[error(
        "look-through of wrapper {wrapper} did not conserve {asset}: {given} in, {spread} out"
    )]
    LookThroughConservation {
        /// Wrapper name.
        wrapper: String,
        /// Asset.
        asset: String,
        /// Loss passed in.
        given: Amount,
        /// Loss handed out.
        spread: Amount,
    },
}

/// A vault or pool whose holders lost through its share price.
#[derive(Debug, Clone)]
pub struct VaultInput {
    /// Vault name (the loss rows' pool).
    pub name: String,
    /// Underlying asset symbol.
    pub underlying: String,
    /// Total assets / total supply before and after, base units.
    pub total_assets_before: Amount,
    /// Total share supply before.
    pub total_supply_before: Amount,
    /// Total assets after.
    pub total_assets_after: Amount,
    /// Total share supply after.
    pub total_supply_after: Amount,
    /// Holders' share balances at the snapshot.
    pub holders: Vec<HolderRow>,
}

/// A wrapper looked through to its holders.
#[derive(Debug, Clone)]
pub struct WrapperInput {
    /// Name.
    pub name: String,
    /// The wrapper's own address (its loss rows are replaced by its holders').
    pub address: Address,
    /// Holders' wrapper balances at the snapshot.
    pub holders: Vec<HolderRow>,
}

/// Everything the loss stage reads.
#[derive(Debug, Clone, Default)]
pub struct LossInputs {
    /// Assets with their reference price (numeraire per whole token).
    pub assets: Vec<(Asset, Decimal)>,
    /// Balance snapshots.
    pub balances: Vec<BalanceRow>,
    /// Loss lists.
    pub losses: Vec<AmountRow>,
    /// Post-exploit withdrawals and refunds, subtracted from losses.
    pub netting: Vec<AmountRow>,
    /// Share-price losses.
    pub vaults: Vec<VaultInput>,
    /// Look-through wrappers, processed in order (outer wrappers first).
    pub wrappers: Vec<WrapperInput>,
    /// Excluded accounts.
    pub exclusions: Vec<(Address, Exclusion)>,
    /// User classes.
    pub classes: HashMap<Address, Name>,
}

/// Totals the report shows about the loss stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LossStats {
    /// Per asset: gross loss before netting, base units.
    pub gross: BTreeMap<String, Amount>,
    /// Per asset: amount netted (withdrawn or refunded after the exploit).
    pub netted: BTreeMap<String, Amount>,
    /// Per asset: net loss in the ledger.
    pub net: BTreeMap<String, Amount>,
    /// Per asset: share-price loss of vault holders.
    pub share_price: BTreeMap<String, Amount>,
    /// Per wrapper: loss passed through to holders, per asset.
    pub looked_through: BTreeMap<String, BTreeMap<String, Amount>>,
    /// Netting rows that matched no loss (ignored).
    pub netting_unmatched: usize,
    /// Per asset: total gains (the attacker's side), never counted as loss.
    pub gains: BTreeMap<String, Amount>,
}

type Key = (Address, u32, u32); // account, asset index, pool index (0 = none)

struct Interner {
    pools: Vec<Option<Name>>,
    pool_ix: foldhash::HashMap<Option<Name>, u32>,
    asset_ix: HashMap<String, u32>,
}

impl Interner {
    fn pool(&mut self, p: &Option<Name>) -> u32 {
        if let Some(&i) = self.pool_ix.get(p) {
            return i;
        }
        let i = self.pools.len() as u32;
        self.pools.push(p.clone());
        self.pool_ix.insert(p.clone(), i);
        i
    }
    fn asset(&self, s: &str) -> Result<u32, LossError> {
        self.asset_ix
            .get(s)
            .copied()
            .ok_or_else(|| LossError::UnknownAsset(s.to_owned()))
    }
    fn pool_text(&self, i: u32) -> Option<String> {
        self.pools[i as usize].as_deref().map(str::to_owned)
    }
}

fn amt(context: impl FnOnce() -> String) -> impl FnOnce(AmountError) -> LossError {
    move |source| LossError::Amount {
        context: context(),
        source,
    }
}

/// Computes the loss ledger.
///
/// Per (account, asset, pool): loss = max(0, before − after) from balance snapshots, or
/// the listed amount, or the share-price loss; then wrappers' rows are replaced by their
/// holders' pro-rata shares; then netting is subtracted (never below zero); then
/// exclusions and classes are attached and each row is valued in the numeraire.
///
/// # Rounding
/// Share-price loss of a holder with `s` shares:
/// `floor(s × TA_before / TS_before) − floor(s × TA_after / TS_after)` — the difference of
/// the two `convertToAssets` values (ERC-4626 rounds down), so it equals what the holder
/// could redeem before minus after. Look-through splits a wrapper's loss `L` over holder
/// balances `b_i` (total `B`) as `floor(L × b_i / B)` and hands the remaining units out one
/// each by largest remainder (ties: lower address first), so the holders' shares sum to `L`
/// exactly.
///
/// # Errors
/// [`LossError`] on a key given twice, an ambiguous netting row, inconsistent vault
/// totals, a wrapper whose holders hold nothing, or an overflow.
pub fn compute(inputs: &LossInputs) -> Result<(LossLedger, LossStats), LossError> {
    let mut it = Interner {
        pools: Vec::new(),
        pool_ix: foldhash::HashMap::default(),
        asset_ix: HashMap::new(),
    };
    it.pool(&None);
    for (i, (a, _)) in inputs.assets.iter().enumerate() {
        it.asset_ix.insert(a.symbol.clone(), i as u32);
    }
    let mut stats = LossStats::default();
    // Every (account, asset, pool) loss in input order: the key with its position (`seq`),
    // the amount and where it came from, by position. A key given twice is found by
    // sorting, after gathering (see `first_conflict`).
    let n = inputs.balances.len()
        + inputs.losses.len()
        + inputs.vaults.iter().map(|v| v.holders.len()).sum::<usize>();
    // Positions are `usize`: a `u32` would wrap past 2^32 rows and misorder conflicts.
    let mut keys: Vec<(Key, usize)> = Vec::with_capacity(n);
    let mut amounts: Vec<Amount> = Vec::with_capacity(n);
    let mut origins: Vec<&Origin> = Vec::with_capacity(n);
    let mut gains: BTreeMap<(Address, u32), Amount> = BTreeMap::new();
    let gathered = gather(
        inputs,
        &mut it,
        &mut stats,
        &mut gains,
        |key, amount, origin| {
            keys.push((key, keys.len()));
            amounts.push(amount);
            origins.push(origin);
        },
    );
    // A key given twice before a failing row is reported first, as going row by row would.
    keys.par_sort_unstable();
    if let Some((key, first, repeat)) = first_conflict(&keys) {
        let (first, second) = (origins[first], origins[repeat]);
        return Err(LossError::Conflict {
            file: second.file.to_path_buf(),
            line: second.line,
            first_file: first.file.to_path_buf(),
            first_line: first.line,
            account: key.0,
            asset: inputs.assets[key.1 as usize].0.symbol.clone(),
            pool: it.pool_text(key.2),
        });
    }
    gathered?;
    drop(origins);

    // Look-through: replace each wrapper's rows by its holders' pro-rata shares. `merged`
    // is sorted by key (account, asset index, pool index) and unique on it.
    // Each key's amount is read at its input position, all over `amounts` (3.6M reads at a
    // million claimants, most of them cache misses): on every thread.
    let mut merged: Vec<(Key, Amount)> = Vec::new();
    keys.par_iter()
        .map(|&(k, seq)| (k, amounts[seq]))
        .collect_into_vec(&mut merged);
    merged.retain(|(_, a)| !a.is_zero());
    drop((keys, amounts));
    for w in &inputs.wrappers {
        let lo = merged.partition_point(|e| e.0 .0 < w.address);
        let hi = merged.partition_point(|e| e.0 .0 <= w.address);
        let rows: Vec<(Key, Amount)> = merged.drain(lo..hi).collect();
        if rows.is_empty() {
            continue;
        }
        // The wrapper's own balance (if listed) is not a holder: the split is over the rest.
        let mut holders: Vec<&HolderRow> = w
            .holders
            .iter()
            .filter(|h| !h.amount.is_zero() && h.account != w.address)
            .collect();
        holders.sort_by_key(|h| h.account);
        let total_bal = Amount::checked_sum(holders.iter().map(|h| h.amount))
            .map_err(amt(|| format!("wrapper {} balances", w.name)))?;
        let mut shares_out: Vec<(Key, Amount)> = Vec::new();
        for (key, loss) in rows {
            let asset = &inputs.assets[key.1 as usize].0.symbol;
            if total_bal.is_zero() || holders.is_empty() {
                return Err(LossError::EmptyWrapper {
                    wrapper: w.name.clone(),
                    address: w.address,
                    asset: asset.clone(),
                });
            }
            let shares = split_largest_remainder(loss, holders.iter().map(|h| h.amount), total_bal)
                .map_err(amt(|| format!("wrapper {} look-through", w.name)))?;
            let spread = Amount::checked_sum(shares.iter().copied())
                .map_err(amt(|| "look-through sum".to_owned()))?;
            if spread != loss {
                return Err(LossError::LookThroughConservation {
                    wrapper: w.name.clone(),
                    asset: asset.clone(),
                    given: loss,
                    spread,
                });
            }
            shares_out.extend(
                holders
                    .iter()
                    .zip(shares)
                    .filter(|(_, s)| !s.is_zero())
                    .map(|(h, s)| ((h.account, key.1, key.2), s)),
            );
            let e = stats
                .looked_through
                .entry(w.name.clone())
                .or_default()
                .entry(asset.clone())
                .or_default();
            *e = e
                .checked_add(loss)
                .map_err(amt(|| "look-through total".to_owned()))?;
        }
        // Add the holders' shares to their own rows (a later wrapper may be a holder).
        shares_out.sort_unstable_by_key(|e| e.0);
        merged = merge_sorted(merged, shares_out)?;
    }

    let n_assets = inputs.assets.len();
    // Per-asset totals of pieces of the rows on every thread, then of the pieces in order.
    // Amounts are never negative, so a piece's total overflows only if the whole does: the
    // error is the same as summing row by row.
    let add_into = |acc: &mut [Amount], items: &mut dyn Iterator<Item = (usize, Amount)>| {
        for (ai, a) in items {
            acc[ai] = acc[ai]
                .checked_add(a)
                .map_err(amt(|| "gross total".to_owned()))?;
        }
        Ok::<(), LossError>(())
    };
    let pieces: Vec<Vec<Amount>> = merged
        .par_chunks(crate::par::PIECE)
        .map(|piece| {
            let mut acc = vec![Amount::ZERO; n_assets];
            add_into(&mut acc, &mut piece.iter().map(|(k, a)| (k.1 as usize, *a)))?;
            Ok(acc)
        })
        .collect::<Result<_, LossError>>()?;
    let mut gross = vec![Amount::ZERO; n_assets];
    for piece in pieces {
        add_into(&mut gross, &mut piece.into_iter().enumerate())?;
    }
    for (ai, g) in gross.into_iter().enumerate() {
        if merged.iter().any(|(k, _)| k.1 as usize == ai) {
            stats.gross.insert(inputs.assets[ai].0.symbol.clone(), g);
        }
    }

    // Netting. The pools of one (account, asset) are a contiguous run of `merged`, found
    // for every netting row at once (`runs_of`); the rows are then applied in input order,
    // so that the error reported is the first one met going row by row.
    let net_keys: Vec<Option<(Address, u32)>> = inputs
        .netting
        .iter()
        .map(|n| it.asset(&n.asset).ok().map(|ai| (n.account, ai)))
        .collect();
    let runs = runs_of(&merged, &net_keys);
    let mut netted = vec![None::<Amount>; n_assets];
    for ((n, key), range) in inputs.netting.iter().zip(&net_keys).zip(runs) {
        // No key: the asset is unknown, and this is its error.
        let ai = match key {
            Some((_, ai)) => *ai,
            None => it.asset(&n.asset)?,
        };
        let at = match &n.pool {
            Some(_) => {
                let pi = it.pool(&n.pool);
                merged[range.clone()]
                    .binary_search_by_key(&pi, |e| e.0 .2)
                    .ok()
                    .map(|i| range.start + i)
            }
            None => match range.len() {
                0 => None,
                1 => Some(range.start),
                _ => {
                    return Err(LossError::AmbiguousNetting {
                        file: n.origin.file.to_path_buf(),
                        line: n.origin.line,
                        account: n.account,
                        asset: n.asset.to_string(),
                        pools: merged[range].iter().map(|e| it.pool_text(e.0 .2)).collect(),
                    })
                }
            },
        };
        match at {
            Some(i) => {
                let l = &mut merged[i].1;
                let taken = (*l).min(n.amount);
                *l = l.saturating_sub(n.amount);
                let e = netted[ai as usize].get_or_insert(Amount::ZERO);
                *e = e
                    .checked_add(taken)
                    .map_err(amt(|| "netted total".to_owned()))?;
            }
            None => stats.netting_unmatched += 1,
        }
    }
    for (ai, t) in netted.into_iter().enumerate() {
        if let Some(t) = t {
            stats.netted.insert(inputs.assets[ai].0.symbol.clone(), t);
        }
    }

    // The ledger promises (account, asset symbol, pool) order, independent of input
    // order: rank the interned indices by their text and sort on the ranks.
    let asset_rank = ranks(inputs.assets.iter().map(|(a, _)| Some(a.symbol.as_str())));
    let pool_rank = ranks(it.pools.iter().map(|p| p.as_deref()));
    merged.retain(|(_, a)| !a.is_zero());
    // `merged` is in account order already: only each account's few rows need reordering.
    for rows in merged.chunk_by_mut(|a, b| a.0 .0 == b.0 .0) {
        rows.sort_unstable_by_key(|((_, ai, pi), _)| {
            (asset_rank[*ai as usize], pool_rank[*pi as usize])
        });
    }
    let names: Vec<Name> = inputs
        .assets
        .iter()
        .map(|(a, _)| Name::from(a.symbol.as_str()))
        .collect();
    let excl: foldhash::HashMap<Address, std::sync::Arc<Exclusion>> = inputs
        .exclusions
        .iter()
        .map(|(a, e)| (*a, std::sync::Arc::new(e.clone())))
        .collect();
    // Each row's names are the making thread's own copies (`LocalNames`).
    let row = |local: &mut LocalNames,
               &((account, ai, pi), amount): &(Key, Amount)|
     -> Result<LossRow, LossError> {
        let (asset, price) = &inputs.assets[ai as usize];
        Ok(LossRow {
            account,
            asset: local.get(&names[ai as usize]),
            pool: it.pools[pi as usize].as_ref().map(|p| local.get(p)),
            class: if inputs.classes.is_empty() {
                None
            } else {
                inputs.classes.get(&account).map(|c| local.get(c))
            },
            amount,
            value: value_of(amount, asset, *price)?,
            exclusion: excl.get(&account).cloned(),
        })
    };
    let net_total = |net: &mut [Option<Amount>], &((_, ai, _), amount): &(Key, Amount)| {
        let e = net[ai as usize].get_or_insert(Amount::ZERO);
        *e = e
            .checked_add(amount)
            .map_err(amt(|| "net total".to_owned()))?;
        Ok::<(), LossError>(())
    };
    // The rows are made on every thread (3M valuations at a million claimants); the totals
    // are summed in row order beside. On any failure the rows are walked again one by one,
    // which reports the first failure in row order, as before.
    let mut net = vec![None::<Amount>; n_assets];
    let summed = merged
        .iter()
        .try_for_each(|e| net_total(&mut net, e))
        .is_ok();
    let stand_in = LossRow {
        account: Address::ZERO,
        asset: Name::from(""),
        pool: None,
        class: None,
        amount: Amount::ZERO,
        value: Decimal::ZERO,
        exclusion: None,
    };
    let made = summed
        .then(|| crate::par::map_init_or_none(&merged, LocalNames::default, row, stand_in))
        .flatten();
    let rows = match made {
        Some(rows) => rows,
        None => {
            net = vec![None::<Amount>; n_assets];
            let mut rows = Vec::with_capacity(merged.len());
            let mut local = LocalNames::default();
            for e in &merged {
                net_total(&mut net, e)?;
                rows.push(row(&mut local, e)?);
            }
            rows
        }
    };
    drop(merged);
    for (ai, t) in net.into_iter().enumerate() {
        if let Some(t) = t {
            stats.net.insert(inputs.assets[ai].0.symbol.clone(), t);
        }
    }
    let mut gain_rows: Vec<GainRow> = gains
        .into_iter()
        .map(|((account, ai), amount)| GainRow {
            account,
            asset: inputs.assets[ai as usize].0.symbol.clone(),
            amount,
        })
        .collect();
    gain_rows.sort_by(|a, b| (a.account, &a.asset).cmp(&(b.account, &b.asset)));
    for g in &gain_rows {
        let e = stats.gains.entry(g.asset.clone()).or_default();
        *e = e
            .checked_add(g.amount)
            .map_err(amt(|| "gains total".to_owned()))?;
    }
    Ok((
        LossLedger {
            rows,
            gains: gain_rows,
        },
        stats,
    ))
}

/// Hands every (account, asset, pool) loss of the inputs to `put`, in input order:
/// balance deltas, loss lists, then each vault's share-price losses; gains go to `gains`,
/// vault totals to `stats`.
///
/// # Errors
/// As [`compute`], except a key given twice (the caller's check).
fn gather<'a>(
    inputs: &'a LossInputs,
    it: &mut Interner,
    stats: &mut LossStats,
    gains: &mut BTreeMap<(Address, u32), Amount>,
    mut put: impl FnMut(Key, Amount, &'a Origin),
) -> Result<(), LossError> {
    let mut cache = NameCache::default();
    for r in &inputs.balances {
        let key = (
            r.account,
            cache.asset(it, &r.asset)?,
            cache.pool(it, &r.pool),
        );
        if r.after > r.before {
            let g = gains.entry((r.account, key.1)).or_default();
            *g = g
                .checked_add(r.after.saturating_sub(r.before))
                .map_err(amt(|| format!("gain of {}", r.account)))?;
        }
        put(key, r.before.saturating_sub(r.after), &r.origin);
    }
    for r in &inputs.losses {
        let key = (
            r.account,
            cache.asset(it, &r.asset)?,
            cache.pool(it, &r.pool),
        );
        put(key, r.amount, &r.origin);
    }
    for v in &inputs.vaults {
        let ai = it.asset(&v.underlying)?;
        let pi = it.pool(&Some(Name::from(v.name.as_str())));
        let held = Amount::checked_sum(v.holders.iter().map(|h| h.amount))
            .map_err(amt(|| format!("vault {} shares", v.name)))?;
        if held > v.total_supply_before {
            return Err(LossError::VaultShares {
                vault: v.name.clone(),
                held,
                supply: v.total_supply_before,
            });
        }
        let mut total = Amount::ZERO;
        for h in &v.holders {
            let before = h
                .amount
                .mul_div_floor(v.total_assets_before.raw(), v.total_supply_before.raw())
                .map_err(amt(|| format!("vault {} convertToAssets before", v.name)))?;
            let after = if v.total_supply_after.is_zero() {
                Amount::ZERO
            } else {
                h.amount
                    .mul_div_floor(v.total_assets_after.raw(), v.total_supply_after.raw())
                    .map_err(amt(|| format!("vault {} convertToAssets after", v.name)))?
            };
            if after > before {
                let g = gains.entry((h.account, ai)).or_default();
                *g = g
                    .checked_add(after.saturating_sub(before))
                    .map_err(amt(|| "gain".to_owned()))?;
            }
            let loss = before.saturating_sub(after);
            total = total
                .checked_add(loss)
                .map_err(amt(|| format!("vault {} total loss", v.name)))?;
            put((h.account, ai, pi), loss, &h.origin);
        }
        let e = stats.share_price.entry(v.underlying.clone()).or_default();
        *e = e
            .checked_add(total)
            .map_err(amt(|| "share-price total".to_owned()))?;
    }
    Ok(())
}

/// The interned index of the last few asset and pool names seen, by pointer: rows of one
/// input share their names' `Arc`s, so most rows skip hashing the text.
#[derive(Default)]
struct NameCache {
    assets: Vec<(Name, u32)>,
    pools: Vec<(Name, u32)>,
}

impl NameCache {
    const SIZE: usize = 64;

    fn asset(&mut self, it: &Interner, name: &Name) -> Result<u32, LossError> {
        if let Some(&(_, i)) = self.assets.iter().find(|(n, _)| Arc::ptr_eq(n, name)) {
            return Ok(i);
        }
        let i = it.asset(name)?;
        if self.assets.len() < Self::SIZE {
            self.assets.push((Name::clone(name), i));
        }
        Ok(i)
    }

    fn pool(&mut self, it: &mut Interner, name: &Option<Name>) -> u32 {
        let Some(name) = name else {
            return 0; // `compute` interns "no pool" first
        };
        if let Some(&(_, i)) = self.pools.iter().find(|(n, _)| Arc::ptr_eq(n, name)) {
            return i;
        }
        let i = it.pool(&Some(Name::clone(name)));
        if self.pools.len() < Self::SIZE {
            self.pools.push((Name::clone(name), i));
        }
        i
    }
}

/// In `keys` sorted by (key, position): the key given twice whose second position comes
/// first, as `(key, first position, second position)`.
fn first_conflict(keys: &[(Key, usize)]) -> Option<(Key, usize, usize)> {
    keys.chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
        .map(|run| (run[0].0, run[0].1, run[1].1))
        .min_by_key(|c| c.2)
}

/// The rank of each text in sorted order (`None` first); equal texts share a rank.
fn ranks<'a>(texts: impl Iterator<Item = Option<&'a str>>) -> Vec<u32> {
    let texts: Vec<Option<&str>> = texts.collect();
    let mut sorted = texts.clone();
    sorted.sort_unstable();
    sorted.dedup();
    texts
        .iter()
        .map(|t| sorted.binary_search(t).unwrap_or(0) as u32)
        .collect()
}

/// For each of `keys` (an (account, asset index) or `None`), the run of `merged` (sorted
/// and unique by key) whose entries have that account and asset: their pools. Empty (at
/// the key's place) when there are none; `0..0` for `None`.
///
/// One walk over `merged` in key order for all keys together, instead of two binary
/// searches each: a million-claimant run has 120k netting rows against 3M entries, and its
/// netting took 0.43 s with the searches (mostly cache misses), 0.05 s with the walk
/// (BENCHMARKS.md, "Session 14").
fn runs_of(
    merged: &[(Key, Amount)],
    keys: &[Option<(Address, u32)>],
) -> Vec<std::ops::Range<usize>> {
    let mut order: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].is_some()).collect();
    order.sort_unstable_by_key(|&i| keys[i]);
    let mut runs = vec![0..0; keys.len()];
    let mut at = 0;
    for i in order {
        let key = keys[i].expect("only keys that are some");
        let of = |e: &(Key, Amount)| (e.0 .0, e.0 .1);
        while at < merged.len() && of(&merged[at]) < key {
            at += 1;
        }
        let mut end = at;
        while end < merged.len() && of(&merged[end]) == key {
            end += 1;
        }
        runs[i] = at..end;
    }
    runs
}

/// Merges key-sorted, key-unique `b` into key-sorted, key-unique `a`, adding the amounts of
/// equal keys.
///
/// In place: `b` is a wrapper's holders' shares, a few rows against the millions of `a`.
/// Shares whose key `a` has are added where they are, the others are put in by moving
/// `a`'s entries up from the end. Merging into a new list copied all of `a` for each
/// wrapper: ≈ 0.15 s of the look-through's 0.43 s at a million claimants (the rest was
/// reading the amounts into `a`; BENCHMARKS.md, "Session 14").
fn merge_sorted(
    mut a: Vec<(Key, Amount)>,
    b: Vec<(Key, Amount)>,
) -> Result<Vec<(Key, Amount)>, LossError> {
    let mut new: Vec<(Key, Amount)> = Vec::new();
    let mut from = 0;
    for (k, w) in b {
        let i = from + a[from..].partition_point(|e| e.0 < k);
        match a.get_mut(i) {
            Some(e) if e.0 == k => {
                e.1 =
                    e.1.checked_add(w)
                        .map_err(amt(|| format!("look-through to {}", k.0)))?;
            }
            _ => new.push((k, w)),
        }
        from = i;
    }
    let Some(&filler) = new.first() else {
        return Ok(a);
    };
    // From the largest new key down: `a[..end]` are the entries not moved yet, and every
    // one of them from the new key's place on moves up past it and the smaller new keys.
    let mut end = a.len();
    a.resize(a.len() + new.len(), filler);
    for (j, (k, w)) in new.into_iter().enumerate().rev() {
        let i = a[..end].partition_point(|e| e.0 < k);
        a.copy_within(i..end, i + j + 1);
        a[i + j] = (k, w);
        end = i;
    }
    Ok(a)
}

/// Splits `total` over `weights` (summing to `denom`) pro rata, floor, then hands the
/// remaining units out one each by largest remainder; ties go to the earlier weight.
/// The result sums to `total` exactly when the weights sum to `denom`.
///
/// # Errors
/// [`AmountError`] on division by zero or overflow.
pub fn split_largest_remainder(
    total: Amount,
    weights: impl Iterator<Item = Amount>,
    denom: Amount,
) -> Result<Vec<Amount>, AmountError> {
    let mut out = Vec::new();
    let mut rems: Vec<(U256, usize)> = Vec::new();
    let mut paid = Amount::ZERO;
    for (i, w) in weights.enumerate() {
        let (q, r) = total.mul_div_rem(w.raw(), denom.raw())?;
        paid = paid.checked_add(q)?;
        out.push(q);
        rems.push((r, i));
    }
    let mut left = total.checked_sub(paid)?;
    // Descending remainder, then ascending position.
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let one = Amount::from(1u64);
    for (_, i) in rems {
        if left.is_zero() {
            break;
        }
        out[i] = out[i].checked_add(one)?;
        left = left.checked_sub(one)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sorted, key-unique entries drawn over a few accounts, assets and pools (so that keys
    /// meet often), amounts small enough never to overflow when two are added.
    fn entries() -> impl Strategy<Value = Vec<(Key, Amount)>> {
        proptest::collection::btree_map((0u8..40, 0u32..3, 0u32..3), 1u64..1_000_000, 0..60)
            .prop_map(|m| {
                m.into_iter()
                    .map(|((a, ai, pi), v)| ((Address::repeat_byte(a), ai, pi), Amount::from(v)))
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The in-place merge gives what adding both lists into one sorted map gives.
        #[test]
        fn merge_sorted_adds_equal_keys_and_keeps_key_order(a in entries(), b in entries()) {
            let mut want = std::collections::BTreeMap::new();
            for (k, v) in a.iter().chain(&b) {
                let e: &mut Amount = want.entry(*k).or_default();
                *e = e.checked_add(*v).unwrap();
            }
            let want: Vec<(Key, Amount)> = want.into_iter().collect();
            prop_assert_eq!(merge_sorted(a, b).unwrap(), want);
        }

        /// One walk finds, for every key, the run two binary searches find.
        #[test]
        fn runs_of_finds_each_key_s_run_as_binary_searches_do(
            merged in entries(),
            keys in proptest::collection::vec(
                proptest::option::weighted(0.9, (0u8..42, 0u32..4)),
                0..50,
            ),
        ) {
            let keys: Vec<Option<(Address, u32)>> = keys
                .into_iter()
                .map(|k| k.map(|(a, ai)| (Address::repeat_byte(a), ai)))
                .collect();
            let runs = runs_of(&merged, &keys);
            for (k, run) in keys.iter().zip(runs) {
                let of = |e: &(Key, Amount)| (e.0 .0, e.0 .1);
                match k {
                    Some(k) => {
                        let lo = merged.partition_point(|e| of(e) < *k);
                        let hi = merged.partition_point(|e| of(e) <= *k);
                        prop_assert_eq!(run, lo..hi);
                    }
                    None => prop_assert!(run.is_empty()),
                }
            }
        }
    }

    fn origin(file: &str, line: u64) -> Origin {
        Origin {
            file: std::path::Path::new(file).into(),
            line,
        }
    }

    fn inputs() -> LossInputs {
        let usdc = Asset {
            symbol: "USDC".into(),
            address: None,
            decimals: 6,
        };
        LossInputs {
            assets: vec![(usdc, Decimal::ONE)],
            ..LossInputs::default()
        }
    }

    fn balance(account: u8, line: u64) -> BalanceRow {
        BalanceRow {
            account: Address::repeat_byte(account),
            asset: Name::from("USDC"),
            pool: None,
            before: Amount::from(10u64),
            after: Amount::from(4u64),
            origin: origin("balances.csv", line),
        }
    }

    fn listed(account: u8, line: u64) -> AmountRow {
        AmountRow {
            account: Address::repeat_byte(account),
            asset: Name::from("USDC"),
            pool: None,
            amount: Amount::from(7u64),
            kind: None,
            origin: origin("losses.csv", line),
        }
    }

    fn conflict_lines(e: LossError) -> (PathBuf, u64, PathBuf, u64) {
        match e {
            LossError::Conflict {
                file,
                line,
                first_file,
                first_line,
                ..
            } => (file, line, first_file, first_line),
            e => panic!("expected a conflict, got {e}"),
        }
    }

    #[test]
    fn the_conflict_reported_is_the_one_met_first_in_input_order() {
        let mut i = inputs();
        // Account 9 repeats at losses.csv line 2, account 1 only at line 5: going row by
        // row, account 9's repeat is met first although account 1 sorts first.
        i.balances = vec![balance(1, 2), balance(9, 3)];
        i.losses = vec![listed(9, 2), listed(3, 3), listed(4, 4), listed(1, 5)];
        let e = compute(&i).expect_err("two keys are given twice");
        assert_eq!(
            conflict_lines(e),
            ("losses.csv".into(), 2, "balances.csv".into(), 3)
        );
    }

    #[test]
    fn a_conflict_before_a_failing_vault_is_reported_first() {
        let mut i = inputs();
        i.balances = vec![balance(1, 2)];
        i.losses = vec![listed(1, 2)];
        // The vault's holders hold more shares than its supply: an error met after the
        // conflict, going row by row.
        i.vaults = vec![VaultInput {
            name: "v".into(),
            underlying: "USDC".into(),
            total_assets_before: Amount::from(10u64),
            total_supply_before: Amount::from(1u64),
            total_assets_after: Amount::from(1u64),
            total_supply_after: Amount::from(1u64),
            holders: vec![HolderRow {
                account: Address::repeat_byte(5),
                amount: Amount::from(2u64),
                origin: origin("holders.csv", 2),
            }],
        }];
        let e = compute(&i).expect_err("conflict");
        assert_eq!(
            conflict_lines(e),
            ("losses.csv".into(), 2, "balances.csv".into(), 2)
        );
        // Without the conflict, the vault's error is the one reported.
        i.losses.clear();
        assert!(matches!(compute(&i), Err(LossError::VaultShares { .. })));
    }

    #[test]
    fn distinct_keys_give_one_row_each_in_account_order() {
        let mut i = inputs();
        i.balances = vec![balance(9, 2), balance(1, 3)];
        i.losses = vec![listed(4, 2)];
        let (ledger, stats) = compute(&i).unwrap();
        let got: Vec<(Address, Amount)> =
            ledger.rows.iter().map(|r| (r.account, r.amount)).collect();
        assert_eq!(
            got,
            vec![
                (Address::repeat_byte(1), Amount::from(6u64)),
                (Address::repeat_byte(4), Amount::from(7u64)),
                (Address::repeat_byte(9), Amount::from(6u64)),
            ]
        );
        assert_eq!(stats.net["USDC"], Amount::from(19u64));
    }

    /// The gross totals are summed in pieces: exact across their boundaries, and a total
    /// past 2^256 − 1 is the same error whether one piece or only the pieces' sum exceeds it.
    #[test]
    fn gross_totals_summed_in_pieces_are_exact_and_overflow_as_a_whole() {
        let lost = |account: Address, amount: U256| AmountRow {
            account,
            asset: Name::from("USDC"),
            pool: None,
            amount: Amount::new(amount),
            kind: None,
            origin: origin("losses.csv", 2),
        };
        let mut i = inputs();
        let n = 3 * (1 << 16) + 7;
        i.losses = (1..=n as u64)
            .map(|k| {
                lost(
                    Address::from_word(crate::primitives::B256::from(U256::from(k))),
                    U256::from(k),
                )
            })
            .collect();
        let (_, stats) = compute(&i).unwrap();
        assert_eq!(
            stats.gross["USDC"],
            Amount::from(n as u64 * (n as u64 + 1) / 2)
        );
        // 2^255 in the first piece and in the last: no piece overflows, their sum does.
        let half = U256::from(1u8) << 255;
        i.losses[0].amount = Amount::new(half);
        i.losses[n - 1].amount = Amount::new(half);
        match compute(&i) {
            Err(LossError::Amount { context, .. }) => assert_eq!(context, "gross total"),
            other => panic!("expected the gross total to overflow, got {other:?}"),
        }
        // Both in one piece.
        i.losses[1].amount = Amount::new(half);
        i.losses[n - 1].amount = Amount::from(1u64);
        match compute(&i) {
            Err(LossError::Amount { context, .. }) => assert_eq!(context, "gross total"),
            other => panic!("expected the gross total to overflow, got {other:?}"),
        }
    }

    #[test]
    fn the_row_that_fails_first_in_row_order_is_the_one_reported() {
        // A second asset priced so high that any loss of it overflows `Decimal` when valued.
        let mut i = inputs();
        let dear = Asset {
            symbol: "DEAR".into(),
            address: None,
            decimals: 0,
        };
        i.assets.push((dear, Decimal::MAX));
        let lost = |account: u8, asset: &str, amount: U256| AmountRow {
            account: Address::repeat_byte(account),
            asset: Name::from(asset),
            pool: None,
            amount: Amount::new(amount),
            kind: None,
            origin: origin("losses.csv", 2),
        };
        // In row (account, asset) order account 2's DEAR fails first; account 3's DEAR comes
        // first in the input, and account 9's fails too.
        i.losses = vec![
            lost(9, "DEAR", U256::from(9u8)),
            lost(3, "DEAR", U256::from(3u8)),
            lost(4, "USDC", U256::from(1u8)),
            lost(2, "DEAR", U256::from(2u8)),
            lost(1, "USDC", U256::from(1u8)),
        ];
        match compute(&i) {
            Err(LossError::Value(e)) => assert_eq!(e.amount, Amount::from(2u64)),
            other => panic!("expected account 2's valuation to fail, got {other:?}"),
        }
        // Without the valuations that fail, every row is made.
        i.losses.retain(|r| r.asset.as_ref() == "USDC");
        let rows = compute(&i).unwrap().0.rows;
        let got: Vec<(Address, Decimal)> = rows.iter().map(|r| (r.account, r.value)).collect();
        let usdc_unit = Decimal::new(1, 6);
        assert_eq!(
            got,
            vec![
                (Address::repeat_byte(1), usdc_unit),
                (Address::repeat_byte(4), usdc_unit)
            ]
        );
    }
}
