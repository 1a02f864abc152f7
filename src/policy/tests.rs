//! Unit tests: one per feature of the policy, with hand-computed expected payouts.

use super::verify::verify;
use super::*;
use crate::loss::{Exclusion, ExclusionMode, LossLedger, LossRow};
use crate::primitives::{Address, Amount, Asset, Decimal};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    policy: PolicyConfig,
    funding: Vec<FundingSource>,
}

fn tables(s: &str) -> Result<Tables, String> {
    toml::from_str(s).map_err(|e| e.to_string())
}

fn acct(i: u8) -> Address {
    Address::with_last_byte(i)
}

/// A row: account, asset, pool, class, amount (base units). Value = amount (price 1 per
/// base unit is enough for tiers here).
type R<'a> = (u8, &'a str, Option<&'a str>, Option<&'a str>, u128);

fn ledger(rows: &[R<'_>]) -> LossLedger {
    let mut rows: Vec<LossRow> = rows
        .iter()
        .map(|&(a, asset, pool, class, amount)| LossRow {
            account: acct(a),
            asset: asset.into(),
            pool: pool.map(Into::into),
            class: class.map(Into::into),
            amount: Amount::from_u128(amount),
            value: Decimal::from(amount),
            exclusion: None,
        })
        .collect();
    rows.sort_by(|a, b| (a.account, &a.asset, &a.pool).cmp(&(b.account, &b.asset, &b.pool)));
    LossLedger {
        rows,
        gains: vec![],
    }
}

fn assets() -> Vec<Asset> {
    vec![
        Asset {
            symbol: "DAI".into(),
            address: None,
            decimals: 18,
        },
        Asset {
            symbol: "ETH".into(),
            address: None,
            decimals: 18,
        },
        Asset {
            symbol: "USDC".into(),
            address: None,
            decimals: 6,
        },
    ]
}

fn run(l: &LossLedger, t: &str) -> Result<PolicyResult, PolicyError> {
    run_with(l, t, &CoverList::new(), &Prices::new())
}

fn run_with(
    l: &LossLedger,
    t: &str,
    covers: &CoverList,
    prices: &Prices,
) -> Result<PolicyResult, PolicyError> {
    let t = tables(t).expect("tables parse");
    apply(l, &t.funding, &t.policy, covers, &assets(), prices)
}

/// Payout of `asset` to account `a`, base units.
fn paid(r: &PolicyResult, a: u8, asset: &str) -> u128 {
    r.find_user(acct(a))
        .and_then(|u| u.payout(asset))
        .map_or(0, |p| p.raw().to())
}

/// Row `k` of user `u` (users in account order, rows in (asset, pool) order).
fn row(r: &PolicyResult, u: usize, k: usize) -> crate::policy::RowRef<'_> {
    r.user(u).rows().nth(k).expect("the row")
}

fn amt(v: u128) -> Amount {
    Amount::from_u128(v)
}

const IN_KIND: &str = "[policy]\nscope = \"per_asset\"\n";

#[test]
fn bounty_is_taken_first_and_capped() {
    let l = ledger(&[(1, "DAI", None, None, 10_000)]);
    let t = format!("{IN_KIND}[[funding]]\nid = \"wh\"\nkind = \"recovered\"\nasset = \"DAI\"\namount = \"1000\"\nbounty_bps = 1000\n");
    let r = run(&l, &t).unwrap();
    assert_eq!(
        (r.sources[0].bounty, r.sources[0].paid),
        (amt(100), amt(900))
    );
    let r = run(&l, &format!("{t}bounty_cap = \"40\"\n")).unwrap();
    assert_eq!(
        (r.sources[0].bounty, r.sources[0].paid),
        (amt(40), amt(960))
    );
    assert_eq!(paid(&r, 1, "DAI"), 960);
}

#[test]
fn bounty_on_a_treasury_source_is_refused_naming_the_source() {
    let t = format!("{IN_KIND}[[funding]]\nid = \"dao\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"1000\"\nbounty_bps = 1000\n");
    let e = tables(&t).err().unwrap();
    assert!(
        e.contains("funding source `dao`") && e.contains("bounty_bps"),
        "{e}"
    );
}

