//! The waterfall and the allocation: [`apply`].

use super::config::{CoverList, FundingSource, PolicyConfig, Prices, Rounding, Scope, SourceKind};
use super::error::PolicyError;
use super::result::{
    residual_values, AssetAmount, GroupTotals, Name, PolicyResult, RowStatus, SourceResult, Table,
    TierTotals, NONE,
};
use super::verify::verify;
use crate::loss::{ExclusionMode, LossLedger, LossRow};
use crate::par::map_or_none;
use crate::primitives::{Address, Amount, AmountColumn, AmountError, Asset, Decimal, U256};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// An overflow error, its message built only when it happens (never in the hot loops).
fn ovf<'a>(
    what: &'static str,
    source_id: Option<&'a str>,
) -> impl FnOnce(AmountError) -> PolicyError + 'a {
    move |source| PolicyError::Overflow {
        what: match source_id {
            Some(id) => format!("{what} of funding source `{id}`"),
            None => what.to_owned(),
        },
        source,
    }
}

/// A ledger row as the allocation sees it.
#[derive(Clone)]
struct Row {
    /// Index into `ledger.rows`.
    li: u32,
    asset: u32,
    pool: u32,
    class: u32,
    status: RowStatus,
    /// 0 for tier rows (paid first), 1 for the others.
    prio: u8,
    claim: Amount,
    /// Claim not yet settled (by payments or withheld allocations), row asset base units.
    remaining: Amount,
}

struct User {
    first: u32,
    end: u32,
    tier: Option<u32>,
    value: Decimal,
}

/// One allocation: row `row` got `amount` (source units) from source `src`, settling
/// `covered` of its claim (row units).
#[derive(Clone, Copy)]
struct Pay {
    row: u32,
    src: u32,
    amount: Amount,
    covered: Amount,
}

/// Allocations per chunk of a [`PayLog`] run: ≈ 40 B each (row, source, and the two
/// amounts in [`AmountColumn`]s), so a full chunk is ≈ 2.6 MB.
const PAY_CHUNK: usize = 1 << 16;

/// A chunk of a run's allocations, as columns.
#[derive(Default)]
struct PayChunk {
    row: Vec<u32>,
    src: Vec<u32>,
    amount: AmountColumn,
    covered: AmountColumn,
}

impl PayChunk {
    fn with_capacity(n: usize) -> Self {
        Self {
            row: Vec::with_capacity(n),
            src: Vec::with_capacity(n),
            amount: AmountColumn::with_capacity(n),
            covered: AmountColumn::with_capacity(n),
        }
    }
    fn push(&mut self, p: Pay) {
        self.row.push(p.row);
        self.src.push(p.src);
        self.amount.push(p.amount);
        self.covered.push(p.covered);
    }
    fn get(&self, i: usize) -> Pay {
        Pay {
            row: self.row[i],
            src: self.src[i],
            amount: self.amount.get(i),
            covered: self.covered.get(i),
        }
    }
}

/// The waterfall's allocations, in the order they were made, as runs of strictly
/// ascending rows: a source pays its rows in row order (one run a priority round), so a
/// run holds at most one allocation a row, and a row's allocations lie in runs in
/// waterfall order. [`build`] walks the runs side by side, row by row, and frees each
/// chunk once it has passed it: at a million claimants the allocations (≈ 300 MB) are
/// given back while the result that replaces them is made, instead of both being held.
#[derive(Default)]
struct PayLog {
    runs: Vec<PayRun>,
}

struct PayRun {
    chunks: Vec<PayChunk>,
    last_row: u32,
    /// Read position: chunk, then index in it.
    at: (usize, usize),
}

impl PayLog {
    fn push(&mut self, pay: Pay) {
        let run = match self.runs.last_mut() {
            Some(r) if r.last_row < pay.row => r,
            _ => {
                self.runs.push(PayRun {
                    chunks: vec![PayChunk::default()],
                    last_row: pay.row,
                    at: (0, 0),
                });
                self.runs.last_mut().expect("pushed")
            }
        };
        run.last_row = pay.row;
        let full = run.chunks.last().is_some_and(|c| c.row.len() == PAY_CHUNK);
        if full {
            run.chunks.push(PayChunk::with_capacity(PAY_CHUNK));
        }
        run.chunks.last_mut().expect("one chunk at least").push(pay);
    }

    /// Logs a chunk of allocations (rows ascending) as [`PayLog::push`] would log them one by
    /// one: in the last run while the rows keep ascending, else in a new run.
    fn append(&mut self, chunk: PayChunk) {
        let (Some(&first), Some(&last)) = (chunk.row.first(), chunk.row.last()) else {
            return; // an empty chunk would end its run's walk early
        };
        match self.runs.last_mut() {
            Some(r) if r.last_row < first => {
                r.chunks.push(chunk);
                r.last_row = last;
            }
            _ => self.runs.push(PayRun {
                chunks: vec![chunk],
                last_row: last,
                at: (0, 0),
            }),
        }
    }

    /// Number of allocations.
    fn len(&self) -> usize {
        self.runs
            .iter()
            .flat_map(|r| &r.chunks)
            .map(|c| c.row.len())
            .sum()
    }

    /// True once every allocation has been taken.
    fn drained(&self) -> bool {
        self.runs.iter().all(|r| r.next_row().is_none())
    }
}

impl PayRun {
    /// The row of the next allocation not yet taken.
    fn next_row(&self) -> Option<u32> {
        self.chunks
            .get(self.at.0)
            .and_then(|c| c.row.get(self.at.1))
            .copied()
    }

    /// Takes the next allocation if it is for `row`, freeing its chunk once passed.
    fn take(&mut self, row: u32) -> Option<Pay> {
        if self.next_row() != Some(row) {
            return None;
        }
        let chunk = &self.chunks[self.at.0];
        let pay = chunk.get(self.at.1);
        self.at.1 += 1;
        if self.at.1 == chunk.row.len() {
            self.chunks[self.at.0] = PayChunk::default();
            self.at = (self.at.0 + 1, 0);
        }
        Some(pay)
    }
}

/// A source's account while it allocates: the funds it has left, and what it has booked so
/// far as paid and as withheld (all in the source's base units).
struct Booked<'a> {
    src: u32,
    sid: &'a str,
    funds: Amount,
    paid: Amount,
    withheld: Amount,
}

impl Booked<'_> {
    /// Books one allocation of `amount` (source units) settling `covered` of `row`'s claim
    /// (row units): the funds go down by `amount`, the row's remaining claim by `covered`,
    /// the paid total (withheld, for a row whose share the source keeps) up by `amount`, and
    /// the allocation is logged.
    fn book(
        &mut self,
        pays: &mut PayLog,
        row: &mut Row,
        amount: Amount,
        covered: Amount,
        ri: u32,
    ) -> Result<(), PolicyError> {
        let sid = Some(self.sid);
        self.funds = self
            .funds
            .checked_sub(amount)
            .map_err(ovf("the funds", sid))?;
        row.remaining = row
            .remaining
            .checked_sub(covered)
            .map_err(ovf("a remaining claim", sid))?;
        if row.status == RowStatus::Paid {
            self.paid = self
                .paid
                .checked_add(amount)
                .map_err(ovf("the paid total", sid))?;
        } else {
            self.withheld = self
                .withheld
                .checked_add(amount)
                .map_err(ovf("the withheld total", sid))?;
        }
        pays.push(Pay {
            row: ri,
            src: self.src,
            amount,
            covered,
        });
        Ok(())
    }
}

