//! The bundled example end to end: determinism across row order and thread counts,
//! and the invariants a published plan must satisfy.

use crate::support;
use recoup::manifest::Manifest;
use recoup::pipeline;
use recoup::primitives::Amount;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/harbor-2026")
}

fn run_cli(dir: &Path, manifest: &Path, threads: &str) -> BTreeMap<String, Vec<u8>> {
    let out = dir.join(format!("out-{threads}"));
    let st = Command::new(env!("CARGO_BIN_EXE_recoup"))
        .env("RAYON_NUM_THREADS", threads)
        .args(["-q", "run", "--no-store", "--out"])
        .arg(&out)
        .arg(manifest)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Copies the example with every CSV's data rows reversed.
fn reversed_copy(to: &Path) -> PathBuf {
    for e in std::fs::read_dir(example()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = if p.extension().is_some_and(|x| x == "csv") {
            let mut lines: Vec<&str> = text.lines().collect();
            lines[1..].reverse();
            lines.join("\n") + "\n"
        } else {
            text
        };
        std::fs::write(to.join(name), text).unwrap();
    }
    to.join("incident.toml")
}

fn without_run_id(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| !l.contains("run_id") && !l.contains("Run id"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_outputs_are_identical_across_row_order_and_thread_counts() {
    let tmp = support::tempdir();
    let one = run_cli(tmp.path(), &example().join("incident.toml"), "1");
    let two = run_cli(tmp.path(), &example().join("incident.toml"), "2");
    assert_eq!(one, two, "1 and 2 threads must give byte-identical outputs");
    let rdir = tmp.path().join("reversed");
    std::fs::create_dir(&rdir).unwrap();
    let rev = run_cli(&rdir, &reversed_copy(&rdir), "2");
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        rev.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &one {
        if name == "summary.json" || name == "report.md" {
            // The run id hashes the input bytes, which differ; everything else must not.
            assert_eq!(
                without_run_id(bytes),
                without_run_id(&rev[name]),
                "{name} differs with reversed rows"
            );
        } else {
            assert_eq!(bytes, &rev[name], "{name} differs with reversed rows");
        }
    }
}

#[test]
fn example_satisfies_the_published_plan_invariants() {
    let m = Manifest::load(&example().join("incident.toml")).unwrap();
    let out = pipeline::run(&m).unwrap();
    // Every source pays at most its funds net of the bounty, and the bounty respects its cap.
    for s in &out.policy.sources {
        let budget = s.funds.checked_sub(s.bounty).unwrap();
        assert!(s.paid <= budget, "source {} overpaid", s.id);
        assert_eq!(
            s.bounty
                .checked_add(s.paid)
                .unwrap()
                .checked_add(s.left_over)
                .unwrap(),
            s.funds,
            "source {} does not balance",
            s.id
        );
    }
    let returned = out
        .policy
        .sources
        .iter()
        .find(|s| s.id == "returned-usdc")
        .unwrap();
    assert_eq!(
        returned.bounty,
        Amount::from(250_000_000_000u64),
        "10% of 3M USDC is capped at 250,000 USDC"
    );
    // Each tree pays exactly what the policy paid in its asset, to exactly the paid users.
    for t in &out.trees {
        let paid = out
            .policy
            .payouts
            .iter()
            .find(|p| *p.asset == *t.asset)
            .unwrap()
            .amount;
        assert_eq!(t.tree.total(), paid, "tree {} total", t.spec.file);
        let n = out
            .policy
            .users()
            .filter(|u| {
                u.payouts()
                    .any(|p| p.asset == t.asset && !p.amount.is_zero())
            })
            .count();
        assert_eq!(t.tree.len(), n);
    }
    // No user is paid more than their claim; the excluded bot is paid nothing.
    let bot = m.exclusions[0].account;
    for u in out.policy.users() {
        for r in u.rows() {
            assert!(
                r.covered() <= r.claim(),
                "{} covered above claim",
                u.account()
            );
        }
        if u.account() == bot {
            assert_eq!(u.payouts().len(), 0, "excluded account was paid");
        }
    }
    // Every loss row has one outcome in the policy result, so the count the report states
    // (`loss_rows()`, read from the policy result) is the ledger's.
    assert_eq!(out.loss_rows(), out.ledger.rows.len());
    assert_eq!(
        out.ledger.rows.len(),
        out.policy.users().map(|u| u.rows().len()).sum::<usize>()
    );
    // The gauge was looked through: it has no loss row of its own.
    let gauge = m.wrappers[0].address;
    assert!(out.ledger.rows.iter().all(|r| r.account != gauge));
    // The attacker's gain is reported and never a loss.
    assert!(!out.ledger.gains.is_empty());
    let attacker_gain = out.ledger.gains.iter().find(|g| g.asset == "USDC").unwrap();
    assert!(out
        .ledger
        .rows
        .iter()
        .all(|r| r.account != attacker_gain.account));
}

#[test]
fn dropping_the_loss_rows_changes_nothing_else() {
    let m = Manifest::load(&example().join("incident.toml")).unwrap();
    let kept = pipeline::run(&m).unwrap();
    let lean = pipeline::run_with(
        &m,
        pipeline::RunOptions {
            keep_loss_rows: false,
        },
    )
    .unwrap();
    assert!(!kept.ledger.rows.is_empty());
    assert!(lean.ledger.rows.is_empty());
    assert_eq!(lean.loss_rows(), kept.ledger.rows.len());
    assert_eq!(lean.run_id, kept.run_id);
    assert_eq!(lean.ledger.gains, kept.ledger.gains);
    assert_eq!(
        serde_json::to_string(&lean.policy).unwrap(),
        serde_json::to_string(&kept.policy).unwrap()
    );
    for (a, b) in lean.trees.iter().zip(&kept.trees) {
        assert_eq!(a.tree.root(), b.tree.root(), "{}", a.spec.file);
    }
}

#[test]
fn run_id_is_sha256_of_the_manifest_and_every_input_length_prefixed() {
    // A slow, obviously-right reference: concatenate everything, hash once.
    let m = Manifest::load(&example().join("incident.toml")).unwrap();
    let mut buf = Vec::new();
    let mut push = |b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u64).to_be_bytes());
        buf.extend_from_slice(b);
    };
    push(&std::fs::read(&m.path).unwrap());
    for f in m.input_files() {
        push(
            f.strip_prefix(&m.base_dir)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        push(&std::fs::read(&f).unwrap());
    }
    // FIPS 180-4's SHA-256 from another implementation than the one recoup uses (RustCrypto's
    // `sha2` 0.10, a test dependency; recoup's is 0.11).
    use sha2_010::Digest as _;
    assert_eq!(
        pipeline::run_id(&m).unwrap().0,
        <[u8; 32]>::from(sha2_010::Sha256::digest(&buf))
    );
    assert_eq!(
        m.input_files().len(),
        5,
        "balances, netting, covers, vault holders, gauge stakers"
    );
}

#[test]
fn run_id_changes_with_the_vault_totals_file() {
    let dir = support::tempdir();
    std::fs::write(dir.path().join("t.json"), "[]").unwrap();
    let totals = dir.path().join("vault_totals.json");
    std::fs::write(&totals, "{}").unwrap();
    let path = dir.path().join("incident.toml");
    let text = r#"
[incident]
id = "called-totals"
chain_id = 31337
snapshot_block = 16

[[assets]]
symbol = "TUSD"
decimals = 18
price = "1"

[state_diff]
chain_id = 31337
traces = ["t.json"]

[[state_diff.vaults]]
name = "vTUSD"
address = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
asset = "TUSD"
shares_layout = { base_slot = "0", total_supply_slot = "1" }
totals = "vault_totals.json"

[policy]
scope = "global"
"#;
    std::fs::write(&path, text).unwrap();
    let m = Manifest::load(&path).unwrap();
    assert!(m.input_files().contains(&totals), "{:?}", m.input_files());
    let before = pipeline::run_id(&m).unwrap();
    std::fs::write(&totals, "{ }").unwrap();
    assert_ne!(pipeline::run_id(&m).unwrap(), before);
}