#[test]
fn insurance_applies_deductible_coinsurance_and_cover() {
    // Loss 1000, deductible 100, coinsurance 20%: claim floor(900 × 0.8) = 720; cover 500 caps user 2.
    let l = ledger(&[
        (1, "USDC", None, None, 1000),
        (2, "USDC", None, None, 1000),
        (3, "USDC", None, None, 1000),
    ]);
    let t = format!(
        "{IN_KIND}[[funding]]\nid = \"cover\"\nkind = \"insurance\"\nasset = \"USDC\"\ncapacity = \"100000\"\ndeductible = \"100\"\ncoinsurance_bps = 2000\n"
    );
    let covers: CoverList = [(
        "cover".to_owned(),
        [(acct(1), amt(10_000)), (acct(2), amt(500))]
            .into_iter()
            .collect(),
    )]
    .into_iter()
    .collect();
    let r = run_with(&l, &t, &covers, &Prices::new()).unwrap();
    assert_eq!(paid(&r, 1, "USDC"), 720);
    assert_eq!(paid(&r, 2, "USDC"), 500);
    assert_eq!(paid(&r, 3, "USDC"), 0, "not on the cover list");
    // Without a cover list every user is covered without limit.
    let r = run(&l, &t).unwrap();
    assert_eq!(
        [
            paid(&r, 1, "USDC"),
            paid(&r, 2, "USDC"),
            paid(&r, 3, "USDC")
        ],
        [720, 720, 720]
    );
}

#[test]
fn insurance_claims_beyond_capacity_are_paid_pro_rata() {
    // Claims 720 and 360 (losses 1000 and 550, deductible 100, 20% coinsurance), capacity 540.
    let l = ledger(&[(1, "USDC", None, None, 1000), (2, "USDC", None, None, 550)]);
    let t = format!(
        "{IN_KIND}[[funding]]\nid = \"cover\"\nkind = \"insurance\"\nasset = \"USDC\"\ncapacity = \"540\"\ndeductible = \"100\"\ncoinsurance_bps = 2000\n"
    );
    let r = run(&l, &t).unwrap();
    assert_eq!((paid(&r, 1, "USDC"), paid(&r, 2, "USDC")), (360, 180));
    assert_eq!(r.sources[0].claims, amt(1080));
    assert_eq!(r.sources[0].left_over, Amount::ZERO);
}

#[test]
fn insurance_pays_only_what_earlier_sources_left_unpaid() {
    // Recovered pays 50% of each loss; insurance (no deductible) then covers the rest.
    let l = ledger(&[(1, "USDC", None, None, 1000), (2, "USDC", None, None, 3000)]);
    let t = format!(
        "{IN_KIND}[[funding]]\nid = \"rec\"\nkind = \"recovered\"\nasset = \"USDC\"\namount = \"2000\"\n\
         [[funding]]\nid = \"cover\"\nkind = \"insurance\"\nasset = \"USDC\"\ncapacity = \"100000\"\n"
    );
    let r = run(&l, &t).unwrap();
    assert_eq!((paid(&r, 1, "USDC"), paid(&r, 2, "USDC")), (1000, 3000));
    assert_eq!(
        (r.sources[0].paid, r.sources[1].paid),
        (amt(2000), amt(2000))
    );
    assert_eq!(r.sources[1].left_over, amt(98_000));
    assert_eq!(
        row(&r, 1, 0)
            .sources()
            .map(|p| p.amount)
            .collect::<Vec<_>>(),
        [amt(1500), amt(1500)]
    );
}