/// Allocations a block of [`settle_in_blocks`] settles: one [`PayChunk`].
const SETTLE_BLOCK: usize = PAY_CHUNK;

/// One block of a round's settled shares, before anything is changed.
struct Settled {
    pays: PayChunk,
    /// Σ shares, and of them those of paid rows and of withheld ones (source units).
    spent: Amount,
    paid: Amount,
    withheld: Amount,
}

/// Settles a pro-rata round's shares (`shares[k]` to row `idx[k]`, ascending rows): on
/// every thread ([`settle_in_blocks`]), and when a share cannot be settled there, which
/// changes nothing, one by one ([`book_one_by_one`]), whose first failure is the error.
fn settle_round(
    rows: &mut [Row],
    round: (&[u32], &[Amount]),
    conv: &[Conv],
    booked: &mut Booked<'_>,
    pays: &mut PayLog,
) -> Result<(), PolicyError> {
    if settle_in_blocks(rows, round, conv, booked, pays, SETTLE_BLOCK)? {
        return Ok(());
    }
    book_one_by_one(rows, round, conv, booked, pays)
}

/// Settles a pro-rata round's shares (`shares[k]` to row `idx[k]`, ascending rows) as
/// [`book_one_by_one`] would, on every thread: at a million claimants a round is up to 3.3M
/// allocations (≈ 0.15–0.24 s a source on one thread). Blocks of `block` allocations
/// ([`SETTLE_BLOCK`] in the engine) each work out their settled claims, allocations and sums
/// without changing anything; the sums are then taken from the funds and the totals in
/// block order, each block's allocations logged and its rows' remaining claims lowered.
///
/// `Ok(false)` when a share could not be settled (an overflow, or shares beyond the
/// funds): nothing was changed, and [`settle_round`] books them one by one.
fn settle_in_blocks(
    rows: &mut [Row],
    (idx, shares): (&[u32], &[Amount]),
    conv: &[Conv],
    booked: &mut Booked<'_>,
    pays: &mut PayLog,
    block: usize,
) -> Result<bool, PolicyError> {
    let src = booked.src;
    let blocks: Vec<Option<Settled>> = {
        let rows = &*rows;
        shares
            .par_chunks(block)
            .zip(idx.par_chunks(block))
            .map(|(shares, idx)| {
                let mut b = Settled {
                    pays: PayChunk::with_capacity(shares.len()),
                    spent: Amount::ZERO,
                    paid: Amount::ZERO,
                    withheld: Amount::ZERO,
                };
                for (&amount, &ri) in shares.iter().zip(idx) {
                    if amount.is_zero() {
                        continue;
                    }
                    let row = &rows[ri as usize];
                    let covered = conv[row.asset as usize].back(amount, row.remaining).ok()?;
                    b.spent = b.spent.checked_add(amount).ok()?;
                    let total = if row.status == RowStatus::Paid {
                        &mut b.paid
                    } else {
                        &mut b.withheld
                    };
                    *total = total.checked_add(amount).ok()?;
                    b.pays.push(Pay {
                        row: ri,
                        src,
                        amount,
                        covered,
                    });
                }
                Some(b)
            })
            .collect()
    };
    // The sums, in block order (exact: the same totals as one by one).
    let (mut left, mut paid, mut withheld) = (booked.funds, booked.paid, booked.withheld);
    for b in &blocks {
        let Some(b) = b else { return Ok(false) };
        let (Ok(l), Ok(p), Ok(w)) = (
            left.checked_sub(b.spent),
            paid.checked_add(b.paid),
            withheld.checked_add(b.withheld),
        ) else {
            return Ok(false);
        };
        (left, paid, withheld) = (l, p, w);
    }
    let blocks: Vec<PayChunk> = blocks
        .into_iter()
        .flatten()
        .map(|b| b.pays)
        .filter(|c| !c.row.is_empty())
        .collect();
    // Each block's rows, from its first row to the next block's: disjoint, so lowered on
    // every thread.
    let mut parts: Vec<(&mut [Row], u32, &PayChunk)> = Vec::with_capacity(blocks.len());
    let mut rest = rows;
    let mut base = 0u32;
    for (i, c) in blocks.iter().enumerate() {
        let end = blocks
            .get(i + 1)
            .map_or(base as usize + rest.len(), |n| n.row[0] as usize);
        let first = c.row[0];
        let (_, from_first) = rest.split_at_mut((first - base) as usize);
        let (own, after) = from_first.split_at_mut(end - first as usize);
        parts.push((own, first, c));
        (rest, base) = (after, end as u32);
    }
    // Every row's failure reads the same, so whichever a thread meets is the error.
    let sid = Some(booked.sid);
    parts
        .into_par_iter()
        .try_for_each(|(own, first, c)| -> Result<(), PolicyError> {
            for (i, &ri) in c.row.iter().enumerate() {
                let row = &mut own[(ri - first) as usize];
                row.remaining = row
                    .remaining
                    .checked_sub(c.covered.get(i))
                    .map_err(ovf("a remaining claim", sid))?;
            }
            Ok(())
        })?;
    (booked.funds, booked.paid, booked.withheld) = (left, paid, withheld);
    for c in blocks {
        pays.append(c);
    }
    Ok(true)
}

/// Books a round's shares one by one in row order (`shares[k]` to row `idx[k]`): each
/// share's settled claim, then [`Booked::book`]. The first failure is the error;
/// [`settle_in_blocks`] gives the same result on every thread when nothing fails.
fn book_one_by_one(
    rows: &mut [Row],
    (idx, shares): (&[u32], &[Amount]),
    conv: &[Conv],
    booked: &mut Booked<'_>,
    pays: &mut PayLog,
) -> Result<(), PolicyError> {
    let sid = Some(booked.sid);
    for (&a, &ri) in shares.iter().zip(idx) {
        if a.is_zero() {
            continue;
        }
        let row = &mut rows[ri as usize];
        let covered = conv[row.asset as usize]
            .back(a, row.remaining)
            .map_err(ovf("a settled claim", sid))?;
        booked.book(pays, row, a, covered, ri)?;
    }
    Ok(())
}

/// Σ `amounts`, on every thread (exact: the grouping does not change a sum of integers).
///
/// # Errors
/// [`AmountError::Overflow`] past 2^256 − 1 base units.
fn par_sum(amounts: &[Amount]) -> Result<Amount, AmountError> {
    amounts
        .par_iter()
        .try_fold(|| Amount::ZERO, |s, c| s.checked_add(*c))
        .try_reduce(|| Amount::ZERO, Amount::checked_add)
}

/// Conversion from a row's asset to a source's asset.
#[derive(Clone, Copy)]
enum Conv {
    /// Same asset: base units are the same.
    Same,
    /// `units_src = floor(units_row × num / den)`.
    Rate(U256, U256),
    /// A price is missing: the symbol.
    Missing(u32),
}

fn pow10(k: u32) -> Option<U256> {
    U256::from(10u8).checked_pow(U256::from(k))
}

/// The exact rational rate between two priced assets:
/// `units_s = units_r × (m_r × 10^(sc_s + dec_s)) / (m_s × 10^(sc_r + dec_r))`
/// where price = m × 10^-sc numeraire per whole token.
fn rate(pr: Decimal, dr: u8, ps: Decimal, ds: u8) -> Option<(U256, U256)> {
    let mr = U256::from(pr.mantissa().unsigned_abs());
    let ms = U256::from(ps.mantissa().unsigned_abs());
    let num = mr.checked_mul(pow10(ps.scale() + u32::from(ds))?)?;
    let den = ms.checked_mul(pow10(pr.scale() + u32::from(dr))?)?;
    Some((num, den))
}

