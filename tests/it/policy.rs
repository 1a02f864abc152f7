//! Policy stage: the Eminence 2020 plan reproduced exactly, and properties of the
//! waterfall and allocation on random ledgers.

use proptest::prelude::*;
use recoup::loss::{Exclusion, ExclusionMode, LossLedger, LossRow};
use recoup::policy::{self, CoverList, FundingSource, PolicyConfig, PolicyResult, Prices, Rounding, Scope, SourceKind};
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
        panic!("{} is missing: CI must provide the shared real-data folder beside the checkout", p.display());
    }
    eprintln!("skipping: {} not present (set CI to make this a failure)", p.display());
    None
}

/// `address = amount` lines of the Eminence pipeline (DAI wei; beyond i64, so u128).
fn read_balances(path: &std::path::Path) -> BTreeMap<Address, u128> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let raw: BTreeMap<String, u128> = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.into_iter()
        .map(|(k, v)| (parse_address(&k).unwrap_or_else(|e| panic!("{}: {k}: {e}", path.display())), v))
        .collect()
}

fn dai() -> Asset {
    Asset { symbol: "DAI".into(), address: None, decimals: 18 }
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
    let r = policy::apply(&ledger, &t.funding, &t.policy, &CoverList::new(), &[dai()], &Prices::new()).expect("policy applies");
    Some((r, expected, losses.len()))
}

fn check_eminence(r: &PolicyResult, expected: &BTreeMap<Address, u128>, n: usize) {
    assert_eq!(r.users.len(), n);
    let mut paid: BTreeMap<Address, u128> = BTreeMap::new();
    let mut dust = 0;
    for u in &r.users {
        match u.payouts.as_slice() {
            [] => {
                assert_eq!(u.rows[0].status, policy::RowStatus::DustWithheld, "{} unpaid but not dust", u.account);
                assert!(u.rows[0].loss < Amount::from(1_000_000_000_000_000_000u64));
                dust += 1;
            }
            [p] => {
                assert_eq!(p.asset, "DAI");
                paid.insert(u.account, p.amount.raw().to());
            }
            more => panic!("{}: {} payout assets", u.account, more.len()),
        }
    }
    assert_eq!(dust, 20, "dust rows withheld");
    for (a, want) in expected {
        assert_eq!(paid.get(a), Some(want), "payout of {a} differs from 06-dai-pro-rata.toml");
    }
    assert_eq!(paid.len(), expected.len(), "accounts paid beyond 06-dai-pro-rata.toml");
    // The published tokenTotal of 07-merkle-distribution.json.
    let total = Amount::new(U256::from(7_999_999_507_738_692_886_419_846u128));
    assert_eq!(r.sources[0].paid, total);
    assert_eq!(r.payouts[0].amount, total);
    assert_eq!(r.sources[0].left_over, Amount::from_u128(8_000_000_000_000_000_000_000_000 - 7_999_999_507_738_692_886_419_846));
    assert!(!r.sources[0].withheld.is_zero(), "the dust rows' shares are withheld, not redistributed");
}

#[test]
fn eminence_2020_floor_pro_rata_with_withheld_dust_reproduces_06_exactly() {
    let Some((r, expected, n)) = eminence_run(EMINENCE_TABLES) else { return };
    check_eminence(&r, &expected, n);
}

#[test]
fn eminence_2020_global_scope_pays_the_same_as_in_kind() {
    let tables = EMINENCE_TABLES.replace("per_asset", "global");
    let Some((r, expected, n)) = eminence_run(&tables) else { return };
    check_eminence(&r, &expected, n);
}

#[test]
fn eminence_2020_redistributing_the_dust_pays_out_more_than_06() {
    let tables = EMINENCE_TABLES.replace("mode = \"withhold\"", "mode = \"redistribute\"");
    let Some((r, expected, _)) = eminence_run(&tables) else { return };
    let more = r.users.iter().filter(|u| u.payouts.first().is_some_and(|p| p.amount.raw() > U256::from(expected[&u.account]))).count();
    assert!(more > 3_000, "redistribution should raise most payouts, raised {more}");
    assert!(r.sources[0].withheld.is_zero());
}