#[test]
fn convenience_tier_is_paid_first_at_its_rate() {
    // Radiant-like: users with loss value <= 1000 get 70%, before the pro rata of the rest.
    let l = ledger(&[
        (1, "DAI", None, None, 500),
        (2, "DAI", None, None, 1000),
        (3, "DAI", None, None, 10_000),
        (4, "DAI", None, None, 30_000),
    ]);
    let t = format!(
        "{IN_KIND}[[policy.tiers]]\nname = \"convenience\"\nmin_value = \"0\"\nmax_value = \"1000\"\npay_bps = 7000\n\
         [[funding]]\nid = \"dao\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"5050\"\n"
    );
    let r = run(&l, &t).unwrap();
    // Tier: 350 + 700 = 1050 first; the remaining 4000 pro rata over 10000 : 30000.
    assert_eq!(
        [
            paid(&r, 1, "DAI"),
            paid(&r, 2, "DAI"),
            paid(&r, 3, "DAI"),
            paid(&r, 4, "DAI")
        ],
        [350, 700, 1000, 3000]
    );
    assert_eq!(r.user(0).tier(), Some("convenience"));
    assert_eq!(r.tiers[0].users, 2);
    assert_eq!(r.tiers[1].users, 2);
}

#[test]
fn junior_round_gets_no_floor_dust_of_an_underfunded_tier_round() {
    // Tier claims 1, 1, 1 (3 users at 100%), funds 2: floor pays 0, 0, 0 and stops there;
    // the big user outside the tier gets nothing, not the 2 units of dust.
    let l = ledger(&[
        (1, "DAI", None, None, 1),
        (2, "DAI", None, None, 1),
        (3, "DAI", None, None, 1),
        (4, "DAI", None, None, 1_000),
    ]);
    let t = format!(
        "{IN_KIND}[[policy.tiers]]\nname = \"small\"\nmin_value = \"0\"\nmax_value = \"10\"\npay_bps = 10000\n\
         [[funding]]\nid = \"dao\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"2\"\n"
    );
    let r = run(&l, &t).unwrap();
    assert_eq!(paid(&r, 4, "DAI"), 0);
    assert_eq!(r.sources[0].left_over, amt(2));
    // Largest remainder hands the 2 units to the tier, ties by account ascending.
    let r = run(
        &l,
        &t.replace(
            "scope = \"per_asset\"",
            "scope = \"per_asset\"\nrounding = \"largest_remainder\"",
        ),
    )
    .unwrap();
    assert_eq!(
        [
            paid(&r, 1, "DAI"),
            paid(&r, 2, "DAI"),
            paid(&r, 3, "DAI"),
            paid(&r, 4, "DAI")
        ],
        [1, 1, 0, 0]
    );
}

#[test]
fn largest_remainder_goes_to_the_largest_remainders_first() {
    // Funds 10 over claims 10, 20, 40 (Σ 70): exact 1.43, 2.86, 5.71 → floor 1, 2, 5 (8);
    // remainders 30/70, 60/70, 50/70 → the 2 units go to users 2 and 3.
    let l = ledger(&[
        (1, "DAI", None, None, 10),
        (2, "DAI", None, None, 20),
        (3, "DAI", None, None, 40),
    ]);
    let t = "[policy]\nscope = \"per_asset\"\nrounding = \"largest_remainder\"\n[[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"10\"\n";
    let r = run(&l, t).unwrap();
    assert_eq!(
        [paid(&r, 1, "DAI"), paid(&r, 2, "DAI"), paid(&r, 3, "DAI")],
        [1, 3, 6]
    );
    let r = run(&l, &t.replace("largest_remainder", "floor")).unwrap();
    assert_eq!(
        [paid(&r, 1, "DAI"), paid(&r, 2, "DAI"), paid(&r, 3, "DAI")],
        [1, 2, 5]
    );
    assert_eq!(r.sources[0].left_over, amt(2));
}

#[test]
fn cap_above_one_pays_up_to_cap_times_loss() {
    // Euler: claim = floor(loss × 1.005); ample funds pay it and report the excess.
    let l = ledger(&[(1, "ETH", None, None, 1000), (2, "ETH", None, None, 2001)]);
    let t = "[policy]\nscope = \"per_asset\"\ncap_bps = 10050\n[[funding]]\nid = \"f\"\nkind = \"recovered\"\nasset = \"ETH\"\namount = \"1000000\"\n";
    let r = run(&l, t).unwrap();
    assert_eq!((paid(&r, 1, "ETH"), paid(&r, 2, "ETH")), (1005, 2011));
    assert_eq!(row(&r, 1, 0).excess(), amt(10));
    assert_eq!(row(&r, 1, 0).haircut(), Amount::ZERO);
}