impl Conv {
    /// A row amount in source units.
    ///
    /// # Rounding
    /// Floor: a claim is never overstated.
    fn fwd(self, units: Amount) -> Result<Amount, AmountError> {
        match self {
            Conv::Same => Ok(units),
            Conv::Rate(n, d) => units.mul_div_floor(n, d),
            Conv::Missing(_) => unreachable!("checked before use"),
        }
    }

    /// What an allocation of `paid` source units settles, row units, at most `remaining`.
    ///
    /// # Rounding
    /// Ceiling, capped at the remaining claim: since `paid <= floor(remaining × rate)`,
    /// `ceil(paid / rate) <= remaining`, so the cap only guards; a sub-unit of the row's
    /// asset is never left as a claim the source could not pay.
    fn back(self, paid: Amount, remaining: Amount) -> Result<Amount, AmountError> {
        match self {
            Conv::Same => Ok(paid.min(remaining)),
            Conv::Rate(n, d) => Ok(paid.mul_div_ceil(d, n)?.min(remaining)),
            Conv::Missing(_) => unreachable!("checked before use"),
        }
    }
}

/// Pro-rata allocation of `avail` over `claims` (Σ = `total`), in place: each claim is
/// replaced by its share.
///
/// When `avail >= total` every claim is paid in full (left as it is). Otherwise each gets
/// `floor(avail × claim / total)` (512-bit intermediate), and with
/// [`Rounding::LargestRemainder`] the `avail − Σfloor` left-over units go one each to the
/// largest remainders, ties to the lower index (the ledger's (account, asset, pool) order).
/// In place, because at a million claimants a second vector of shares is ≈ 100 MB more at
/// the policy's peak.
///
/// The shares are computed on every thread (each is independent of the others; at a
/// million claimants × 3 assets the treasury's 3.3M divisions took 0.47 s on one).
///
/// # Rounding
/// As described: floor, or floor plus largest remainder. No share exceeds its claim.
///
/// # Errors
/// [`AmountError::Overflow`] (cannot happen with `Σ claims = total`, as no share exceeds
/// `avail`; checked all the same).
fn pro_rata(
    avail: Amount,
    claims: &mut [Amount],
    total: Amount,
    rounding: Rounding,
) -> Result<(), AmountError> {
    if avail >= total {
        return Ok(());
    }
    let failed = AtomicBool::new(false);
    // Replaces the claim by its share and gives the remainder.
    let share = |c: &mut Amount| -> U256 {
        match avail.mul_div_rem(c.raw(), total.raw()) {
            Ok((q, r)) => {
                *c = q;
                r
            }
            Err(_) => {
                failed.store(true, Relaxed);
                U256::ZERO
            }
        }
    };
    // Every claim's remainder, zeros included: a zero remainder is never among the
    // largest `extra` (below).
    let mut rems: Vec<(U256, u32)> = Vec::new();
    if rounding == Rounding::LargestRemainder {
        claims
            .par_iter_mut()
            .enumerate()
            .map(|(i, c)| (share(c), i as u32))
            .collect_into_vec(&mut rems);
    } else {
        claims.par_iter_mut().for_each(|c| {
            share(c);
        });
    }
    if failed.into_inner() {
        // mul_div_rem's only error here (the divisor, `total`, is not zero).
        return Err(AmountError::Overflow);
    }
    let sum = par_sum(claims)?;
    if rounding == Rounding::LargestRemainder {
        let extra = avail.checked_sub(sum)?;
        // Σr = extra × total with every r < total, so more than `extra` remainders are not
        // zero: the `extra` largest are all non-zero, and extra fits usize.
        let k: usize = extra.raw().to();
        if k > 0 {
            let by = |a: &(U256, u32), b: &(U256, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            if k < rems.len() {
                rems.select_nth_unstable_by(k - 1, by);
            }
            for &(_, i) in &rems[..k] {
                claims[i as usize] = claims[i as usize].checked_add(Amount::from(1u64))?;
            }
        }
    }
    Ok(())
}

fn row_cmp(a: &LossRow, b: &LossRow) -> Ordering {
    a.account
        .cmp(&b.account)
        .then_with(|| a.asset.cmp(&b.asset))
        .then_with(|| a.pool.cmp(&b.pool))
}

/// Interns names; id 0 is "none", ids follow name order.
struct Names<'a> {
    names: Vec<&'a str>,
    shared: Vec<Name>,
    ix: HashMap<&'a str, u32>,
}

impl<'a> Names<'a> {
    /// The distinct names `name` gives the ledger's rows (many repeated).
    ///
    /// Inserted one by one, skipping a repeat of the name before: collecting a ledger's
    /// names into a `BTreeSet` sorts all of them first (the pools and classes of a million
    /// claimants × 3 assets: 0.20 s that way, 0.10 s this way). The rows are walked in
    /// pieces on every thread and the pieces' sets joined (the same set), where the policy's
    /// start otherwise runs on one thread; its gain was within the noise when measured
    /// (BENCHMARKS.md, "Session 22").
    fn of_rows(rows: &'a [LossRow], name: impl Fn(&'a LossRow) -> Option<&'a str> + Sync) -> Self {
        let set = rows
            .par_chunks(crate::par::PIECE)
            .map(|piece| {
                let mut set = BTreeSet::new();
                let mut last = None;
                for n in piece.iter().filter_map(&name) {
                    if last != Some(n) {
                        set.insert(n);
                        last = Some(n);
                    }
                }
                set
            })
            .reduce(BTreeSet::new, |mut a, mut b| {
                a.append(&mut b);
                a
            });
        let names: Vec<&str> = set.into_iter().collect();
        let ix = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32 + 1))
            .collect();
        let shared = names.iter().map(|n| Name::from(*n)).collect();
        Self { names, shared, ix }
    }
    fn id(&self, n: Option<&str>) -> u32 {
        n.map_or(NONE, |n| self.ix[n])
    }
    fn name(&self, id: u32) -> Option<String> {
        (id != NONE).then(|| self.names[id as usize - 1].to_owned())
    }
    fn known(&self) -> String {
        if self.names.is_empty() {
            "none".to_owned()
        } else {
            self.names.join(", ")
        }
    }
}

