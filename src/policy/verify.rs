//! Conservation checks on a computed [`PolicyResult`], recomputed from its published rows.

use super::config::{FundingSource, PolicyConfig};
use super::error::PolicyError;
use super::result::{Check, PolicyResult, RowStatus};
use crate::loss::LossRow;
use crate::primitives::{Amount, U256};
use std::collections::BTreeMap;

fn broken(
    check: &'static str,
    subject: impl Into<String>,
    expected: impl ToString,
    got: impl ToString,
) -> PolicyError {
    PolicyError::Invariant {
        check,
        subject: subject.into(),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

fn sum(a: Amount, b: Amount) -> Result<Amount, PolicyError> {
    a.checked_add(b).map_err(|source| PolicyError::Overflow {
        what: "a conservation total".into(),
        source,
    })
}

/// Recomputes every total of `r` from its rows and checks, as errors:
///
/// - per source: Σ allocations to paid rows = `paid`, to withheld rows = `withheld`;
///   `bounty + paid + left_over = funds`; `paid + withheld <= funds − bounty`;
///   the bounty within `bounty_bps` and `bounty_cap`;
/// - per row: Σ settled = covered (or withheld); `covered <= claim`;
///   `claim <= floor(loss × max bps / 10000)`; redistributed rows have claim 0 and no
///   allocation; unpaid rows receive nothing; in-kind allocations settle what they pay
///   (a row's haircut and excess are derived from its loss and covered, so
///   `covered + haircut = loss + excess` holds per row by construction and is checked per
///   group);
/// - per user: payouts per asset = Σ allocations in that asset;
/// - per (asset, pool, class): the group totals, and `Σcovered + Σhaircut = Σloss + Σexcess`;
/// - per payout asset: Σ user payouts = Σ source `paid` ≤ Σ funds;
/// - the rows are the ledger's: same count and Σ loss per asset.
///
/// # Errors
/// [`PolicyError::Invariant`] naming the check, the subject, expected and got.
pub(crate) fn verify(
    r: &PolicyResult,
    ledger: &[LossRow],
    funding: &[FundingSource],
    config: &PolicyConfig,
) -> Result<Vec<Check>, PolicyError> {
    verify_against(r, &LedgerTotals::of(ledger)?, funding, config)
}

/// What [`verify`] checks a result against of the loss ledger: its row count and Σ loss per
/// asset symbol, base units. Taken before the ledger's rows are freed, so that the checks
/// can run after (beside the claim trees, in the pipeline).
#[derive(Debug, Clone)]
pub(crate) struct LedgerTotals {
    rows: usize,
    loss: BTreeMap<String, Amount>,
}

impl LedgerTotals {
    /// The totals of `ledger`.
    ///
    /// # Errors
    /// [`PolicyError::Overflow`] when an asset's Σ loss exceeds 2^256 − 1.
    pub(crate) fn of(ledger: &[LossRow]) -> Result<Self, PolicyError> {
        let mut loss: BTreeMap<String, Amount> = BTreeMap::new();
        for l in ledger {
            match loss.get_mut(&*l.asset) {
                Some(e) => *e = sum(*e, l.amount)?,
                None => {
                    loss.insert(l.asset.to_string(), l.amount);
                }
            }
        }
        Ok(Self {
            rows: ledger.len(),
            loss,
        })
    }
}

/// [`verify`] against ledger totals taken earlier.
///
/// # Errors
/// As [`verify`].
pub(crate) fn verify_against(
    r: &PolicyResult,
    ledger: &LedgerTotals,
    funding: &[FundingSource],
    config: &PolicyConfig,
) -> Result<Vec<Check>, PolicyError> {
    let mut checks = Vec::new();
    if r.sources.len() != funding.len() {
        return Err(broken(
            "one result per funding source",
            "sources",
            funding.len(),
            r.sources.len(),
        ));
    }
    let max_bps = config
        .tiers
        .iter()
        .map(|t| t.pay_bps.0)
        .chain([config.cap_bps.0])
        .max()
        .unwrap_or(10_000);
    let mut paid = vec![Amount::ZERO; funding.len()];
    let mut withheld = vec![Amount::ZERO; funding.len()];
    let mut by_asset_users: BTreeMap<&str, Amount> = BTreeMap::new();
    let mut loss_by_asset: BTreeMap<&str, Amount> = BTreeMap::new();
    type G = (Amount, Amount, Amount, Amount, Amount, Amount, u64);
    type K<'r> = (&'r str, Option<&'r str>, Option<&'r str>);
    // Keyed by the rows' name ids (cheap to hash, with foldhash: one lookup a row); merged
    // by name below, so two ids of one name would still land in one group, and the map's
    // order never shows.
    let mut by_id: foldhash::HashMap<(u32, u32, u32), (K<'_>, G)> = Default::default();
    let mut nrows = 0usize;
    let mut upay: Vec<(&str, Amount)> = Vec::new();
    for u in r.users() {
        upay.clear();
        for row in u.rows() {
            nrows += 1;
            let subj = || {
                format!(
                    "account {} asset {} pool {:?}",
                    u.account(),
                    row.asset(),
                    row.pool()
                )
            };
            let (loss, claim, covered, held) =
                (row.loss(), row.claim(), row.covered(), row.withheld());
            let mut settled = Amount::ZERO;
            let mut next = 0usize; // allocations come in waterfall order
            let mut allocations = 0usize;
            for p in row.sources() {
                allocations += 1;
                let si = next
                    + funding[next..]
                        .iter()
                        .position(|s| s.id == p.source)
                        .ok_or_else(|| {
                            broken(
                                "allocations from known sources, in waterfall order",
                                subj(),
                                "a [[funding]] id",
                                p.source,
                            )
                        })?;
                next = si + 1;
                settled = sum(settled, p.covered)?;
                if funding[si].asset == row.asset() && p.amount != p.covered {
                    return Err(broken(
                        "in-kind allocation settles what it pays",
                        subj(),
                        p.amount,
                        p.covered,
                    ));
                }
                if row.status() == RowStatus::Paid {
                    paid[si] = sum(paid[si], p.amount)?;
                    let a = funding[si].asset.as_str();
                    match upay.iter_mut().find(|(k, _)| *k == a) {
                        Some((_, v)) => *v = sum(*v, p.amount)?,
                        None => upay.push((a, p.amount)),
                    }
                } else {
                    withheld[si] = sum(withheld[si], p.amount)?;
                }
            }
            if sum(covered, held)? != settled {
                return Err(broken(
                    "settled = covered + withheld",
                    subj(),
                    settled,
                    format!("covered {covered} withheld {held}"),
                ));
            }
            if !row.status().in_denominator() && (!claim.is_zero() || allocations > 0) {
                return Err(broken(
                    "redistributed row takes no part",
                    subj(),
                    "claim 0, no allocation",
                    claim,
                ));
            }
            // With a cap of at least 100% a claim up to the loss is within the bound
            // (floor(loss × max_bps / 10000) >= loss): only a larger claim needs it.
            let bound = if max_bps >= 10_000 && claim <= loss {
                loss
            } else {
                loss.mul_div_floor(U256::from(max_bps), U256::from(10_000u32))
                    .map_err(|source| PolicyError::Overflow {
                        what: "a claim bound".into(),
                        source,
                    })?
            };
            if claim > bound {
                return Err(broken(
                    "claim <= loss × cap",
                    subj(),
                    format!("<= {bound}"),
                    claim,
                ));
            }
            if settled > claim {
                return Err(broken(
                    "payout <= claim",
                    subj(),
                    format!("<= {claim}"),
                    settled,
                ));
            }
            let (_, g) = by_id
                .entry(row.group_ids())
                .or_insert_with(|| ((row.asset(), row.pool(), row.class()), G::default()));
            g.0 = sum(g.0, loss)?;
            g.1 = sum(g.1, claim)?;
            g.2 = sum(g.2, covered)?;
            g.3 = sum(g.3, held)?;
            g.4 = sum(g.4, row.haircut())?;
            g.5 = sum(g.5, row.excess())?;
            g.6 += 1;
        }
        upay.retain(|(_, v)| !v.is_zero());
        upay.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let same = upay.len() == u.payouts().len()
            && upay
                .iter()
                .zip(u.payouts())
                .all(|(w, g)| w.0 == g.asset && w.1 == g.amount);
        if !same {
            let got: Vec<(&str, Amount)> = u.payouts().map(|a| (a.asset, a.amount)).collect();
            let want = &upay;
            return Err(broken(
                "user payouts = Σ allocations",
                format!("account {}", u.account()),
                format!("{want:?}"),
                format!("{got:?}"),
            ));
        }
        for &(a, v) in &upay {
            let e = by_asset_users.entry(a).or_insert(Amount::ZERO);
            *e = sum(*e, v)?;
        }
    }
    checks.push(Check {
        check: "rows: payout <= claim <= loss × cap, settled = Σ allocations",
        subject: "all rows".into(),
        detail: format!("{nrows} rows"),
    });

    let mut groups: BTreeMap<K<'_>, G> = BTreeMap::new();
    for (k, v) in by_id.into_values() {
        let g = groups.entry(k).or_default();
        *g = (
            sum(g.0, v.0)?,
            sum(g.1, v.1)?,
            sum(g.2, v.2)?,
            sum(g.3, v.3)?,
            sum(g.4, v.4)?,
            sum(g.5, v.5)?,
            g.6 + v.6,
        );
        let l = loss_by_asset.entry(k.0).or_insert(Amount::ZERO);
        *l = sum(*l, v.0)?;
    }

    // The rows are the ledger's.
    let same_loss = ledger.loss.len() == loss_by_asset.len()
        && ledger
            .loss
            .iter()
            .zip(&loss_by_asset)
            .all(|((a, x), (b, y))| a == b && x == y);
    if nrows != ledger.rows || !same_loss {
        return Err(broken(
            "result rows = ledger rows",
            "ledger",
            format!("{} rows {:?}", ledger.rows, ledger.loss),
            format!("{nrows} rows {loss_by_asset:?}"),
        ));
    }

    // Sources.
    let mut by_asset_sources: BTreeMap<&str, (Amount, Amount)> = BTreeMap::new();
    for (i, (s, o)) in funding.iter().zip(&r.sources).enumerate() {
        let subj = format!("funding source `{}`", s.id);
        if o.id != s.id || o.asset != s.asset || o.funds != s.funds {
            return Err(broken(
                "source result matches its config",
                subj,
                &s.id,
                &o.id,
            ));
        }
        if o.paid != paid[i] || o.withheld != withheld[i] {
            return Err(broken(
                "source paid/withheld = Σ allocations",
                subj,
                format!("paid {} withheld {}", paid[i], withheld[i]),
                format!("paid {} withheld {}", o.paid, o.withheld),
            ));
        }
        let total = sum(sum(o.bounty, o.paid)?, o.left_over)?;
        if total != s.funds {
            return Err(broken(
                "funds = bounty + paid + left_over",
                subj,
                s.funds,
                total,
            ));
        }
        let avail = s
            .funds
            .checked_sub(o.bounty)
            .map_err(|_| broken("bounty <= funds", subj.clone(), s.funds, o.bounty))?;
        if sum(o.paid, o.withheld)? > avail {
            return Err(broken(
                "paid + withheld <= funds - bounty",
                subj,
                avail,
                sum(o.paid, o.withheld)?,
            ));
        }
        let max_bounty = match &s.bounty {
            Some(b) => {
                let x = s
                    .funds
                    .mul_div_floor(b.bps.numerator(), U256::from(10_000u32))
                    .map_err(|source| PolicyError::Overflow {
                        what: "a bounty bound".into(),
                        source,
                    })?;
                b.cap.map_or(x, |c| x.min(c))
            }
            None => Amount::ZERO,
        };
        if o.bounty > max_bounty {
            return Err(broken(
                "bounty <= funds × bounty_bps, <= bounty_cap",
                subj,
                max_bounty,
                o.bounty,
            ));
        }
        let e = by_asset_sources.entry(s.asset.as_str()).or_default();
        e.0 = sum(e.0, o.paid)?;
        e.1 = sum(e.1, s.funds)?;
        checks.push(Check {
            check: "funds = bounty + paid + left_over; paid + withheld <= funds - bounty; paid = Σ allocations",
            subject: subj,
            detail: format!("{} = {} + {} + {}; withheld {}", s.funds, o.bounty, o.paid, o.left_over, o.withheld),
        });
    }

    // Payout assets.
    let want: Vec<(&str, Amount)> = by_asset_sources
        .iter()
        .filter(|(_, v)| !v.0.is_zero())
        .map(|(k, v)| (*k, v.0))
        .collect();
    let users: Vec<(&str, Amount)> = by_asset_users.iter().map(|(k, v)| (*k, *v)).collect();
    let got: Vec<(&str, Amount)> = r.payouts.iter().map(|a| (&*a.asset, a.amount)).collect();
    if users != want || got != want {
        return Err(broken(
            "Σ user payouts = Σ source paid per asset",
            "payouts",
            format!("{want:?}"),
            format!("users {users:?}, totals {got:?}"),
        ));
    }
    for (a, (p, f)) in &by_asset_sources {
        if p > f {
            return Err(broken("Σ paid <= Σ funds per asset", *a, f, p));
        }
        checks.push(Check {
            check: "Σ user payouts = Σ source paid <= Σ funds",
            subject: (*a).to_owned(),
            detail: format!("{p} <= {f}"),
        });
    }

    // Groups.
    if r.groups.len() != groups.len() {
        return Err(broken(
            "one total per (asset, pool, class)",
            "groups",
            groups.len(),
            r.groups.len(),
        ));
    }
    for (g, ((asset, pool, class), t)) in r.groups.iter().zip(&groups) {
        let subj = format!("group asset {asset} pool {pool:?} class {class:?}");
        let same = g.asset == *asset && g.pool.as_deref() == *pool && g.class.as_deref() == *class;
        let vals = (
            g.loss, g.claim, g.covered, g.withheld, g.haircut, g.excess, g.rows,
        );
        if !same || vals != *t {
            return Err(broken(
                "group totals = Σ rows",
                subj,
                format!("{t:?}"),
                format!("{vals:?}"),
            ));
        }
        let lhs = sum(g.covered, g.haircut)?;
        let rhs = sum(g.loss, g.excess)?;
        if lhs != rhs {
            return Err(broken(
                "Σcovered + Σhaircut = Σloss + Σexcess",
                subj,
                rhs,
                lhs,
            ));
        }
        checks.push(Check {
            check: "Σcovered + Σhaircut = Σloss + Σexcess",
            subject: subj,
            detail: format!("{} + {} = {} + {}", g.covered, g.haircut, g.loss, g.excess),
        });
    }
    Ok(checks)
}
