//! Generates a realistic, reproducible incident for recoup: the bundled example and the
//! 1,000,000-claimant benchmark input.
//!
//! Scenario ("Harbor Finance", a lending protocol on Ethereum mainnet):
//! - an ERC-4626 vault `hvUSDC` is drained: its holders' shares do not move, their price
//!   per share falls (share-price losses); one holder is a staking gauge, looked through
//!   to its stakers;
//! - a router approval drain takes USDC and WETH directly out of users' wallets (balance
//!   snapshots before and after);
//! - some users withdrew from the vault after the exploit (netting);
//! - the attacker returns part of the funds for a 10% bounty (capped); the treasury adds
//!   USDC; an insurance pool covers the users on its cover list (deductible, co-insurance);
//! - small claims get a convenience tier; dust under $1 is withheld.
//!
//! Usage: `cargo run --release --example gen_incident -- OUT_DIR [--users N] [--assets 2|3] [--seed S]`
//! Deterministic: the same arguments write the same bytes.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// SplitMix64: tiny, deterministic, good enough for fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Log-uniform integer in [lo, hi): most holders are small, a few are whales.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> u128 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (lo.ln() + u * (hi.ln() - lo.ln())).exp() as u128
    }
    fn address(&mut self) -> [u8; 20] {
        let mut a = [0u8; 20];
        for chunk in a.chunks_mut(8) {
            let v = self.next().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        a
    }
}

fn checksum(a: &[u8; 20]) -> String {
    alloy_primitives::Address::from(*a).to_checksum(None)
}

struct Args {
    out: PathBuf,
    users: usize,
    assets: usize,
    seed: u64,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        out: PathBuf::new(),
        users: 300,
        assets: 2,
        seed: 2026,
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--users" => a.users = it.next().and_then(|v| v.parse().ok()).expect("--users N"),
            "--assets" => {
                a.assets = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--assets 2|3")
            }
            "--seed" => a.seed = it.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            _ if a.out.as_os_str().is_empty() => a.out = PathBuf::from(x),
            other => panic!("unexpected argument {other:?}"),
        }
    }
    assert!(
        !a.out.as_os_str().is_empty(),
        "usage: gen_incident OUT_DIR [--users N] [--assets 2|3] [--seed S]"
    );
    assert!(a.assets == 2 || a.assets == 3, "--assets must be 2 or 3");
    a
}

