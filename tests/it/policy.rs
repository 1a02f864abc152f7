//! Policy stage: the Eminence 2020 plan reproduced exactly, and properties of the
//! waterfall and allocation on random ledgers.

use proptest::prelude::*;
use recoup::loss::{Exclusion, ExclusionMode, LossLedger, LossRow};
use recoup::policy::{
    self, CoverList, FundingSource, PolicyConfig, PolicyResult, Prices, Rounding, Scope, SourceKind,
};
use recoup::primitives::{parse_address, Address, Amount, Asset, Decimal, U256};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The policy tables of an incident manifest, as the manifest writes them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    policy: PolicyConfig,
    funding: Vec<FundingSource>,
}

fn data_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must provide the shared real-data folder beside the checkout",
            p.display()
        );
    }
    eprintln!(
        "skipping: {} not present (set CI to make this a failure)",
        p.display()
    );
    None
}

/// `address = amount` lines of the Eminence pipeline (DAI wei; beyond i64, so u128).
fn read_balances(path: &std::path::Path) -> BTreeMap<Address, u128> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let raw: BTreeMap<String, u128> =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.into_iter()
        .map(|(k, v)| {
            (
                parse_address(&k).unwrap_or_else(|e| panic!("{}: {k}: {e}", path.display())),
                v,
            )
        })
        .collect()
}

fn dai() -> Asset {
    Asset {
        symbol: "DAI".into(),
        address: None,
        decimals: 18,
    }
}

const EMINENCE_TABLES: &str = r#"
[policy]
scope = "per_asset"
rounding = "floor"

[policy.dust]
mode = "withhold"
min = { DAI = "1000000000000000000" }

[[funding]]
id = "returned-by-attacker"
kind = "recovered"
asset = "DAI"
amount = "8000000000000000000000000"
"#;

fn eminence_run(tables: &str) -> Option<(PolicyResult, BTreeMap<Address, u128>, usize)> {
    let dir = data_dir()?.join("incidents/eminence-2020");
    let losses = read_balances(&dir.join("05-dai-with-lp.toml"));
    let expected = read_balances(&dir.join("06-dai-pro-rata.toml"));
    assert_eq!(losses.len(), 3_674, "05-dai-with-lp.toml rows");
    assert_eq!(expected.len(), 3_654, "06-dai-pro-rata.toml rows");
    let ledger = LossLedger {
        rows: losses
            .iter()
            .map(|(a, v)| LossRow {
                account: *a,
                asset: "DAI".into(),
                pool: None,
                class: None,
                amount: Amount::from_u128(*v),
                value: Decimal::from_i128_with_scale(*v as i128, 18),
                exclusion: None,
            })
            .collect(),
        gains: vec![],
    };
    let t: Tables = toml::from_str(tables).expect("policy tables parse");
    let r = policy::apply(
        &ledger,
        &t.funding,
        &t.policy,
        &CoverList::new(),
        &[dai()],
        &Prices::new(),
    )
    .expect("policy applies");
    Some((r, expected, losses.len()))
}

fn check_eminence(r: &PolicyResult, expected: &BTreeMap<Address, u128>, n: usize) {
    assert_eq!(r.user_count(), n);
    let mut paid: BTreeMap<Address, u128> = BTreeMap::new();
    let mut dust = 0;
    for u in r.users() {
        let first = u.rows().next().expect("a user has a row");
        match u.payouts().collect::<Vec<_>>().as_slice() {
            [] => {
                assert_eq!(
                    first.status(),
                    policy::RowStatus::DustWithheld,
                    "{} unpaid but not dust",
                    u.account()
                );
                assert!(first.loss() < Amount::from(1_000_000_000_000_000_000u64));
                dust += 1;
            }
            [p] => {
                assert_eq!(p.asset, "DAI");
                paid.insert(u.account(), p.amount.raw().to());
            }
            more => panic!("{}: {} payout assets", u.account(), more.len()),
        }
    }
    assert_eq!(dust, 20, "dust rows withheld");
    for (a, want) in expected {
        assert_eq!(
            paid.get(a),
            Some(want),
            "payout of {a} differs from 06-dai-pro-rata.toml"
        );
    }
    assert_eq!(
        paid.len(),
        expected.len(),
        "accounts paid beyond 06-dai-pro-rata.toml"
    );
    // The published tokenTotal of 07-merkle-distribution.json.
    let total = Amount::new(U256::from(7_999_999_507_738_692_886_419_846u128));
    assert_eq!(r.sources[0].paid, total);
    assert_eq!(r.payouts[0].amount, total);
    assert_eq!(
        r.sources[0].left_over,
        Amount::from_u128(8_000_000_000_000_000_000_000_000 - 7_999_999_507_738_692_886_419_846)
    );
    assert!(
        !r.sources[0].withheld.is_zero(),
        "the dust rows' shares are withheld, not redistributed"
    );
}

