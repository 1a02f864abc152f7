//! Policy stage on 1,000,000 claimants × 3 assets: `cargo bench --bench policy`.
//!
//! Times `policy::apply` only (ledger generation excluded), median of 3 runs, for an
//! in-kind waterfall and a global cross-asset one, and prints the JSON size.

use recoup::loss::{LossLedger, LossRow};
use recoup::policy::{
    self, Bounty, CoverList, FundingSource, InsuranceTerms, PolicyConfig, Prices, Rounding, Scope,
    SourceKind,
};
use recoup::primitives::{Address, Amount, Asset, Bps, Decimal};
use std::time::Instant;

const USERS: u32 = 1_000_000;

fn ledger() -> LossLedger {
    let syms = ["DAI", "ETH", "USDC"];
    let mut rows = Vec::with_capacity(USERS as usize * 3);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..USERS {
        let mut b = [0u8; 20];
        b[16..].copy_from_slice(&i.to_be_bytes());
        let account = Address::from(b);
        for (k, s) in syms.iter().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let units = (x % 1_000_000_000) as u128 + 1;
            let (amount, value) = match k {
                0 => (
                    units * 10u128.pow(15),
                    Decimal::from_i128_with_scale(units as i128, 3),
                ),
                1 => (
                    units * 10u128.pow(9),
                    Decimal::from_i128_with_scale(units as i128 * 2000, 9),
                ),
                _ => (units, Decimal::from_i128_with_scale(units as i128, 6)),
            };
            rows.push(LossRow {
                account,
                asset: (*s).into(),
                pool: None,
                class: None,
                amount: Amount::from_u128(amount),
                value,
                exclusion: None,
            });
        }
    }
    LossLedger {
        rows,
        gains: vec![],
    }
}

fn src(id: &str, kind: SourceKind, asset: &str, funds: u128) -> FundingSource {
    FundingSource {
        id: id.into(),
        kind,
        asset: asset.into(),
        funds: Amount::from_u128(funds),
        bounty: (kind == SourceKind::Recovered).then_some(Bounty {
            bps: Bps(1000),
            cap: None,
        }),
        insurance: (kind == SourceKind::Insurance).then_some(InsuranceTerms {
            deductible: Amount::from_u128(1_000_000),
            coinsurance: Bps(1000),
        }),
        pools: None,
        assets: None,
        classes: None,
    }
}

/// CPU time of this process so far, seconds (`/proc/self/schedstat`, Linux): wall time is
/// meaningless on a machine shared with other builds.
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/schedstat").unwrap_or_default();
    s.split_whitespace()
        .next()
        .and_then(|x| x.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9
}

fn time(
    name: &str,
    l: &LossLedger,
    f: &[FundingSource],
    c: &PolicyConfig,
    a: &[Asset],
    p: &Prices,
) {
    let mut t = Vec::new();
    let mut cpu_t = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        drop(last.take());
        let (s, c0) = (Instant::now(), cpu());
        let r = policy::apply(l, f, c, &CoverList::new(), a, p).expect("policy applies");
        t.push(s.elapsed().as_secs_f64());
        cpu_t.push(cpu() - c0);
        last = Some(r);
    }
    cpu_t.sort_by(f64::total_cmp);
    t.sort_by(f64::total_cmp);
    let r = last.expect("ran");
    let s = Instant::now();
    let json = serde_json::to_vec(&r).expect("serializes");
    let ser = s.elapsed().as_secs_f64();
    println!(
        "{name}: {} rows, {} users: apply CPU median {:.3} s (wall median {:.3}, min {:.3}, max {:.3}); serde_json {:.3} s, {} MB",
        l.rows.len(),
        r.user_count(),
        cpu_t[1],
        t[1],
        t[0],
        t[2],
        ser,
        json.len() / 1_000_000
    );
}

fn main() {
    let l = ledger();
    let assets = vec![
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
    ];
    let prices: Prices = [("DAI", 1), ("ETH", 2000), ("USDC", 1)]
        .into_iter()
        .map(|(s, p)| (s.to_owned(), Decimal::from(p)))
        .collect();
    let in_kind = vec![
        src("rec-dai", SourceKind::Recovered, "DAI", 10u128.pow(32)),
        src("rec-eth", SourceKind::Recovered, "ETH", 10u128.pow(26)),
        src("rec-usdc", SourceKind::Recovered, "USDC", 10u128.pow(14)),
        src("treasury", SourceKind::Treasury, "DAI", 10u128.pow(31)),
        src("sherlock", SourceKind::Insurance, "USDC", 10u128.pow(13)),
    ];
    let mut c = PolicyConfig::new(Scope::PerAsset);
    time(
        "per_asset floor, 5 sources",
        &l,
        &in_kind,
        &c,
        &assets,
        &prices,
    );
    c.rounding = Rounding::LargestRemainder;
    time(
        "per_asset largest_remainder, 5 sources",
        &l,
        &in_kind,
        &c,
        &assets,
        &prices,
    );
    let global = vec![
        src("rec-eth", SourceKind::Recovered, "ETH", 10u128.pow(26)),
        src("treasury", SourceKind::Treasury, "USDC", 10u128.pow(14)),
    ];
    let mut c = PolicyConfig::new(Scope::Global);
    c.rounding = Rounding::LargestRemainder;
    time(
        "global largest_remainder cross-asset, 2 sources",
        &l,
        &global,
        &c,
        &assets,
        &prices,
    );
}