#[test]
fn per_pool_recovery_goes_to_that_pools_lps_only() {
    let l = ledger(&[
        (1, "DAI", Some("pool-a"), None, 100),
        (2, "DAI", Some("pool-a"), None, 300),
        (3, "DAI", Some("pool-b"), None, 100),
    ]);
    let t = "[policy]\nscope = \"per_pool\"\n[[funding]]\nid = \"a\"\nkind = \"recovered\"\nasset = \"DAI\"\namount = \"200\"\npools = [\"pool-a\"]\n\
             [[funding]]\nid = \"b\"\nkind = \"recovered\"\nasset = \"DAI\"\namount = \"1000\"\npools = [\"pool-b\"]\n";
    let r = run(&l, t).unwrap();
    assert_eq!(
        [paid(&r, 1, "DAI"), paid(&r, 2, "DAI"), paid(&r, 3, "DAI")],
        [50, 150, 100]
    );
    assert_eq!(
        r.sources[1].left_over,
        amt(900),
        "pool b's surplus is not shared with pool a"
    );
    let no_pools = "[policy]\nscope = \"per_pool\"\n[[funding]]\nid = \"a\"\nkind = \"recovered\"\nasset = \"DAI\"\namount = \"200\"\n";
    assert!(matches!(
        run(&l, no_pools),
        Err(PolicyError::ScopeNeedsRestriction { .. })
    ));
}

#[test]
fn per_class_pays_each_class_from_its_own_sources() {
    let l = ledger(&[
        (1, "DAI", None, Some("citadel"), 100),
        (2, "DAI", None, Some("other"), 100),
    ]);
    let t = "[policy]\nscope = \"per_class\"\n[[funding]]\nid = \"full\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"100\"\nclasses = [\"citadel\"]\n\
             [[funding]]\nid = \"part\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"80\"\nclasses = [\"other\"]\n";
    let r = run(&l, t).unwrap();
    assert_eq!((paid(&r, 1, "DAI"), paid(&r, 2, "DAI")), (100, 80));
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[1].haircut, amt(20));
}

#[test]
fn withhold_keeps_the_share_in_the_denominator_redistribute_removes_it() {
    let mut l = ledger(&[
        (1, "DAI", None, None, 100),
        (2, "DAI", None, None, 100),
        (3, "DAI", None, None, 100),
    ]);
    let t = format!("{IN_KIND}[[funding]]\nid = \"f\"\nkind = \"recovered\"\nasset = \"DAI\"\namount = \"150\"\n");
    l.rows[2].exclusion = Some(std::sync::Arc::new(Exclusion {
        reason: "attacker".into(),
        mode: ExclusionMode::Withhold,
    }));
    let r = run(&l, &t).unwrap();
    assert_eq!(
        [paid(&r, 1, "DAI"), paid(&r, 2, "DAI"), paid(&r, 3, "DAI")],
        [50, 50, 0]
    );
    assert_eq!(
        (r.sources[0].withheld, r.sources[0].left_over),
        (amt(50), amt(50))
    );
    assert_eq!(row(&r, 2, 0).status(), RowStatus::ExcludedWithheld);
    l.rows[2].exclusion = Some(std::sync::Arc::new(Exclusion {
        reason: "attacker".into(),
        mode: ExclusionMode::Redistribute,
    }));
    let r = run(&l, &t).unwrap();
    assert_eq!(
        [paid(&r, 1, "DAI"), paid(&r, 2, "DAI"), paid(&r, 3, "DAI")],
        [75, 75, 0]
    );
    assert_eq!(row(&r, 2, 0).claim(), Amount::ZERO);
}