/// Applies a reimbursement policy to a loss ledger: the waterfall of `funding` in order,
/// each source paying pro rata toward what remains of the claims it may pay, then checks
/// conservation on the result.
///
/// - `ledger`: the loss stage's rows (any order; sorted here by (account, asset, pool),
///   which must be unique).
/// - `funding`: the `[[funding]]` sources, in waterfall order.
/// - `config`: the `[policy]` table.
/// - `covers`: per-user cover of insurance sources (see [`CoverList`]).
/// - `assets`: the manifest's `[[assets]]` (symbols and decimals).
/// - `prices`: numeraire per whole token; needed only for cross-asset payment.
///
/// Per source: `bounty = min(floor(funds × bounty_bps / 10000), bounty_cap)`; the rest is
/// allocated in two priority rounds (tier users, then the others), each round paying its
/// claims in full if it can, else pro rata with the configured rounding. Withheld rows
/// (exclusions and dust in `withhold` mode) take their share like any row, but it is kept
/// by the source; redistributed rows take no part. Insurance sources compute a claim per
/// user: `min(cover, floor((unpaid − deductible)⁺ × (10000 − coinsurance_bps) / 10000))`
/// over the user's eligible paid rows, pro rata over users when claims exceed capacity,
/// and spread over the user's rows in (asset, pool) order.
///
/// # Rounding
/// Pro-rata shares: see [`Rounding`]. Claims: `floor(loss × bps / 10000)`. Bounty: floor.
/// Cross-asset claims: floor of the exact rational price ratio; the claim settled by a
/// cross-asset payment: ceiling (see the module docs).
///
/// # Errors
/// Configuration errors ([`PolicyError::InvalidField`], [`PolicyError::UnknownAsset`],
/// [`PolicyError::UnknownGroup`], [`PolicyError::ScopeNeedsRestriction`],
/// [`PolicyError::DuplicateSource`], [`PolicyError::MissingPrice`],
/// [`PolicyError::CoverForNonInsurance`]), ledger errors ([`PolicyError::DuplicateRow`]),
/// arithmetic overflow, and [`PolicyError::Invariant`] when a conservation check fails.
pub fn apply(
    ledger: &LossLedger,
    funding: &[FundingSource],
    config: &PolicyConfig,
    covers: &CoverList,
    assets: &[Asset],
    prices: &Prices,
) -> Result<PolicyResult, PolicyError> {
    let mut result = apply_unverified(ledger, funding, config, covers, assets, prices)?;
    result.checks = verify(&result, &ledger.rows, funding, config)?;
    Ok(result)
}