#[test]
fn eminence_2020_floor_pro_rata_with_withheld_dust_reproduces_06_exactly() {
    let Some((r, expected, n)) = eminence_run(EMINENCE_TABLES) else {
        return;
    };
    check_eminence(&r, &expected, n);
}

#[test]
fn eminence_2020_global_scope_pays_the_same_as_in_kind() {
    let tables = EMINENCE_TABLES.replace("per_asset", "global");
    let Some((r, expected, n)) = eminence_run(&tables) else {
        return;
    };
    check_eminence(&r, &expected, n);
}

#[test]
fn eminence_2020_redistributing_the_dust_pays_out_more_than_06() {
    let tables = EMINENCE_TABLES.replace("mode = \"withhold\"", "mode = \"redistribute\"");
    let Some((r, expected, _)) = eminence_run(&tables) else {
        return;
    };
    let more = r
        .users()
        .filter(|u| {
            u.payouts()
                .next()
                .is_some_and(|p| p.amount.raw() > U256::from(expected[&u.account()]))
        })
        .count();
    assert!(
        more > 3_000,
        "redistribution should raise most payouts, raised {more}"
    );
    assert!(r.sources[0].withheld.is_zero());
}

// ---------------------------------------------------------------------------------------
// Properties on random ledgers and waterfalls.

const ASSETS: [(&str, u8, i64); 2] = [("A", 6, 1), ("B", 18, 2000)];
const POOLS: [Option<&str>; 3] = [None, Some("p1"), Some("p2")];
const CLASSES: [Option<&str>; 2] = [None, Some("c1")];

/// Checked U256 sum for test bookkeeping (U256 `+` wraps silently).
fn add(a: U256, b: U256) -> U256 {
    a.checked_add(b).expect("test totals fit 256 bits")
}

/// Checked U256 product for test bookkeeping.
fn mul(a: U256, b: U256) -> U256 {
    a.checked_mul(b).expect("test products fit 256 bits")
}

fn assets() -> Vec<Asset> {
    ASSETS
        .iter()
        .map(|(s, d, _)| Asset {
            symbol: (*s).into(),
            address: None,
            decimals: *d,
        })
        .collect()
}

fn prices() -> Prices {
    ASSETS
        .iter()
        .map(|(s, _, p)| ((*s).to_owned(), Decimal::from(*p)))
        .collect()
}

fn account(i: u8) -> Address {
    Address::with_last_byte(i + 1)
}

fn amount_strategy() -> impl Strategy<Value = u128> {
    prop_oneof![
        1u128..1_000,
        1u128..1_000_000_000_000,
        1u128..10u128.pow(30)
    ]
}

/// (account, asset, pool, class, amount, exclusion selector)
type RawRow = (u8, usize, usize, usize, u128, u8);