#[test]
fn dust_rule_withholds_or_redistributes_small_losses() {
    let l = ledger(&[
        (1, "DAI", None, None, 5),
        (2, "DAI", None, None, 95),
        (3, "USDC", None, None, 5),
    ]);
    let base =
        "[policy]\nscope = \"per_asset\"\n[policy.dust]\nmode = \"MODE\"\nmin = { DAI = \"10\" }\n\
                [[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"50\"\n";
    let r = run(&l, &base.replace("MODE", "withhold")).unwrap();
    assert_eq!((paid(&r, 1, "DAI"), paid(&r, 2, "DAI")), (0, 47));
    assert_eq!(row(&r, 0, 0).status(), RowStatus::DustWithheld);
    assert_eq!(
        row(&r, 2, 0).status(),
        RowStatus::Paid,
        "no minimum for USDC"
    );
    let r = run(&l, &base.replace("MODE", "redistribute")).unwrap();
    assert_eq!((paid(&r, 1, "DAI"), paid(&r, 2, "DAI")), (0, 50));
}

#[test]
fn global_scope_pays_other_assets_by_value_at_exact_prices() {
    // ETH at 2000, USDC at 1: 1 ETH (1e18 wei) and 1000 USDC (1e9) lost, 1500 USDC of funds
    // → claims 2000 and 1000 USDC, paid 1000 and 500 USDC; the ETH row's covered part is
    // half its wei.
    let l = ledger(&[
        (1, "ETH", None, None, 1_000_000_000_000_000_000),
        (2, "USDC", None, None, 1_000_000_000),
    ]);
    let t = "[policy]\nscope = \"global\"\n[[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"USDC\"\namount = \"1500000000\"\n";
    let prices: Prices = [
        ("ETH".to_owned(), Decimal::from(2000)),
        ("USDC".to_owned(), Decimal::from(1)),
    ]
    .into_iter()
    .collect();
    let r = run_with(&l, t, &CoverList::new(), &prices).unwrap();
    assert_eq!(
        (paid(&r, 1, "USDC"), paid(&r, 2, "USDC")),
        (1_000_000_000, 500_000_000)
    );
    assert_eq!(row(&r, 0, 0).covered(), amt(500_000_000_000_000_000));
    let e = run_with(&l, t, &CoverList::new(), &Prices::new()).unwrap_err();
    assert!(
        matches!(e, PolicyError::MissingPrice { ref missing, .. } if missing == "ETH"),
        "{e}"
    );
}

#[test]
fn config_errors_name_the_source_and_field() {
    let src = |body: &str| {
        format!("{IN_KIND}[[funding]]\nid = \"rec\"\nkind = \"recovered\"\nasset = \"DAI\"\n{body}")
    };
    for (body, field) in [
        ("amount = \"-5\"\n", "amount"),
        ("amount = \"1.5e3\"\n", "amount"),
        ("amount = \"12x\"\n", "amount"),
        ("amount = \"10\"\nbounty_bps = 10001\n", "bounty_bps"),
        ("amount = \"10\"\nbounty_bps = -1\n", "bounty_bps"),
        ("amount = \"10\"\nbounty_cap = \"5\"\n", "bounty_cap"),
        ("", "amount"),
        ("amount = \"10\"\ncapacity = \"10\"\n", "capacity"),
    ] {
        let e = tables(&src(body))
            .err()
            .unwrap_or_else(|| panic!("{body:?} accepted"));
        assert!(
            e.contains("funding source `rec`") && e.contains(&format!("`{field}`")),
            "{body:?}: {e}"
        );
    }
    let ins = format!("{IN_KIND}[[funding]]\nid = \"ins\"\nkind = \"insurance\"\nasset = \"DAI\"\ncapacity = \"10\"\ncoinsurance_bps = 20000\n");
    let e = tables(&ins).err().unwrap();
    assert!(
        e.contains("funding source `ins`") && e.contains("coinsurance_bps"),
        "{e}"
    );
    let unknown = src("amount = \"10\"\nbountybps = 5\n");
    assert!(tables(&unknown).err().unwrap().contains("bountybps"));
    let cap = "[policy]\nscope = \"global\"\ncap_bps = 0\n[[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"1\"\n";
    let l = ledger(&[(1, "DAI", None, None, 1)]);
    assert!(matches!(
        run(&l, cap),
        Err(PolicyError::InvalidField {
            field: "cap_bps",
            ..
        })
    ));
}