/// [`apply`] without its conservation checks: the caller must run
/// [`super::verify::verify_against`] on the result before anything of it is published (the
/// pipeline runs them beside the claim trees). Its `checks` are empty.
///
/// # Errors
/// As [`apply`], except the checks' [`PolicyError::Invariant`]s.
pub(crate) fn apply_unverified(
    ledger: &LossLedger,
    funding: &[FundingSource],
    config: &PolicyConfig,
    covers: &CoverList,
    assets: &[Asset],
    prices: &Prices,
) -> Result<PolicyResult, PolicyError> {
    config.validate()?;
    let lrows = &ledger.rows;
    if lrows.len() >= u32::MAX as usize {
        return Err(PolicyError::ValueOverflow(
            "more than 2^32 - 1 loss rows".into(),
        ));
    }

    // Assets, by symbol order.
    let asset_map: BTreeMap<&str, &Asset> = assets.iter().map(|a| (a.symbol.as_str(), a)).collect();
    let asset_syms: Vec<&str> = asset_map.keys().copied().collect();
    let asset_ix: HashMap<&str, u32> = asset_syms
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    let decimals: Vec<u8> = asset_map.values().map(|a| a.decimals).collect();
    let asset_id = |table: &str, field: &'static str, sym: &str| {
        asset_ix
            .get(sym)
            .copied()
            .ok_or_else(|| PolicyError::UnknownAsset {
                table: table.to_owned(),
                field,
                asset: sym.to_owned(),
            })
    };
    let mut price_of: Vec<Option<Decimal>> = vec![None; asset_syms.len()];
    for (sym, p) in prices {
        if p.is_sign_negative() || p.is_zero() {
            return Err(PolicyError::InvalidField {
                table: "prices".into(),
                field: "price",
                expected: format!("a price > 0 for {sym}"),
                got: p.to_string(),
            });
        }
        if let Some(&i) = asset_ix.get(sym.as_str()) {
            price_of[i as usize] = Some(*p);
        }
    }

    // Row order: (account, asset, pool), unique (checked on every thread).
    let sorted = lrows
        .par_windows(2)
        .all(|w| row_cmp(&w[0], &w[1]) == Ordering::Less);
    let order: Vec<u32> = if sorted {
        (0..lrows.len() as u32).collect()
    } else {
        let mut o: Vec<u32> = (0..lrows.len() as u32).collect();
        o.sort_unstable_by(|&a, &b| row_cmp(&lrows[a as usize], &lrows[b as usize]));
        if let Some(w) = o
            .windows(2)
            .find(|w| row_cmp(&lrows[w[0] as usize], &lrows[w[1] as usize]) == Ordering::Equal)
        {
            let r = &lrows[w[0] as usize];
            return Err(PolicyError::DuplicateRow {
                account: r.account,
                asset: r.asset.to_string(),
                pool: r.pool.as_deref().map(str::to_owned),
            });
        }
        o
    };

    let pools = Names::of_rows(lrows, |r| r.pool.as_deref());
    let classes = Names::of_rows(lrows, |r| r.class.as_deref());

    // Sources against the ledger and the assets.
    let mut seen = BTreeSet::new();
    for s in funding {
        s.validate()?;
        if !seen.insert(s.id.as_str()) {
            return Err(PolicyError::DuplicateSource(s.id.clone()));
        }
        let t = format!("funding source `{}`", s.id);
        asset_id(&t, "asset", &s.asset)?;
        for a in s.assets.iter().flatten() {
            asset_id(&t, "assets", a)?;
        }
        for (field, list, names) in [
            ("pools", &s.pools, &pools),
            ("classes", &s.classes, &classes),
        ] {
            for n in list.iter().flatten() {
                if !names.ix.contains_key(n.as_str()) {
                    return Err(PolicyError::UnknownGroup {
                        source_id: s.id.clone(),
                        field,
                        name: n.clone(),
                        known: names.known(),
                    });
                }
            }
        }
        let need = match config.scope {
            Scope::PerPool if s.pools.is_none() => Some(("per_pool", "pools")),
            Scope::PerClass if s.classes.is_none() => Some(("per_class", "classes")),
            _ => None,
        };
        if let Some((scope, field)) = need {
            return Err(PolicyError::ScopeNeedsRestriction {
                source_id: s.id.clone(),
                scope,
                field,
            });
        }
    }
    for id in covers.keys() {
        if !funding
            .iter()
            .any(|s| &s.id == id && s.kind == SourceKind::Insurance)
        {
            return Err(PolicyError::CoverForNonInsurance(id.clone()));
        }
    }
    let mut dust_min: Vec<Option<Amount>> = vec![None; asset_syms.len()];
    if let Some(d) = &config.dust {
        for (sym, m) in &d.min {
            dust_min[asset_id("[policy.dust]", "min", sym)? as usize] = Some(*m);
        }
    }

    // Rows and users: a user is a run of rows with one account (the rows are in account
    // order). Each row is made on every thread (three name lookups each: 0.3 s on one
    // thread at a million claimants × 3 assets); the users are found in one walk, which
    // also reports a row's error in row order if any row failed.
    let make_row = |li: u32| -> Result<Row, PolicyError> {
        let r = &lrows[li as usize];
        let asset = asset_id("loss ledger", "asset", &r.asset)?;
        let status = match (&r.exclusion, config.dust.as_ref()) {
            (Some(e), _) if e.mode == ExclusionMode::Withhold => RowStatus::ExcludedWithheld,
            (Some(_), _) => RowStatus::ExcludedRedistributed,
            (None, Some(d)) if dust_min[asset as usize].is_some_and(|m| r.amount < m) => {
                match d.mode {
                    ExclusionMode::Withhold => RowStatus::DustWithheld,
                    ExclusionMode::Redistribute => RowStatus::DustRedistributed,
                }
            }
            _ => RowStatus::Paid,
        };
        Ok(Row {
            li,
            asset,
            pool: pools.id(r.pool.as_deref()),
            class: classes.id(r.class.as_deref()),
            status,
            prio: 1,
            claim: Amount::ZERO,
            remaining: Amount::ZERO,
        })
    };
    let stand_in = Row {
        li: 0,
        asset: 0,
        pool: NONE,
        class: NONE,
        status: RowStatus::Paid,
        prio: 1,
        claim: Amount::ZERO,
        remaining: Amount::ZERO,
    };
    let made = map_or_none(&order, |&li| make_row(li), stand_in);
    // None: a row failed, and the walk below makes them one by one to report the first.
    let one_by_one = made.is_none();
    let mut rows = made.unwrap_or_else(|| Vec::with_capacity(order.len()));
    let mut users: Vec<User> = Vec::new();
    for (n, &li) in order.iter().enumerate() {
        let r = &lrows[li as usize];
        let new_user = n == 0 || lrows[order[n - 1] as usize].account != r.account;
        if new_user {
            users.push(User {
                first: n as u32,
                end: n as u32,
                tier: None,
                value: Decimal::ZERO,
            });
        }
        let u = users.last_mut().expect("pushed above");
        u.end += 1;
        u.value = u
            .value
            .checked_add(r.value)
            .ok_or_else(|| PolicyError::ValueOverflow(format!("loss value of {}", r.account)))?;
        if one_by_one {
            rows.push(make_row(li)?);
        }
    }
    // Tiers by the user's total loss value, then claims: user by user, on every thread.
    let mut user_rows: Vec<&mut [Row]> = Vec::with_capacity(users.len());
    let mut rest = rows.as_mut_slice();
    for u in &users {
        let (own, after) = rest.split_at_mut((u.end - u.first) as usize);
        user_rows.push(own);
        rest = after;
    }
    users
        .par_iter_mut()
        .zip(user_rows)
        .try_for_each(|(u, own)| -> Result<(), PolicyError> {
            u.tier = config
                .tiers
                .iter()
                .position(|t| t.min_value <= u.value && u.value <= t.max_value)
                .map(|i| i as u32);
            let (bps, prio) = match u.tier {
                Some(t) => (config.tiers[t as usize].pay_bps, 0),
                None => (config.cap_bps, 1),
            };
            for row in own {
                row.prio = prio;
                if row.status.in_denominator() {
                    let loss = lrows[row.li as usize].amount;
                    // Its one error is the same for every row: which row fails first does
                    // not matter.
                    row.claim = loss
                        .mul_div_floor(bps.numerator(), U256::from(10_000u32))
                        .map_err(ovf("a claim", None))?;
                    row.remaining = row.claim;
                }
            }
            Ok(())
        })?;

    // The waterfall.
    let mut pays = PayLog::default();
    let mut src_out: Vec<SourceResult> = Vec::with_capacity(funding.len());
    for (si, s) in funding.iter().enumerate() {
        let sa = asset_ix[s.asset.as_str()];
        let sid = s.id.as_str();
        let bounty = match &s.bounty {
            Some(b) => {
                let x = s
                    .funds
                    .mul_div_floor(b.bps.numerator(), U256::from(10_000u32))
                    .map_err(ovf("the bounty", Some(sid)))?;
                b.cap.map_or(x, |c| x.min(c))
            }
            None => Amount::ZERO,
        };
        let funds = s
            .funds
            .checked_sub(bounty)
            .map_err(ovf("the funds after bounty", Some(sid)))?;
        let set = |list: &Option<Vec<String>>, n: usize, id: &dyn Fn(&str) -> u32| -> Vec<bool> {
            match list {
                None => vec![true; n],
                Some(l) => {
                    let mut v = vec![false; n];
                    for x in l {
                        v[id(x) as usize] = true;
                    }
                    v
                }
            }
        };
        let mut asset_ok = set(&s.assets, asset_syms.len(), &|x| asset_ix[x]);
        if config.scope == Scope::PerAsset {
            for (i, ok) in asset_ok.iter_mut().enumerate() {
                *ok &= i as u32 == sa;
            }
        }
        let pool_ok = set(&s.pools, pools.names.len() + 1, &|x| pools.ix[x]);
        let class_ok = set(&s.classes, classes.names.len() + 1, &|x| classes.ix[x]);
        if s.pools.is_some() {
            // A row without a pool is in no named pool.
            debug_assert!(!pool_ok[NONE as usize]);
        }
        let conv: Vec<Conv> = (0..asset_syms.len())
            .map(|a| {
                if a as u32 == sa {
                    return Conv::Same;
                }
                match (price_of[a], price_of[sa as usize]) {
                    (Some(pr), Some(ps)) => rate(pr, decimals[a], ps, decimals[sa as usize])
                        .map_or(Conv::Missing(a as u32), |(n, d)| Conv::Rate(n, d)),
                    (None, _) => Conv::Missing(a as u32),
                    (Some(_), None) => Conv::Missing(sa),
                }
            })
            .collect();
        let eligible = |r: &Row| {
            r.status.in_denominator()
                && asset_ok[r.asset as usize]
                && pool_ok[r.pool as usize]
                && class_ok[r.class as usize]
        };
        let conv_of = |r: &Row| -> Result<Conv, PolicyError> {
            match conv[r.asset as usize] {
                Conv::Missing(m) => Err(PolicyError::MissingPrice {
                    source_id: s.id.clone(),
                    source_asset: s.asset.clone(),
                    row_asset: asset_syms[r.asset as usize].to_owned(),
                    missing: asset_syms[m as usize].to_owned(),
                }),
                c => Ok(c),
            }
        };
        let mut claims_seen = Amount::ZERO;
        let mut booked = Booked {
            src: si as u32,
            sid,
            funds,
            paid: Amount::ZERO,
            withheld: Amount::ZERO,
        };

        if let Some(terms) = &s.insurance {
            let cover_of = covers.get(&s.id);
            // A user's claim on the cover: over the user's eligible paid rows.
            let user_claim = |u: &User| -> Result<Amount, PolicyError> {
                let mut r_u = Amount::ZERO;
                for r in &rows[u.first as usize..u.end as usize] {
                    if r.status == RowStatus::Paid && eligible(r) && !r.remaining.is_zero() {
                        let c = conv_of(r)?
                            .fwd(r.remaining)
                            .map_err(ovf("a claim", Some(sid)))?;
                        r_u = r_u
                            .checked_add(c)
                            .map_err(ovf("a user's claim", Some(sid)))?;
                    }
                }
                if r_u.is_zero() {
                    return Ok(Amount::ZERO);
                }
                let cover = match cover_of {
                    Some(m) => m
                        .get(&lrows[rows[u.first as usize].li as usize].account)
                        .copied()
                        .unwrap_or(Amount::ZERO),
                    None => Amount::MAX,
                };
                let above = r_u.saturating_sub(terms.deductible);
                let keep = U256::from(10_000u32 - terms.coinsurance.0);
                Ok(above
                    .mul_div_floor(keep, U256::from(10_000u32))
                    .map_err(ovf("a claim", Some(sid)))?
                    .min(cover))
            };
            // Every user's claim on every thread (each converts and sums the user's rows and
            // looks the cover up: 0.27 s on one thread at a million claimants); on any
            // failure the users are walked again in order, which stops at the first.
            let Some(per_user) = map_or_none(&users, user_claim, Amount::ZERO) else {
                let mut total = Amount::ZERO;
                for u in &users {
                    total = total
                        .checked_add(user_claim(u)?)
                        .map_err(ovf("the claims total", Some(sid)))?;
                }
                unreachable!("the walk meets the failure the threads met (total {total})")
            };
            let mut uclaims: Vec<Amount> = Vec::new();
            let mut uix: Vec<u32> = Vec::new();
            let mut total = Amount::ZERO;
            for (ui, c) in per_user.into_iter().enumerate() {
                if !c.is_zero() {
                    total = total
                        .checked_add(c)
                        .map_err(ovf("the claims total", Some(sid)))?;
                    uclaims.push(c);
                    uix.push(ui as u32);
                }
            }
            claims_seen = total;
            if !total.is_zero() {
                let mut alloc = uclaims;
                pro_rata(booked.funds, &mut alloc, total, config.rounding)
                    .map_err(ovf("the pro rata", Some(sid)))?;
                for (k, p) in alloc.into_iter().enumerate() {
                    let u = &users[uix[k] as usize];
                    let mut left = p;
                    for ri in u.first..u.end {
                        if left.is_zero() {
                            break;
                        }
                        let row = &mut rows[ri as usize];
                        if !(row.status == RowStatus::Paid && eligible(row))
                            || row.remaining.is_zero()
                        {
                            continue;
                        }
                        let cv = conv_of(row)?;
                        let c = cv.fwd(row.remaining).map_err(ovf("a claim", Some(sid)))?;
                        let t = left.min(c);
                        if t.is_zero() {
                            continue;
                        }
                        let covered = cv
                            .back(t, row.remaining)
                            .map_err(ovf("a settled claim", Some(sid)))?;
                        left = left
                            .checked_sub(t)
                            .map_err(ovf("a user's share", Some(sid)))?;
                        booked.book(&mut pays, row, t, covered, ri)?;
                    }
                }
            }
        } else {
            // A row's claim on the source, in the source's units.
            let claim_of = |r: &Row| -> Result<Amount, PolicyError> {
                conv_of(r)?
                    .fwd(r.remaining)
                    .map_err(ovf("a claim", Some(sid)))
            };
            for prio in 0..=1u8 {
                // The round's rows (eligible, with a claim left) in row order, with their
                // claims, on every thread: converting the claims to the source's asset is
                // most of a round's work (the treasury's 3.3M at a million claimants × 3
                // assets, 0.37 s on one thread). A claim that converts to zero stays, and
                // takes no share. On any failure the round is walked again in row order,
                // which stops at the first, as the walk always did.
                let idx: Vec<u32> = rows
                    .par_iter()
                    .enumerate()
                    .filter(|(_, r)| r.prio == prio && !r.remaining.is_zero() && eligible(r))
                    .map(|(ri, _)| ri as u32)
                    .collect();
                let claims = map_or_none(&idx, |&ri| claim_of(&rows[ri as usize]), Amount::ZERO);
                let (claims, total) = match claims.map(|c| (par_sum(&c), c)) {
                    Some((Ok(total), claims)) => (claims, total),
                    _ => {
                        let mut total = Amount::ZERO;
                        for &ri in &idx {
                            total = total
                                .checked_add(claim_of(&rows[ri as usize])?)
                                .map_err(ovf("the claims total", Some(sid)))?;
                        }
                        unreachable!("the walk meets the failure the threads met (total {total})")
                    }
                };
                claims_seen = claims_seen
                    .checked_add(total)
                    .map_err(ovf("the claims total", Some(sid)))?;
                if total.is_zero() || booked.funds.is_zero() {
                    continue;
                }
                // A round the funds cannot pay in full ends the source: the junior round
                // gets nothing, not even the senior round's floor dust.
                let last = booked.funds < total;
                let mut alloc = claims;
                pro_rata(booked.funds, &mut alloc, total, config.rounding)
                    .map_err(ovf("the pro rata", Some(sid)))?;
                settle_round(&mut rows, (&idx, &alloc), &conv, &mut booked, &mut pays)?;
                if last {
                    break;
                }
            }
        }
        let Booked { paid, withheld, .. } = booked;
        let left_over = s
            .funds
            .checked_sub(bounty)
            .and_then(|x| x.checked_sub(paid))
            .map_err(ovf("the left-over", Some(sid)))?;
        src_out.push(SourceResult {
            id: s.id.clone(),
            kind: s.kind,
            asset: s.asset.clone(),
            funds: s.funds,
            bounty,
            claims: claims_seen,
            paid,
            withheld,
            left_over,
        });
    }

    build(
        lrows,
        &rows,
        &users,
        pays,
        src_out,
        funding,
        config,
        &asset_syms,
        &pools,
        &classes,
    )
}

