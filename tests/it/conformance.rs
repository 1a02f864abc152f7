//! Real incidents reproduce exactly, through the manifest and the whole pipeline.

use crate::support;
use recoup::manifest::Manifest;
use recoup::pipeline;
use recoup::primitives::{parse_address, Amount};
use std::collections::BTreeMap;
use std::path::Path;

fn project(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `address = amount` lines of the published tables.
fn address_map(path: &Path) -> BTreeMap<recoup::primitives::Address, Amount> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (
                parse_address(k.trim()).unwrap(),
                v.trim().parse::<Amount>().unwrap(),
            )
        })
        .collect()
}

#[test]
fn eminence_2020_reproduces_payouts_and_merkle_distribution_byte_for_byte() {
    let Some(dir) = support::shared_data("incidents/eminence-2020") else {
        return;
    };
    let m = Manifest::load(&project("models/incidents/eminence-2020.toml")).unwrap();
    let out = pipeline::run(&m).unwrap();

    // 06: every paid user, exactly.
    let expected = address_map(&dir.join("06-dai-pro-rata.toml"));
    assert_eq!(expected.len(), 3654);
    let got: BTreeMap<_, _> = out
        .policy
        .users()
        .filter_map(|u| {
            u.payouts()
                .find(|p| p.asset == "DAI")
                .map(|p| (u.account(), p.amount))
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "number of paid users");
    for (a, amt) in &expected {
        assert_eq!(got.get(a), Some(amt), "payout of {a}");
    }
    // All 3,674 loss rows stay in the ledger; 20 are withheld dust.
    assert_eq!(out.ledger.rows.len(), 3674);

    // 07: the Uniswap merkle-distributor file, byte for byte, and its root.
    let tree = &out.trees[0].tree;
    assert_eq!(
        tree.root().to_string(),
        "0xe0c22845962d3a30f85ab8c82e4a9dd9dab8d687d8d47a0a8bc0385f8e0454fc"
    );
    let published = std::fs::read_to_string(dir.join("07-merkle-distribution.json")).unwrap();
    let ours = tree.to_json();
    assert_eq!(
        ours.trim_end(),
        published.trim_end(),
        "07-merkle-distribution.json differs"
    );
}

#[test]
fn eminence_2020_run_output_is_independent_of_row_order() {
    let Some(dir) = support::shared_data("incidents/eminence-2020") else {
        return;
    };
    let tmp = support::tempdir();
    // The published file numbers ties in input order; with the default order (ascending
    // account) the output must not depend on row order at all.
    let published = dir.join("05-dai-with-lp.toml");
    let manifest = std::fs::read_to_string(project("models/incidents/eminence-2020.toml"))
        .unwrap()
        .replace("sort_leaves = false", "")
        .replace("order = \"amount-desc\"", "");
    assert!(!manifest.contains("amount-desc"));
    let text = std::fs::read_to_string(&published).unwrap();
    let reversed: Vec<&str> = text.lines().rev().collect();
    std::fs::write(tmp.path().join("losses.toml"), reversed.join("\n")).unwrap();
    let rel = "../../../shared/data/incidents/eminence-2020/05-dai-with-lp.toml";
    std::fs::write(
        tmp.path().join("original.toml"),
        manifest.replace(rel, published.to_str().unwrap()),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("reversed.toml"),
        manifest.replace(rel, "losses.toml"),
    )
    .unwrap();
    let a = pipeline::run(&Manifest::load(&tmp.path().join("original.toml")).unwrap()).unwrap();
    let b = pipeline::run(&Manifest::load(&tmp.path().join("reversed.toml")).unwrap()).unwrap();
    assert_eq!(a.trees[0].tree.root(), b.trees[0].tree.root());
    assert!(
        a.trees[0].tree.to_json() == b.trees[0].tree.to_json(),
        "tree file depends on row order"
    );
    assert!(
        serde_json::to_string(&a.policy).unwrap() == serde_json::to_string(&b.policy).unwrap(),
        "policy result depends on row order"
    );
}

#[test]
fn anvil_vault_drain_manifest_turns_node_diffs_into_exact_losses_and_a_claim_tree() {
    let Some(_) = support::shared_data("traces/anvil-vault-drain") else {
        return;
    };
    let m = Manifest::load(&project("models/incidents/anvil-vault-drain.toml")).unwrap();
    let out = pipeline::run(&m).unwrap();
    // Four depositors lost through the share price; the vault itself is not a loser.
    let losses: BTreeMap<_, _> = out
        .ledger
        .rows
        .iter()
        .map(|r| (r.account, r.amount))
        .collect();
    let e18 = |n: u64| {
        Amount::from(n)
            .checked_mul(
                recoup::primitives::U256::from(10u64).pow(recoup::primitives::U256::from(18u8)),
            )
            .unwrap()
    };
    let who = |s: &str| parse_address(s).unwrap();
    assert_eq!(losses.len(), 4, "{losses:?}");
    assert_eq!(
        losses[&who("0x70997970c51812dc3a010c7d01b50e0d17dc79c8")],
        e18(930)
    );
    assert_eq!(
        losses[&who("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc")],
        e18(2790)
    );
    assert_eq!(
        losses[&who("0x90f79bf6eb2c4f870365e785982e1f101e93b906")],
        e18(400)
    );
    assert_eq!(
        losses[&who("0x15d34aaf54267db7d7c367839aaf71a00a2c6a65")],
        e18(800)
    );
    // The attacker's gain is reported, equals the total loss, and is never a loss.
    let total = Amount::checked_sum(losses.values().copied()).unwrap();
    let gain = out
        .ledger
        .gains
        .iter()
        .find(|g| g.account == who("0xa0ee7a142d267c1f36714e4a8f75612f20a79720"))
        .unwrap();
    assert_eq!(gain.amount, total);
    // Half is covered: the tree pays exactly the 2,460 TUSD grant, half of each loss.
    let tree = &out.trees[0];
    assert_eq!(tree.tree.total(), e18(2460));
    for e in &tree.entries {
        assert_eq!(
            e.amount.checked_add(e.amount).unwrap(),
            losses[&e.account],
            "half of {}",
            e.account
        );
    }
    assert!(out.unmatched_slots.is_empty());
}

#[test]
fn beanstalk_2022_both_published_roots_through_the_pipeline() {
    let Some(dir) = support::shared_data("incidents/beanstalk-2022") else {
        return;
    };
    let m = Manifest::load(&project("models/incidents/beanstalk-2022.toml")).unwrap();
    let out = pipeline::run(&m).unwrap();
    let root = |file: &str| {
        out.trees
            .iter()
            .find(|t| t.spec.file == file)
            .unwrap()
            .tree
            .root()
            .to_string()
    };
    assert_eq!(
        root("unripe-beans-merkle.json"),
        "0x4387a1240f0b31c891fabe2eb6dabe6089dd3eba0a8730f7da6d6d3580e8880a"
    );
    assert_eq!(
        root("unripe-bean3crv-merkle.json"),
        "0xbcad44f78fd24cc53104883e6c8badbc8dbd1c60283c85d3a584f9215f2cb086"
    );
    // Every row of the published CSV is paid exactly, in the CSV's order.
    let csv = std::fs::read_to_string(dir.join("unripe-beans.csv")).unwrap();
    let rows: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (a, v) = l.split_once(',').unwrap();
            (a.to_lowercase(), v.trim().to_owned())
        })
        .collect();
    let t = out
        .trees
        .iter()
        .find(|t| t.spec.file == "unripe-beans-merkle.json")
        .unwrap();
    let paid: Vec<(String, String)> = t
        .entries
        .iter()
        .map(|e| (format!("{:#x}", e.account), e.amount.to_string()))
        .collect();
    assert_eq!(paid.len(), rows.len());
    assert!(
        paid == rows,
        "payouts differ from the published list or its order"
    );
}