#[test]
fn sources_naming_unknown_assets_pools_or_classes_are_refused() {
    let l = ledger(&[(1, "DAI", Some("pool-a"), Some("retail"), 100)]);
    let one = |extra: &str, asset: &str| {
        format!("{IN_KIND}[[funding]]\nid = \"s\"\nkind = \"treasury\"\nasset = \"{asset}\"\namount = \"1\"\n{extra}")
    };
    let e = run(&l, &one("", "WBTC")).unwrap_err();
    assert!(
        matches!(&e, PolicyError::UnknownAsset { asset, field: "asset", .. } if asset == "WBTC"),
        "{e}"
    );
    assert!(e.to_string().contains("funding source `s`"));
    let e = run(&l, &one("pools = [\"pool-z\"]\n", "DAI")).unwrap_err();
    assert!(
        matches!(&e, PolicyError::UnknownGroup { name, field: "pools", .. } if name == "pool-z"),
        "{e}"
    );
    assert!(
        e.to_string().contains("pool-a"),
        "lists the known pools: {e}"
    );
    let e = run(&l, &one("classes = [\"whales\"]\n", "DAI")).unwrap_err();
    assert!(matches!(
        e,
        PolicyError::UnknownGroup {
            field: "classes",
            ..
        }
    ));
    let e = run(&l, &one("assets = [\"XYZ\"]\n", "DAI")).unwrap_err();
    assert!(matches!(
        e,
        PolicyError::UnknownAsset {
            field: "assets",
            ..
        }
    ));
    let twice = format!(
        "{}{}",
        one("", "DAI"),
        "[[funding]]\nid = \"s\"\nkind = \"loan\"\nasset = \"DAI\"\namount = \"1\"\n"
    );
    assert!(matches!(
        run(&l, &twice),
        Err(PolicyError::DuplicateSource(_))
    ));
    let covers: CoverList = [("s".to_owned(), BTreeMap::new())].into_iter().collect();
    assert!(matches!(
        run_with(&l, &one("", "DAI"), &covers, &Prices::new()),
        Err(PolicyError::CoverForNonInsurance(_))
    ));
}

#[test]
fn duplicate_ledger_rows_are_refused() {
    let mut l = ledger(&[(1, "DAI", None, None, 1), (2, "DAI", None, None, 1)]);
    l.rows.push(l.rows[0].clone());
    let t = format!(
        "{IN_KIND}[[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"1\"\n"
    );
    assert!(matches!(run(&l, &t), Err(PolicyError::DuplicateRow { .. })));
}

#[test]
fn overlapping_tiers_are_refused() {
    let t = "[policy]\nscope = \"global\"\n[[policy.tiers]]\nname = \"a\"\nmin_value = \"0\"\nmax_value = \"100\"\npay_bps = 5000\n\
             [[policy.tiers]]\nname = \"b\"\nmin_value = \"100\"\nmax_value = \"200\"\npay_bps = 5000\n\
             [[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"1\"\n";
    let l = ledger(&[(1, "DAI", None, None, 1)]);
    assert!(matches!(
        run(&l, t),
        Err(PolicyError::InvalidField {
            field: "min_value",
            ..
        })
    ));
}