fn create(dir: &Path, name: &str) -> BufWriter<std::fs::File> {
    BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dir.join(name)).expect("create output file"),
    )
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("create output directory");
    let mut rng = Rng(args.seed);
    let n = args.users;
    let users: Vec<[u8; 20]> = (0..n).map(|_| rng.address()).collect();
    let attacker = rng.address();
    let gauge = rng.address();

    // Assets: (symbol, decimals, price, whale scale in tokens)
    let mut assets = vec![
        ("USDC", 6u32, "1.00", 250_000.0),
        ("WETH", 18, "2450.00", 120.0),
    ];
    if args.assets == 3 {
        assets.push(("DAI", 18, "1.00", 200_000.0));
    }

    // 1. Vault holders (share-price loss): about 60% of users, plus the gauge.
    let share_unit = 10u128.pow(6); // hvUSDC has 6 decimals like its underlying
    let mut vault = create(&args.out, "vault_holders.csv");
    writeln!(vault, "account,shares").unwrap();
    let mut held: u128 = 0;
    let mut vault_holders = Vec::new();
    for u in &users {
        if rng.below(10) < 6 {
            let s = rng.log_uniform(5.0, 400_000.0) * share_unit
                + u128::from(rng.below(share_unit as u64));
            held += s;
            vault_holders.push(*u);
            writeln!(vault, "{},{}", checksum(u), s).unwrap();
        }
    }
    let gauge_shares = (held / 7) + 123_456;
    held += gauge_shares;
    writeln!(vault, "{},{}", checksum(&gauge), gauge_shares).unwrap();
    vault.flush().unwrap();
    // Totals: price per share 1.0412 before; the drain takes 71% of the assets.
    let supply_before = held + held / 50; // 2% of shares sit with holders who lost nothing listed
    let assets_before = supply_before * 10_412 / 10_000;
    let assets_after = assets_before - assets_before * 71 / 100;
    let supply_after = supply_before;

    // 2. Gauge stakers (look-through): 40 users stake hvUSDC in the gauge.
    let mut g = create(&args.out, "gauge_stakers.csv");
    writeln!(g, "account,balance").unwrap();
    let stakers = n.min(40);
    for u in users.iter().rev().take(stakers) {
        writeln!(
            g,
            "{},{}",
            checksum(u),
            rng.log_uniform(10.0, 50_000.0) * share_unit
        )
        .unwrap();
    }
    g.flush().unwrap();

    // 3. Approval drain: about 45% of users lose wallet tokens directly.
    let mut b = create(&args.out, "wallet_balances.csv");
    writeln!(b, "account,asset,before,after").unwrap();
    let scale_full = args.users >= 100_000; // the benchmark: every user holds every asset
    for u in &users {
        for (sym, dec, _, whale) in &assets {
            if !scale_full && rng.below(100) >= 45 {
                continue;
            }
            let unit = 10u128.pow(*dec);
            let before = rng.log_uniform(0.2, *whale) * unit + u128::from(rng.next()) % unit;
            let lost_pct = if rng.below(4) == 0 {
                100
            } else {
                20 + rng.below(80) as u128
            };
            let after = before - before * lost_pct / 100;
            writeln!(b, "{},{},{},{}", checksum(u), sym, before, after).unwrap();
        }
    }
    // The attacker's wallet gains (reported as a gain, never a loss).
    writeln!(b, "{},USDC,0,1834250120000", checksum(&attacker)).unwrap();
    b.flush().unwrap();

    // 4. Netting: 8% of vault holders withdrew part of their position after the exploit
    //    at the post-exploit price.
    let mut w = create(&args.out, "post_exploit_withdrawals.csv");
    writeln!(w, "account,asset,amount,pool,kind").unwrap();
    for u in &vault_holders {
        if rng.below(100) >= 8 {
            continue;
        }
        writeln!(
            w,
            "{},USDC,{},hvUSDC,withdrawal",
            checksum(u),
            rng.log_uniform(1.0, 5_000.0) * share_unit
        )
        .unwrap();
    }
    w.flush().unwrap();

    // 5. Cover list: 12% of users bought cover from the Harbor Cover pool.
    let mut c = create(&args.out, "harbor_cover.csv");
    writeln!(c, "account,amount").unwrap();
    for u in &users {
        if rng.below(100) >= 12 {
            continue;
        }
        writeln!(
            c,
            "{},{}",
            checksum(u),
            (1 + rng.below(50)) as u128 * 1_000 * share_unit
        )
        .unwrap();
    }
    c.flush().unwrap();

    let extra_asset = if args.assets == 3 {
        "\n[[assets]]\nsymbol = \"DAI\"\naddress = \"0x6B175474E89094C44Da98b954EedeAC495271d0F\"\ndecimals = 18\nprice = \"1.00\"\nprice_source = \"Chainlink DAI/USD at the snapshot block\"\nprice_block = 21850000\n"
    } else {
        ""
    };
    let (recovered_usdc, treasury_usdc, cover_cap, recovered_weth) = if scale_full {
        // The benchmark: funds scaled to about a third of the losses.
        (
            (n as u128) * 30_000 * share_unit,
            (n as u128) * 15_000 * share_unit,
            (n as u128) * 4_000 * share_unit,
            (n as u128) * 2 * 10u128.pow(18),
        )
    } else {
        (
            3_000_000 * share_unit,
            1_500_000 * share_unit,
            400_000 * share_unit,
            300 * 10u128.pow(18),
        )
    };
    let manifest = MANIFEST
        .replace("{users}", &n.to_string())
        .replace("{extra_asset}", extra_asset)
        .replace("{assets_before}", &assets_before.to_string())
        .replace("{supply_before}", &supply_before.to_string())
        .replace("{assets_after}", &assets_after.to_string())
        .replace("{supply_after}", &supply_after.to_string())
        .replace("{gauge}", &checksum(&gauge))
        .replace("{bot}", &checksum(&users[0])) // the first user is the excluded MEV bot
        .replace("{attacker}", &checksum(&attacker))
        .replace("{recovered_usdc}", &recovered_usdc.to_string())
        .replace("{recovered_weth}", &recovered_weth.to_string())
        .replace("{treasury_usdc}", &treasury_usdc.to_string())
        .replace("{cover_cap}", &cover_cap.to_string());
    std::fs::write(args.out.join("incident.toml"), manifest).expect("write incident.toml");
    eprintln!("wrote {} users to {}", n, args.out.display());
}