fn ledger_from(raw: &[RawRow]) -> LossLedger {
    let mut m: BTreeMap<(Address, &str, Option<&str>), LossRow> = BTreeMap::new();
    for &(a, asset, pool, class, amount, ex) in raw {
        let (sym, dec, price) = ASSETS[asset];
        let amt = Amount::from_u128(amount);
        let value = recoup::primitives::value_of(
            amt,
            &Asset {
                symbol: sym.into(),
                address: None,
                decimals: dec,
            },
            Decimal::from(price),
        )
        .unwrap();
        let exclusion = match ex {
            0 => Some(Exclusion {
                reason: "bot".into(),
                mode: ExclusionMode::Withhold,
            }),
            1 => Some(Exclusion {
                reason: "attacker".into(),
                mode: ExclusionMode::Redistribute,
            }),
            _ => None,
        };
        m.insert(
            (account(a), sym, POOLS[pool]),
            LossRow {
                account: account(a),
                asset: sym.into(),
                pool: POOLS[pool].map(Into::into),
                class: CLASSES[class].map(Into::into),
                amount: amt,
                value,
                exclusion: exclusion.map(std::sync::Arc::new),
            },
        );
    }
    LossLedger {
        rows: m.into_values().collect(),
        gains: vec![],
    }
}

/// (kind 0 recovered / 1 treasury / 2 insurance, asset, funds, bounty bps, bounty cap,
/// pool mask, deductible, coinsurance bps)
type RawSource = (u8, usize, u128, Option<u32>, Option<u128>, u8, u128, u32);

fn source_strategy() -> impl Strategy<Value = RawSource> {
    (
        0u8..3,
        0usize..2,
        amount_strategy(),
        proptest::option::of(0u32..=10_000),
        proptest::option::of(amount_strategy()),
        0u8..4,
        0u128..1_000_000,
        0u32..=10_000,
    )
}