/// The result's columns that are copies of the rows' and the users' own fields, in row and
/// user order, and each row's settled claim (`claim − remaining`, which [`build`]'s walk
/// checks against the row's allocations). Amounts (loss, claim, settled) in the row's asset
/// base units; values in the numeraire.
struct RowColumns {
    asset: Vec<u32>,
    pool: Vec<u32>,
    class: Vec<u32>,
    status: Vec<RowStatus>,
    loss: AmountColumn,
    value: Vec<Decimal>,
    claim: AmountColumn,
    settled: AmountColumn,
    account: Vec<Address>,
    tier: Vec<u32>,
    loss_value: Vec<Decimal>,
    row_end: Vec<u32>,
}

impl RowColumns {
    fn of(lrows: &[LossRow], rows: &[Row], users: &[User]) -> Result<Self, PolicyError> {
        let n = rows.len();
        let mut c = Self {
            asset: Vec::with_capacity(n),
            pool: Vec::with_capacity(n),
            class: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            loss: AmountColumn::with_capacity(n),
            value: Vec::with_capacity(n),
            claim: AmountColumn::with_capacity(n),
            settled: AmountColumn::with_capacity(n),
            account: Vec::with_capacity(users.len()),
            tier: Vec::with_capacity(users.len()),
            loss_value: Vec::with_capacity(users.len()),
            row_end: Vec::with_capacity(users.len()),
        };
        for r in rows {
            let lr = &lrows[r.li as usize];
            c.asset.push(r.asset);
            c.pool.push(r.pool);
            c.class.push(r.class);
            c.status.push(r.status);
            c.loss.push(lr.amount);
            c.value.push(lr.value);
            c.claim.push(r.claim);
            c.settled.push(
                r.claim
                    .checked_sub(r.remaining)
                    .map_err(ovf("a settled claim", None))?,
            );
        }
        for u in users {
            c.account
                .push(lrows[rows[u.first as usize].li as usize].account);
            c.tier.push(u.tier.map_or(NONE, |x| x + 1));
            c.loss_value.push(u.value);
            c.row_end.push(u.end);
        }
        Ok(c)
    }