/// The manifest template. Every number a reader might question says where it comes from.
const MANIFEST: &str = r#"# Harbor Finance hvUSDC vault drain and router approval drain (synthetic, generated by
# `cargo run --release --example gen_incident`; {users} users). Every section is documented
# in the README's "Incident manifest" part.

[incident]
id = "harbor-2026"
name = "Harbor Finance hvUSDC drain"
chain_id = 1
snapshot_block = 21849999          # last block before the first attack transaction
post_block = 21850040              # after the attacker's last transaction
numeraire = "USD"
description = """
On block 21850000 an attacker drained 71% of the hvUSDC vault through a price-manipulation
bug and, in the same transactions, used a stale router approval to pull USDC and WETH from
wallets. The attacker returned part of the funds for a 10% white-hat bounty (capped at
250,000 USDC). The treasury and the Harbor Cover pool fund the rest of this plan."""

[[assets]]
symbol = "USDC"
address = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
decimals = 6
price = "1.00"
price_source = "Chainlink USDC/USD at the snapshot block"
price_block = 21849999

[[assets]]
symbol = "WETH"
address = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
decimals = 18
price = "2450.00"
price_source = "Chainlink ETH/USD at the snapshot block"
price_block = 21849999
{extra_asset}
[[inputs.balances]]                # wallet balances before/after the approval drain
path = "wallet_balances.csv"
pool = "router-approvals"

[[inputs.netting]]                 # withdrawals from the vault after the exploit
path = "post_exploit_withdrawals.csv"

[[inputs.covers]]                  # who bought cover from Harbor Cover, and how much
source = "harbor-cover"
path = "harbor_cover.csv"

[[vaults]]                         # share-price loss: the holders' shares never moved
name = "hvUSDC"
underlying = "USDC"
total_assets_before = "{assets_before}"   # totalAssets() at the snapshot block
total_supply_before = "{supply_before}"   # totalSupply() at the snapshot block
total_assets_after = "{assets_after}"
total_supply_after = "{supply_after}"
holders = "vault_holders.csv"

[[wrappers]]                       # the staking gauge holds hvUSDC for its stakers
name = "hvUSDC staking gauge"
address = "{gauge}"
holders = "gauge_stakers.csv"

[[exclusions]]
account = "{bot}"
reason = "MEV bot that back-ran the exploit; excluded by governance vote"
mode = "redistribute"

# The waterfall, in order. Amounts are base units.
[[funding]]
id = "returned-usdc"
kind = "recovered"
asset = "USDC"
amount = "{recovered_usdc}"
bounty_bps = 1000                  # 10% white-hat bounty ...
bounty_cap = "250000000000"        # ... capped at 250,000 USDC
assets = ["USDC"]                  # returned in kind: pays USDC losses only

[[funding]]
id = "returned-weth"
kind = "recovered"
asset = "WETH"
amount = "{recovered_weth}"
bounty_bps = 1000
assets = ["WETH"]

[[funding]]
id = "harbor-cover"
kind = "insurance"
asset = "USDC"
capacity = "{cover_cap}"
deductible = "500000000"           # 500 USDC per claimant
coinsurance_bps = 1000             # the insured keeps 10% of the loss above the deductible

[[funding]]
id = "treasury"
kind = "treasury"
asset = "USDC"
amount = "{treasury_usdc}"

[policy]
scope = "global"                   # one pro rata over every loss, by value
rounding = "largest_remainder"
cap_bps = 10000

[policy.dust]                      # too small to be worth the claim gas
mode = "withhold"
min = { USDC = "1000000", WETH = "400000000000000" }

[[policy.tiers]]                   # convenience class, paid first
name = "convenience"
min_value = "1"
max_value = "500"
pay_bps = 8000

[outputs]
dir = "out/harbor-2026"

[[outputs.trees]]
format = "oz-standard"
leaf_encoding = ["address", "uint256"]
asset = "USDC"
file = "usdc-claims.json"

[[outputs.trees]]
format = "oz-standard"
leaf_encoding = ["address", "uint256"]
asset = "WETH"
file = "weth-claims.json"

[[outputs.trees]]
format = "uniswap"
asset = "USDC"
file = "usdc-merkle-distributor.json"
"#;