fn sources_from(raw: &[RawSource], ledger: &LossLedger, scope: Scope) -> Vec<FundingSource> {
    let present: Vec<String> = {
        let mut p: Vec<String> = ledger
            .rows
            .iter()
            .filter_map(|r| r.pool.as_deref().map(str::to_owned))
            .collect();
        p.sort();
        p.dedup();
        p
    };
    raw.iter()
        .enumerate()
        .map(|(i, &(kind, asset, funds, bps, cap, mask, ded, coins))| {
            let mut pools: Vec<String> = present
                .iter()
                .enumerate()
                .filter(|(j, _)| mask & (1 << j) != 0)
                .map(|(_, p)| p.clone())
                .collect();
            if pools.is_empty() && scope == Scope::PerPool {
                pools = present.clone();
            }
            let kind = [
                SourceKind::Recovered,
                SourceKind::Treasury,
                SourceKind::Insurance,
            ][kind as usize];
            FundingSource {
                id: format!("s{i}"),
                kind,
                asset: ASSETS[asset].0.into(),
                funds: Amount::from_u128(funds),
                bounty: (kind == SourceKind::Recovered)
                    .then_some(bps.map(|b| policy::Bounty {
                        bps: recoup::primitives::Bps(b),
                        cap: cap.map(Amount::from_u128),
                    }))
                    .flatten(),
                insurance: (kind == SourceKind::Insurance).then(|| policy::InsuranceTerms {
                    deductible: Amount::from_u128(ded),
                    coinsurance: recoup::primitives::Bps(coins),
                }),
                pools: (!pools.is_empty()).then_some(pools),
                assets: None,
                classes: None,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    rows: Vec<RawRow>,
    sources: Vec<RawSource>,
    scope: u8,
    rounding: Rounding,
    dust: Option<(bool, u128)>,
    tier: Option<(i64, u32)>,
    cap_bps: u32,
    covers: Vec<(u8, u128)>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(
            (
                0u8..12,
                0usize..2,
                0usize..3,
                0usize..2,
                amount_strategy(),
                0u8..12,
            ),
            1..40,
        ),
        proptest::collection::vec(source_strategy(), 1..4),
        0u8..3,
        prop_oneof![Just(Rounding::Floor), Just(Rounding::LargestRemainder)],
        proptest::option::of((any::<bool>(), 0u128..100_000)),
        proptest::option::of((0i64..1_000_000, 0u32..=12_000)),
        prop_oneof![Just(10_000u32), 5_000u32..=10_050],
        proptest::collection::vec((0u8..12, amount_strategy()), 0..6),
    )
        .prop_map(
            |(rows, sources, scope, rounding, dust, tier, cap_bps, covers)| Case {
                rows,
                sources,
                scope,
                rounding,
                dust,
                tier,
                cap_bps,
                covers,
            },
        )
}

struct Built {
    ledger: LossLedger,
    funding: Vec<FundingSource>,
    config: PolicyConfig,
    covers: CoverList,
}

fn build(c: &Case) -> Built {
    let ledger = ledger_from(&c.rows);
    let has_pools = ledger.rows.iter().any(|r| r.pool.is_some());
    let scope = match c.scope {
        0 => Scope::Global,
        1 => Scope::PerAsset,
        _ if has_pools => Scope::PerPool,
        _ => Scope::Global,
    };
    let funding = sources_from(&c.sources, &ledger, scope);
    let mut config = PolicyConfig::new(scope);
    config.rounding = c.rounding;
    config.cap_bps = recoup::primitives::Bps(c.cap_bps);
    if let Some((withhold, min)) = c.dust {
        config.dust = Some(policy::DustRule {
            mode: if withhold {
                ExclusionMode::Withhold
            } else {
                ExclusionMode::Redistribute
            },
            min: [("A".to_owned(), Amount::from_u128(min))]
                .into_iter()
                .collect(),
        });
    }
    if let Some((max, pay)) = c.tier {
        config.tiers.push(policy::Tier {
            name: "small".into(),
            min_value: Decimal::ZERO,
            max_value: Decimal::from(max),
            pay_bps: recoup::primitives::Bps(pay),
        });
    }
    let mut covers = CoverList::new();
    if let Some(ins) = funding.iter().find(|s| s.kind == SourceKind::Insurance) {
        if !c.covers.is_empty() {
            covers.insert(
                ins.id.clone(),
                c.covers
                    .iter()
                    .map(|(a, v)| (account(*a), Amount::from_u128(*v)))
                    .collect(),
            );
        }
    }
    Built {
        ledger,
        funding,
        config,
        covers,
    }
}

fn run(b: &Built) -> PolicyResult {
    policy::apply(
        &b.ledger,
        &b.funding,
        &b.config,
        &b.covers,
        &assets(),
        &prices(),
    )
    .unwrap_or_else(|e| panic!("policy failed: {e}"))
}

/// What each insurance source pays each user, per (account, payout asset, source), in
/// base units (withheld rows excluded, as in [`payouts`]).
fn insurance_payouts(r: &PolicyResult, b: &Built) -> BTreeMap<(Address, String, String), U256> {
    let insurer: BTreeMap<&str, &str> = b
        .funding
        .iter()
        .filter(|s| s.kind == SourceKind::Insurance)
        .map(|s| (s.id.as_str(), s.asset.as_str()))
        .collect();
    let mut m: BTreeMap<(Address, String, String), U256> = BTreeMap::new();
    for u in r.users() {
        for row in u.rows().filter(|r| r.status() == policy::RowStatus::Paid) {
            for p in row.sources() {
                if let Some(asset) = insurer.get(p.source) {
                    let key = (u.account(), (*asset).to_owned(), p.source.to_string());
                    let e = m.entry(key).or_default();
                    *e = add(*e, p.amount.raw());
                }
            }
        }
    }
    m
}

/// How much less insurers pay each user with more funds, per (account, payout asset): the
/// sum over insurance sources of what each pays less (a source that pays more does not
/// offset one that pays less).
fn insurance_drop(
    before: &PolicyResult,
    after: &PolicyResult,
    b: &Built,
) -> BTreeMap<(Address, String), U256> {
    let after = insurance_payouts(after, b);
    let mut m: BTreeMap<(Address, String), U256> = BTreeMap::new();
    for (key, v) in insurance_payouts(before, b) {
        let less = v.saturating_sub(after.get(&key).copied().unwrap_or_default());
        let e = m.entry((key.0, key.1)).or_default();
        *e = add(*e, less);
    }
    m
}

/// Payouts per (account, asset), in base units.
fn payouts(r: &PolicyResult) -> BTreeMap<(Address, String), U256> {
    r.users()
        .flat_map(|u| {
            u.payouts()
                .map(move |p| ((u.account(), p.asset.to_string()), p.amount.raw()))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Conservation, checked here independently of the engine's own checks.
    #[test]
    fn conservation_holds_on_random_waterfalls(c in case_strategy()) {
        let b = build(&c);
        let r = run(&b);
        let mut per_asset_funds: BTreeMap<&str, U256> = BTreeMap::new();
        for (s, o) in b.funding.iter().zip(&r.sources) {
            let avail = s.funds.checked_sub(o.bounty).unwrap();
            prop_assert!(o.paid.checked_add(o.withheld).unwrap() <= avail, "source {} pays beyond its funds", s.id);
            prop_assert_eq!(o.bounty.checked_add(o.paid).unwrap().checked_add(o.left_over).unwrap(), s.funds);
            if let Some(bounty) = &s.bounty {
                prop_assert!(mul(o.bounty.raw(), U256::from(10_000u32)) <= mul(s.funds.raw(), U256::from(bounty.bps.0)));
                if let Some(cap) = bounty.cap { prop_assert!(o.bounty <= cap); }
            }
            let e = per_asset_funds.entry(s.asset.as_str()).or_default(); *e = add(*e, s.funds.raw());
        }
        let max_bps = c.cap_bps.max(c.tier.map_or(0, |t| t.1));
        let mut paid_per_asset: BTreeMap<String, U256> = BTreeMap::new();
        type Totals = (U256, U256, U256, U256); // loss, covered, haircut, excess
        let mut loss_by_group: BTreeMap<(String, Option<String>), Totals> = BTreeMap::new();
        for u in r.users() {
            for row in u.rows() {
                // payout <= claim <= loss × max cap; unpaid rows get nothing.
                prop_assert!(add(row.covered().raw(), row.withheld().raw()) <= row.claim().raw());
                prop_assert!(mul(row.claim().raw(), U256::from(10_000u32)) <= mul(row.loss().raw(), U256::from(max_bps)));
                if row.status() != policy::RowStatus::Paid { prop_assert!(row.covered().is_zero()); }
                let g = loss_by_group.entry((row.asset().to_owned(), row.pool().map(str::to_owned))).or_default();
                *g = (add(g.0, row.loss().raw()), add(g.1, row.covered().raw()), add(g.2, row.haircut().raw()), add(g.3, row.excess().raw()));
            }
            for p in u.payouts() { let e = paid_per_asset.entry(p.asset.to_owned()).or_default(); *e = add(*e, p.amount.raw()); }
        }
        for (k, (loss, cov, hc, ex)) in &loss_by_group {
            prop_assert_eq!(add(*cov, *hc), add(*loss, *ex), "group {:?}", k);
        }
        for (a, p) in &paid_per_asset {
            prop_assert!(*p <= per_asset_funds[a.as_str()], "asset {} paid beyond funds", a);
        }
        let mut ledger_loss = U256::ZERO;
        for l in &b.ledger.rows { ledger_loss = add(ledger_loss, l.amount.raw()); }
        let result_loss = loss_by_group.values().fold(U256::ZERO, |s, g| add(s, g.0));
        prop_assert_eq!(ledger_loss, result_loss);
    }

    /// One thread or several: byte-identical JSON (the engine makes the rows, converts the
    /// claims and takes the pro-rata shares on every thread).
    #[test]
    fn the_thread_count_does_not_change_the_result(c in case_strategy()) {
        let b = build(&c);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| serde_json::to_string(&run(&b)).unwrap())
        };
        prop_assert_eq!(on(1), on(3));
    }

    /// Same rows in any order: byte-identical JSON.
    #[test]
    fn shuffled_ledger_gives_byte_identical_json(c in case_strategy(), seed in any::<u64>()) {
        let b = build(&c);
        let want = serde_json::to_string(&run(&b)).unwrap();
        let mut shuffled = Built { ledger: b.ledger.clone(), funding: b.funding.clone(), config: b.config.clone(), covers: b.covers.clone() };
        let n = shuffled.ledger.rows.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.ledger.rows.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(want, serde_json::to_string(&run(&shuffled)).unwrap());
    }

    /// In kind (per_asset): with floor rounding, more funds in any source never pays any
    /// user less of any asset, except by what later insurance sources now pay them less
    /// (its claim is on what the user still has unpaid at its turn; see the `policy`
    /// module's "Monotonicity"). With largest remainder a user can lose a dust unit to
    /// another (the Alabama paradox): never more than 1 unit per source.
    #[test]
    fn more_funds_never_pays_anyone_less_in_kind(mut c in case_strategy(), which in 0usize..4, extra in amount_strategy()) {
        c.scope = 1;
        let b = build(&c);
        let (rb, ra) = (run(&b), run(&with_more(&b, which, extra)));
        let (before, after) = (payouts(&rb), payouts(&ra));
        let ins_drop = insurance_drop(&rb, &ra, &b);
        let slack = if c.rounding == Rounding::Floor { U256::ZERO } else { U256::from(b.funding.len()) };
        for (key, v) in &before {
            let a = after.get(key).copied().unwrap_or_default();
            let drop = ins_drop.get(key).copied().unwrap_or_default();
            prop_assert!(add(add(a, slack), drop) >= *v, "{:?}: {} before, {} with more funds (insurance pays {} less)", key, v, a, drop);
        }
    }

    /// Any scope: more funds never lowers a user's total payout value. A source of asset A
    /// may now pay what a source of asset B paid before (so B alone can drop); each
    /// cross-asset settlement rounds by under one base unit of the row's asset, hence a
    /// slack of one unit of the dearer asset per source and row.
    #[test]
    fn more_funds_never_lowers_anyone_s_payout_value(c in case_strategy(), which in 0usize..4, extra in amount_strategy()) {
        let b = build(&c);
        let (rb, ra) = (run(&b), run(&with_more(&b, which, extra)));
        let (before, after) = (values(&payouts(&rb)), values(&payouts(&ra)));
        let ins_drop = values(&insurance_drop(&rb, &ra, &b));
        let rows_per_user: BTreeMap<Address, usize> = b.ledger.rows.iter().fold(BTreeMap::new(), |mut m, r| { *m.entry(r.account).or_default() += 1; m });
        for (acct, v) in &before {
            let a = after.get(acct).copied().unwrap_or_default();
            let rounding = if c.rounding == Rounding::Floor { 0 } else { 1 };
            let slack = mul(U256::from(b.funding.len() * (rows_per_user[acct] + rounding)), U256::from(10u64.pow(12)));
            let drop = ins_drop.get(acct).copied().unwrap_or_default();
            prop_assert!(add(add(a, slack), drop) >= *v, "{}: value {} before, {} with more funds (insurance pays {} less)", acct, v, a, drop);
        }
    }

    /// One source: largest remainder pays each row its floor share or one unit more, and
    /// exactly min(funds, Σclaims) in total (withheld shares included); floor never more.
    #[test]
    fn largest_remainder_is_floor_plus_at_most_one_unit_and_pays_exactly_the_funds(c in case_strategy()) {
        let mut b = build(&c);
        b.funding.truncate(1);
        let s = &mut b.funding[0];
        s.kind = SourceKind::Treasury;
        s.bounty = None;
        s.insurance = None;
        b.covers.clear();
        b.config.rounding = Rounding::Floor;
        let floor = run(&b);
        b.config.rounding = Rounding::LargestRemainder;
        let lr = run(&b);
        let (f, l) = (&floor.sources[0], &lr.sources[0]);
        prop_assert_eq!(f.claims, l.claims);
        let avail = b.funding[0].funds.min(l.claims);
        prop_assert_eq!(l.paid.checked_add(l.withheld).unwrap(), avail, "LR must hand out every unit");
        prop_assert!(f.paid.checked_add(f.withheld).unwrap() <= avail);
        for (uf, ul) in floor.users().zip(lr.users()) {
            for (rf, rl) in uf.rows().zip(ul.rows()) {
                let af = rf.sources().next().map_or(U256::ZERO, |p| p.amount.raw());
                let al = rl.sources().next().map_or(U256::ZERO, |p| p.amount.raw());
                prop_assert!(al == af || al == add(af, U256::from(1u8)), "{} {}: floor {} LR {}", uf.account(), rf.asset(), af, al);
            }
        }
    }
}

fn with_more(b: &Built, which: usize, extra: u128) -> Built {
    let mut more = Built {
        ledger: b.ledger.clone(),
        funding: b.funding.clone(),
        config: b.config.clone(),
        covers: b.covers.clone(),
    };
    let k = which % b.funding.len();
    more.funding[k].funds = more.funding[k]
        .funds
        .checked_add(Amount::from_u128(extra))
        .unwrap();
    more
}

/// Payout value per account in 1e-18 numeraire units, exact: A (6 decimals, price 1) is
/// worth 10^12 per base unit, B (18 decimals, price 2000) 2000.
fn values(payouts: &BTreeMap<(Address, String), U256>) -> BTreeMap<Address, U256> {
    let mut m: BTreeMap<Address, U256> = BTreeMap::new();
    for (&(a, ref asset), &v) in payouts {
        let w = if asset == "A" {
            U256::from(10u64.pow(12))
        } else {
            U256::from(2000u32)
        };
        let e = m.entry(a).or_default();
        *e = add(*e, mul(v, w));
    }
    m
}

/// The case the monotonicity properties allow for, found by them in CI: an insurance source
/// between two recovered-funds sources restricted to pool p2. The user (value 5,229.91 A,
/// in the 2 bps tier) claims 1,045,665 in p1 and 316 in p2. Figures by hand:
///
/// - before: s0 (1 unit, p2) pays 1; the insurer's claim is
///   min(cover 67,775, floor((1,045,980 − 869,735) × 3,852 / 10,000) = 67,889) = 67,775,
///   spread in row order, so all to p1; s2 (p2 only) pays p2's last 315. Total 68,091.
/// - s0 + 314: s0 pays 315 of p2; the insurer's claim is
///   floor((1,045,666 − 869,735) × 3,852 / 10,000) = 67,768, now under the cover; s2 pays
///   p2's last 1. Total 68,084: 7 less, exactly what the insurer pays less.
///
/// s0's extra only displaced s2 (which would have paid p2 anyway) but lowered the unpaid
/// amount the insurer's deductible and coinsurance apply to. This is the waterfall as
/// configured (the insurer pays on what is unpaid at its turn), not rounding.
#[test]
fn an_insurer_between_pool_restricted_sources_can_pay_less_when_recoveries_grow() {
    let c = Case {
        rows: vec![(8, 0, 1, 0, 5_228_328_819, 2), (8, 0, 2, 0, 1_580_640, 2)],
        sources: vec![
            (0, 0, 1, None, None, 2, 0, 0),
            (2, 0, 553_669_280, None, None, 3, 869_735, 6_148),
            (0, 0, 267_251, None, None, 2, 0, 0),
        ],
        scope: 0,
        rounding: Rounding::Floor,
        dust: None,
        tier: Some((5230, 2)),
        cap_bps: 10_000,
        covers: vec![(8, 67_775)],
    };
    let b = build(&c);
    let more = with_more(&b, 0, 314);
    let key = (account(8), "A".to_owned());
    let by_source = |r: &PolicyResult| -> Vec<(String, U256)> {
        let u = r.user(0);
        let mut v: BTreeMap<String, U256> = BTreeMap::new();
        for row in u.rows() {
            for p in row.sources() {
                let e = v.entry(p.source.to_string()).or_default();
                *e = add(*e, p.amount.raw());
            }
        }
        v.into_iter().collect()
    };
    let paid = |pairs: [(&str, u32); 3]| -> Vec<(String, U256)> {
        pairs
            .iter()
            .map(|&(s, v)| (s.to_owned(), U256::from(v)))
            .collect()
    };
    let (rb, ra) = (run(&b), run(&more));
    assert_eq!(
        by_source(&rb),
        paid([("s0", 1), ("s1", 67_775), ("s2", 315)])
    );
    assert_eq!(
        by_source(&ra),
        paid([("s0", 315), ("s1", 67_768), ("s2", 1)])
    );
    assert_eq!(payouts(&rb)[&key], U256::from(68_091u32));
    assert_eq!(payouts(&ra)[&key], U256::from(68_084u32));
    assert_eq!(insurance_drop(&rb, &ra, &b)[&key], U256::from(7u32));
}