    fn into_table(self, t: &mut Table) {
        t.row_asset = self.asset;
        t.row_pool = self.pool;
        t.row_class = self.class;
        t.row_status = self.status;
        t.row_loss = self.loss;
        t.row_value = self.value;
        t.row_claim = self.claim;
        t.row_settled = self.settled;
        t.account = self.account;
        t.tier = self.tier;
        t.loss_value = self.loss_value;
        t.row_end = self.row_end;
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    lrows: &[LossRow],
    rows: &[Row],
    users: &[User],
    mut pays: PayLog,
    sources: Vec<SourceResult>,
    funding: &[FundingSource],
    config: &PolicyConfig,
    asset_syms: &[&str],
    pools: &Names<'_>,
    classes: &Names<'_>,
) -> Result<PolicyResult, PolicyError> {
    let asset_names: Vec<Name> = asset_syms.iter().map(|s| Name::from(*s)).collect();
    let src_asset: Vec<u32> = funding
        .iter()
        .map(|s| {
            asset_syms
                .iter()
                .position(|a| *a == s.asset)
                .expect("checked") as u32
        })
        .collect();
    let (n_rows, n_pays) = (rows.len(), pays.len());
    let mut t = Table {
        assets: asset_names.clone(),
        pools: pools.shared.clone(),
        classes: classes.shared.clone(),
        sources: funding.iter().map(|s| Name::from(s.id.as_str())).collect(),
        tiers: config
            .tiers
            .iter()
            .map(|t| Name::from(t.name.as_str()))
            .collect(),
        payout_end: Vec::with_capacity(users.len()),
        pay_end: Vec::with_capacity(n_rows),
        pay_source: Vec::with_capacity(n_pays),
        pay_amount: AmountColumn::with_capacity(n_pays),
        pay_covered: AmountColumn::with_capacity(n_pays),
        ..Table::default()
    };
    // The flat columns are indexed by u32: 2^32 − 1 allocations or payouts at most.
    let end_of = |len: usize, what: &str| {
        u32::try_from(len)
            .map_err(|_| PolicyError::ValueOverflow(format!("more than 2^32 - 1 {what}")))
    };
    let mut groups: BTreeMap<(u32, u32, u32), GroupTotals> = BTreeMap::new();
    let mut tiers: Vec<TierTotals> = config
        .tiers
        .iter()
        .map(|t| Some(t.name.clone()))
        .chain([None])
        .map(|tier| TierTotals {
            tier,
            users: 0,
            loss_value: Decimal::ZERO,
            residual_value: Decimal::ZERO,
        })
        .collect();
    let mut totals: Vec<Amount> = vec![Amount::ZERO; asset_syms.len()];
    let add = |a: &mut Amount, b: Amount, what: &'static str| -> Result<(), PolicyError> {
        *a = a.checked_add(b).map_err(ovf(what, None))?;
        Ok(())
    };
    // The columns that need nothing of the allocations ([`RowColumns`]) are made on a
    // second thread while this one walks the allocations, so that the two share the page
    // faults of the result's ≈ 360 MB of new columns at a million claimants (≈ half of
    // this function's time when one thread made them all). Each column is still made in
    // row or user order by one thread, so the result is the same. The walk's errors come
    // first, as when one loop made everything: one ends the scope, which still waits for
    // the other thread.
    let columns = std::thread::scope(|s| {
        let columns = s.spawn(|| RowColumns::of(lrows, rows, users));
        let mut upay_assets: Vec<(u32, Amount)> = Vec::new();
        for u in users {
            upay_assets.clear();
            for ri in u.first..u.end {
                let r = &rows[ri as usize];
                let lr = &lrows[r.li as usize];
                let mut settled = Amount::ZERO;
                for x in pays.runs.iter_mut().filter_map(|run| run.take(ri)) {
                    add(&mut settled, x.covered, "a row's settled claim")?;
                    t.pay_source.push(x.src);
                    t.pay_amount.push(x.amount);
                    t.pay_covered.push(x.covered);
                    if r.status == RowStatus::Paid {
                        let a = src_asset[x.src as usize];
                        match upay_assets.iter_mut().find(|(k, _)| *k == a) {
                            Some((_, v)) => add(v, x.amount, "a user's payout")?,
                            None => upay_assets.push((a, x.amount)),
                        }
                        add(&mut totals[a as usize], x.amount, "a payout total")?;
                    }
                }
                t.pay_end.push(end_of(t.pay_source.len(), "allocations")?);
                // Engine-side check: the allocations settle exactly claim − remaining.
                let expect = r
                    .claim
                    .checked_sub(r.remaining)
                    .map_err(ovf("a settled claim", None))?;
                if expect != settled {
                    return Err(PolicyError::Invariant {
                        check: "allocations settle claim - remaining",
                        subject: format!("{} {}", lr.account, lr.asset),
                        expected: expect.to_string(),
                        got: settled.to_string(),
                    });
                }
                let (covered, withheld) = if r.status == RowStatus::Paid {
                    (settled, Amount::ZERO)
                } else {
                    (Amount::ZERO, settled)
                };
                let haircut = lr.amount.saturating_sub(covered);
                let excess = covered.saturating_sub(lr.amount);
                let g = groups
                    .entry((r.asset, r.pool, r.class))
                    .or_insert_with(|| GroupTotals {
                        asset: asset_syms[r.asset as usize].to_owned(),
                        pool: pools.name(r.pool),
                        class: classes.name(r.class),
                        rows: 0,
                        loss: Amount::ZERO,
                        claim: Amount::ZERO,
                        covered: Amount::ZERO,
                        withheld: Amount::ZERO,
                        haircut: Amount::ZERO,
                        excess: Amount::ZERO,
                    });
                g.rows += 1;
                add(&mut g.loss, lr.amount, "a group's loss")?;
                add(&mut g.claim, r.claim, "a group's claim")?;
                add(&mut g.covered, covered, "a group's covered")?;
                add(&mut g.withheld, withheld, "a group's withheld")?;
                add(&mut g.haircut, haircut, "a group's haircut")?;
                add(&mut g.excess, excess, "a group's excess")?;
            }
            upay_assets.retain(|(_, v)| !v.is_zero());
            upay_assets.sort_by_key(|(a, _)| *a); // asset ids follow symbol order
            for &(a, amount) in &upay_assets {
                t.payout_asset.push(a);
                t.payout_amount.push(amount);
            }
            let tt = &mut tiers[u.tier.map_or(config.tiers.len(), |t| t as usize)];
            tt.users += 1;
            tt.loss_value = tt
                .loss_value
                .checked_add(u.value)
                .ok_or_else(|| PolicyError::ValueOverflow("a tier's loss value".into()))?;
            t.payout_end.push(end_of(t.payout_asset.len(), "payouts")?);
        }
        columns
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    columns.into_table(&mut t);
    t.residual_value = residual_values(&t)
        .map_err(|account| PolicyError::ValueOverflow(format!("residual value of {account}")))?;
    for (u, r) in users.iter().zip(&t.residual_value) {
        let tt = &mut tiers[u.tier.map_or(config.tiers.len(), |t| t as usize)];
        tt.residual_value = tt
            .residual_value
            .checked_add(*r)
            .ok_or_else(|| PolicyError::ValueOverflow("a tier's residual value".into()))?;
    }
    t.shrink_to_fit();
    let result = PolicyResult {
        table: t,
        sources,
        groups: groups.into_values().collect(),
        tiers,
        payouts: totals
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_zero())
            .map(|(a, amount)| AssetAmount {
                asset: asset_names[a].clone(),
                amount,
            })
            .collect(),
        checks: Vec::new(),
    };
    // Every allocation is for a row of this ledger, so the walk must have taken them all.
    if !pays.drained() {
        return Err(PolicyError::Invariant {
            check: "every allocation reaches its row",
            subject: "the waterfall's allocations".into(),
            expected: "none left".into(),
            got: format!(
                "{} runs not walked to their end",
                pays.runs.iter().filter(|r| r.next_row().is_some()).count()
            ),
        });
    }
    drop(pays);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::{
        book_one_by_one, pro_rata, settle_in_blocks, Amount, Booked, Conv, PayLog, Rounding, Row,
        RowStatus, U256,
    };
    use proptest::prelude::*;

    /// The names of rows walked in pieces on every thread are the distinct names of all
    /// rows, sorted, whichever piece each first shows in (a name only in the last piece, one
    /// in every piece, rows without one).
    #[test]
    fn names_of_rows_in_pieces_are_every_distinct_name() {
        use super::{LossRow, Names};
        use crate::primitives::Name;
        let n = 3 * (1 << 16) + 5;
        let rows: Vec<LossRow> = (0..n)
            .map(|i| LossRow {
                account: crate::primitives::Address::ZERO,
                asset: Name::from("USDC"),
                pool: match i % 4 {
                    _ if i == n - 1 => Some(Name::from("zeta")),
                    0 => None,
                    1 => Some(Name::from("vault-b")),
                    _ => Some(Name::from(format!("pool-{}", i % 3))),
                },
                class: None,
                amount: Amount::from(1u64),
                value: crate::primitives::Decimal::ZERO,
                exclusion: None,
            })
            .collect();
        let mut want: Vec<&str> = rows.iter().filter_map(|r| r.pool.as_deref()).collect();
        want.sort_unstable();
        want.dedup();
        assert!(want.contains(&"zeta"));
        assert_eq!(Names::of_rows(&rows, |r| r.pool.as_deref()).names, want);
        assert!(Names::of_rows(&rows, |r| r.class.as_deref())
            .names
            .is_empty());
    }

    /// Every allocation of a log, in order, and the log's number of runs.
    fn logged(pays: &PayLog) -> (Vec<(u32, u32, Amount, Amount)>, usize) {
        let mut all = Vec::new();
        for run in &pays.runs {
            for c in &run.chunks {
                for i in 0..c.row.len() {
                    let p = c.get(i);
                    all.push((p.row, p.src, p.amount, p.covered));
                }
            }
        }
        (all, pays.runs.len())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Blocks settled side by side change the rows, funds, totals and log exactly as
        /// booking one by one does (after an earlier round in the log, so that a run may be
        /// continued); with shares beyond the funds nothing is changed and `false` returned.
        #[test]
        fn settling_in_blocks_is_booking_one_by_one(
            rows in prop::collection::vec((0u128..1_000_000, any::<bool>(), any::<bool>()), 1..120),
            picks in prop::collection::vec((any::<bool>(), 0u128..2_000_000), 120),
            block in 1usize..9,
            earlier_last in prop::option::of(0u32..130),
            short in any::<bool>(),
        ) {
            let mut rows: Vec<Row> = rows
                .iter()
                .enumerate()
                .map(|(i, &(remaining, paid, other_asset))| Row {
                    li: i as u32,
                    asset: u32::from(other_asset),
                    pool: 0,
                    class: 0,
                    status: if paid { RowStatus::Paid } else { RowStatus::DustWithheld },
                    prio: 1,
                    claim: Amount::from_u128(remaining),
                    remaining: Amount::from_u128(remaining),
                })
                .collect();
            // Asset 1 pays at 3/7 of asset 0's units.
            let conv = [Conv::Same, Conv::Rate(U256::from(3u8), U256::from(7u8))];
            let (idx, shares): (Vec<u32>, Vec<Amount>) = picks
                .iter()
                .take(rows.len())
                .enumerate()
                .filter(|(_, p)| p.0)
                .map(|(i, p)| (i as u32, Amount::from_u128(p.1 % 3)))
                .unzip();
            let spent = shares.iter().fold(Amount::ZERO, |s, a| s.checked_add(*a).unwrap());
            let avail0 = if short && !spent.is_zero() {
                spent.checked_sub(Amount::from(1u64)).unwrap()
            } else {
                spent.checked_add(Amount::from(5u64)).unwrap()
            };
            let mut log0 = PayLog::default();
            if let Some(last) = earlier_last {
                log0.push(super::Pay { row: last, src: 0, amount: Amount::from(1u64), covered: Amount::from(1u64) });
            }
            let booked0 = |sid| Booked { src: 1, sid, funds: avail0, paid: Amount::from(7u64), withheld: Amount::ZERO };

            let (mut want_rows, mut want_booked, mut want_log) =
                (rows.clone(), booked0("s"), PayLog::default());
            if let Some(last) = earlier_last {
                want_log.push(super::Pay { row: last, src: 0, amount: Amount::from(1u64), covered: Amount::from(1u64) });
            }
            let want = book_one_by_one(&mut want_rows, (&idx, &shares), &conv, &mut want_booked, &mut want_log);

            let mut booked = booked0("s");
            let before: Vec<Amount> = rows.iter().map(|r| r.remaining).collect();
            let done = settle_in_blocks(&mut rows, (&idx, &shares), &conv, &mut booked, &mut log0, block).unwrap();
            let remaining: Vec<Amount> = rows.iter().map(|r| r.remaining).collect();
            if done {
                prop_assert!(want.is_ok());
                let want_remaining: Vec<Amount> = want_rows.iter().map(|r| r.remaining).collect();
                prop_assert_eq!(remaining, want_remaining);
                prop_assert_eq!((booked.funds, booked.paid, booked.withheld), (want_booked.funds, want_booked.paid, want_booked.withheld));
                prop_assert_eq!(logged(&log0), logged(&want_log));
            } else {
                prop_assert!(want.is_err());
                prop_assert_eq!(remaining, before);
                prop_assert_eq!((booked.funds, booked.paid), (avail0, Amount::from(7u64)));
            }
        }
    }

    /// The one-thread pro rata `pro_rata` replaced: floor shares, then one unit each to the
    /// largest non-zero remainders, ties to the lower index.
    fn reference(avail: Amount, claims: &mut [Amount], total: Amount, rounding: Rounding) {
        if avail >= total {
            return;
        }
        let mut rems: Vec<(U256, usize)> = Vec::new();
        let mut sum = U256::ZERO;
        for (i, c) in claims.iter_mut().enumerate() {
            let (q, r) = avail.mul_div_rem(c.raw(), total.raw()).unwrap();
            sum = sum.checked_add(q.raw()).unwrap();
            *c = q;
            if !r.is_zero() {
                rems.push((r, i));
            }
        }
        if rounding == Rounding::LargestRemainder {
            rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let extra: usize = avail.raw().checked_sub(sum).unwrap().to();
            for &(_, i) in &rems[..extra] {
                claims[i] = claims[i].checked_add(Amount::from(1u64)).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The shares, computed on every thread, are the one-thread reference's, with zero
        /// claims, repeated claims (ties) and amounts past 2^128 among them.
        #[test]
        fn pro_rata_matches_the_sequential_reference(
            claims in prop::collection::vec(prop_oneof![Just(0u128), 0u128..50, any::<u64>().prop_map(u128::from), any::<u128>()], 1..300),
            wide in any::<bool>(),
            avail_per_mille in 0u64..1200,
            largest_remainder in any::<bool>(),
        ) {
            let scale = if wide { U256::from(1u8) << 100 } else { U256::from(1u8) };
            let claims: Vec<Amount> = claims.iter().map(|&c| Amount::from(U256::from(c).checked_mul(scale).unwrap())).collect();
            let total = claims.iter().fold(U256::ZERO, |s, c| s.checked_add(c.raw()).unwrap());
            prop_assume!(!total.is_zero());
            let avail = Amount::from((total / U256::from(1000u32)).checked_mul(U256::from(avail_per_mille)).unwrap());
            let rounding = if largest_remainder { Rounding::LargestRemainder } else { Rounding::Floor };
            let (mut got, mut want) = (claims.clone(), claims);
            pro_rata(avail, &mut got, Amount::from(total), rounding).unwrap();
            reference(avail, &mut want, Amount::from(total), rounding);
            prop_assert_eq!(got, want);
        }
    }
}