#[test]
fn tampered_results_fail_the_conservation_checks() {
    let l = ledger(&[(1, "DAI", None, None, 100), (2, "DAI", None, None, 300)]);
    let t = tables(&format!("{IN_KIND}[[funding]]\nid = \"f\"\nkind = \"treasury\"\nasset = \"DAI\"\namount = \"200\"\n")).unwrap();
    let good = apply(
        &l,
        &t.funding,
        &t.policy,
        &CoverList::new(),
        &assets(),
        &Prices::new(),
    )
    .unwrap();
    assert!(good
        .checks
        .iter()
        .any(|c| c.subject == "funding source `f`"));

    // One more unit to a user than the source paid.
    let mut bad = good.clone();
    assert_eq!(
        bad.table.pay_amount.get(0),
        amt(50),
        "user 1's one allocation"
    );
    bad.table.pay_amount.set(0, amt(51));
    let e = verify(&bad, &l.rows, &t.funding, &t.policy).unwrap_err();
    assert!(matches!(e, PolicyError::Invariant { .. }), "{e}");
    // A source paying beyond its funds.
    let mut bad = good.clone();
    bad.sources[0].left_over = amt(1);
    assert!(verify(&bad, &l.rows, &t.funding, &t.policy).is_err());
    // A row's settled amount that its allocations do not add up to.
    let mut bad = good.clone();
    assert_eq!(bad.table.row_settled.get(1), amt(150));
    bad.table.row_settled.set(1, amt(149));
    assert!(verify(&bad, &l.rows, &t.funding, &t.policy).is_err());
    // A group haircut that does not add up.
    let mut bad = good.clone();
    bad.groups[0].haircut = amt(1);
    assert!(verify(&bad, &l.rows, &t.funding, &t.policy).is_err());
    // A payout above the claim.
    let mut bad = good;
    bad.table.row_claim.set(0, amt(10));
    assert!(verify(&bad, &l.rows, &t.funding, &t.policy).is_err());
}

#[test]
fn the_error_reported_is_the_first_met_row_by_row_and_user_by_user() {
    // Rows are made, claims converted and insurance claims taken on every thread; on a
    // failure the walk in row (user) order names the error, as the one-thread engine did.
    let usd: Prices = [("USDC".to_owned(), Decimal::from(1))]
        .into_iter()
        .collect();
    let insurance = "[policy]\nscope = \"global\"\n[[funding]]\nid = \"cover\"\nkind = \"insurance\"\nasset = \"USDC\"\ncapacity = \"1000000\"\n";
    let l = ledger(&[
        (1, "USDC", None, None, 5_000_000),
        (2, "ETH", None, None, 1_000),
        (3, "USDC", None, None, 7_000_000),
    ]);
    let e = run_with(&l, insurance, &CoverList::new(), &usd).unwrap_err();
    assert!(
        matches!(&e, PolicyError::MissingPrice { missing, source_id, .. } if missing == "ETH" && source_id == "cover"),
        "{e}"
    );
    let treasury = "[policy]\nscope = \"global\"\n[[funding]]\nid = \"t\"\nkind = \"treasury\"\nasset = \"USDC\"\namount = \"1000000\"\n";
    let e = run_with(&l, treasury, &CoverList::new(), &usd).unwrap_err();
    assert!(
        matches!(&e, PolicyError::MissingPrice { missing, source_id, .. } if missing == "ETH" && source_id == "t"),
        "{e}"
    );

    // A row of an unknown asset, and a user whose loss value overflows a decimal: whichever
    // comes first in (account, asset, pool) order is reported.
    let big = 50_000_000_000_000_000_000_000_000_000u128; // 5 × 10^28: two overflow a Decimal
    let overflow_first = ledger(&[
        (1, "DAI", None, None, big),
        (1, "USDC", None, None, big),
        (2, "XYZ", None, None, 1),
    ]);
    let e = run(&overflow_first, treasury).unwrap_err();
    assert!(matches!(e, PolicyError::ValueOverflow(_)), "{e}");
    let unknown_first = ledger(&[
        (1, "XYZ", None, None, 1),
        (2, "DAI", None, None, big),
        (2, "USDC", None, None, big),
    ]);
    let e = run(&unknown_first, treasury).unwrap_err();
    assert!(
        matches!(&e, PolicyError::UnknownAsset { table, asset, .. } if table == "loss ledger" && asset == "XYZ"),
        "{e}"
    );
}
