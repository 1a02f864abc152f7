//! State diffs: every shared trace fixture parses, the anvil vault drain decodes to each
//! depositor's loss to the wei, and malformed inputs fail naming the file and slot.

use recoup::ingest::trace::{
    decode, format, AccountKind, DecodedState, StateDiffConfig, TraceError,
};
use recoup::primitives::{Address, Amount, B256, U256};
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/traces")
}

/// Skips (loudly) when the shared data folder is absent; fails under CI.
fn have_data() -> bool {
    if data().is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "../shared/data/traces is missing under CI"
    );
    eprintln!("SKIPPED: ../shared/data/traces not present");
    false
}

fn a(s: &str) -> Address {
    s.parse().unwrap()
}

fn e18(n: u64) -> Amount {
    Amount::new(U256::from(n) * U256::from(10u64).pow(U256::from(18)))
}

#[test]
fn every_shared_diff_file_parses_with_its_known_changes() {
    if !have_data() {
        return;
    }
    let d = data();
    // geth test case: 4 changed accounts, the coinbase only in post (created).
    let f = format::read_diff_file(&d.join("geth_prestate_diff_simple.json")).unwrap();
    assert_eq!(f.chain_id, Some(3)); // Ropsten
    assert_eq!(f.txs.len(), 1);
    let t = &f.txs[0];
    assert_eq!(t.accounts.len(), 4);
    assert_eq!(t.block, Some(2289806));
    let cb = &t.accounts[&a("0x1585936b53834b021f68cc13eeefdec2efc8e724")];
    assert_eq!(cb.kind, AccountKind::Created);
    let c = &t.accounts[&a("0x3b873a919aa0512d5a0f09e6dcceaa4a6727fafe")];
    let s3 = B256::from(U256::from(3));
    assert_eq!(
        recoup::ingest::trace::diff::word(c.storage[&s3].from),
        U256::from(0x5a37b834u64)
    );
    assert_eq!(
        recoup::ingest::trace::diff::word(c.storage[&s3].to),
        U256::from(0x5a37b95eu64)
    );

    // EIP-6780: the self-destructed old contract stays, balance to 0, slot 1 abcd → 99.
    let f = format::read_diff_file(&d.join("geth_prestate_diff_suicide_cancun.json")).unwrap();
    let t = &f.txs[0];
    let k = &t.accounts[&a("0x2222222222222222222222222222222222222222")];
    assert_eq!(k.kind, AccountKind::Modified);
    assert_eq!(k.balance.unwrap().to, U256::ZERO);
    assert_eq!(k.balance.unwrap().from, U256::from(0xde0b6b3a7640000u64));
    let s1 = B256::from(U256::from(1));
    assert_eq!(
        recoup::ingest::trace::diff::word(k.storage[&s1].to),
        U256::from(0x99)
    );
    assert_eq!(
        t.accounts[&a("0x1111111111111111111111111111111111111111")].kind,
        AccountKind::Created
    );

    // The bare debug_traceTransaction result: the same transaction as the geth case.
    let f = format::read_diff_file(&d.join("alloy_prestate_diff_mode.json")).unwrap();
    assert_eq!(f.txs.len(), 1);
    assert_eq!(f.chain_id, None);
    assert!(
        f.txs[0].accounts[&a("0x3b873a919aa0512d5a0f09e6dcceaa4a6727fafe")]
            .storage
            .contains_key(&s3)
    );

    // Parity: 15 accounts, 7 destroyed ("-").
    let f = format::read_diff_file(&d.join("parity_statediff_replay_0x2fb5f1.json")).unwrap();
    let t = &f.txs[0];
    assert_eq!(
        t.accounts
            .values()
            .filter(|x| x.kind == AccountKind::Destroyed)
            .count(),
        7
    );
    assert_eq!(
        t.tx_hash.unwrap().to_string(),
        "0x2fb5f1389706508e88f54907a87c9e9e54e68a587d67d40b04d4bc97e6931d74"
    );

    // Tenderly: DAI balanceOf slot of the minter goes 0 → 2e18.
    let f = format::read_diff_file(&d.join("tenderly_simulation_success_dai_mint.json")).unwrap();
    let dai = &f.txs[0].accounts[&a("0x6b175474e89094c44da98b954eedeac495271d0f")];
    let slot: B256 = "0x9b5472766fd311751f6a33c8e30061e20a26259ca626cf5a2feaadf96903cd9e"
        .parse()
        .unwrap();
    assert_eq!(
        recoup::ingest::trace::diff::word(dai.storage[&slot].to),
        U256::from(2_000_000_000_000_000_000u64)
    );

    // Call traces and logs.
    let (addrs, logs) =
        format::read_call_trace_file(&d.join("geth_calltracer_withlog_simple.json")).unwrap();
    assert!(addrs.contains(&a("0xf4eced2f682ce333f96f2d8966c613ded8fc95dd")));
    assert_eq!(logs.len(), 1);
    let v = d.join("anvil-vault-drain");
    let (_, logs) = format::read_call_trace_file(&v.join("exploit.calltracer.json")).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        format::read_logs_file(&v.join("token_transfer_logs.json"))
            .unwrap()
            .len(),
        11
    );
    assert_eq!(
        format::read_logs_file(&v.join("vault_share_transfer_logs.json"))
            .unwrap()
            .len(),
        5
    );
    let _: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v.join("addresses.json")).unwrap()).unwrap();

    // The anvil diffs: 16 transactions over blocks 3..=17 (two in block 14), 1 in each replay.
    let f = format::read_diff_file(&v.join("range_3_17.prestate_diff_by_block.json")).unwrap();
    assert_eq!(f.txs.len(), 16);
    assert_eq!(f.txs.iter().filter(|t| t.block == Some(14)).count(), 2);
    assert_eq!(
        format::read_diff_file(&v.join("exploit.prestate_diff.json"))
            .unwrap()
            .txs
            .len(),
        1
    );
    assert_eq!(
        format::read_diff_file(&v.join("exploit_block.replay_statediff.json"))
            .unwrap()
            .txs
            .len(),
        1
    );
}

const TOKEN: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
const VAULT: &str = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512";
const ATTACKER: &str = "0xa0ee7a142d267c1f36714e4a8f75612f20a79720";

fn vault_config(traces: &str, window: &str, chain_id: u64, layout: &str) -> StateDiffConfig {
    toml::from_str(&format!(
        r#"
chain_id = {chain_id}
traces = [{traces}]
call_traces = ["exploit.calltracer.json"]
transfer_logs = ["token_transfer_logs.json", "vault_share_transfer_logs.json"]
window = {window}
[[tokens]]
asset = "TUSD"
address = "{TOKEN}"
layout = {layout}
[[vaults]]
name = "vTUSD"
address = "{VAULT}"
asset = "TUSD"
shares_layout = {{ base_slot = "0", total_supply_slot = "1" }}
"#
    ))
    .unwrap()
}

fn decode_vault(traces: &str, window: &str) -> DecodedState {
    decode(
        &vault_config(traces, window, 31337, "\"oz\""),
        &data().join("anvil-vault-drain"),
    )
    .unwrap()
}

#[test]
fn anvil_vault_drain_depositor_losses_match_to_the_wei_and_sum_to_attacker_gain() {
    if !have_data() {
        return;
    }
    let s = decode_vault(
        r#""range_3_17.prestate_diff_by_block.json""#,
        "{ start_block = 17 }",
    );
    assert_eq!(s.txs, 16);
    assert_eq!(s.window_txs, 1);
    // Expected values: the research run's analyze.js on the same chain (research/diff.md §4.3).
    let v = &s.vaults[0];
    assert_eq!(v.total_assets_before.to_string(), "6150000000000000000001");
    assert_eq!(v.total_assets_after.to_string(), "1230000000000000000001");
    assert_eq!(v.total_supply_before.to_string(), "5290322580645161290322");
    assert_eq!(v.total_supply_after, v.total_supply_before);
    let loss = |who: &str| {
        s.share_losses
            .iter()
            .find(|l| l.account == a(who))
            .map(|l| l.loss)
            .unwrap()
    };
    assert_eq!(loss("0x70997970c51812dc3a010c7d01b50e0d17dc79c8"), e18(930)); // alice
    assert_eq!(
        loss("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"),
        e18(2790)
    ); // bob
    assert_eq!(loss("0x90f79bf6eb2c4f870365e785982e1f101e93b906"), e18(400)); // carol
    assert_eq!(loss("0x15d34aaf54267db7d7c367839aaf71a00a2c6a65"), e18(800)); // dave
    assert_eq!(s.share_losses.len(), 4);
    let carol = s
        .share_losses
        .iter()
        .find(|l| l.account == a("0x90f79bf6eb2c4f870365e785982e1f101e93b906"))
        .unwrap();
    assert_eq!(carol.value_before.to_string(), "499999999999999999999");
    assert_eq!(carol.value_after.to_string(), "99999999999999999999");

    // Sum of losses == attacker's token gain, to the wei.
    let total = Amount::checked_sum(s.share_losses.iter().map(|l| l.loss)).unwrap();
    let gain = s
        .balance_changes
        .iter()
        .find(|b| b.account == a(ATTACKER) && b.asset == "TUSD")
        .unwrap();
    assert_eq!(gain.after.checked_sub(gain.before).unwrap(), total);
    assert_eq!(total, e18(4920));
    // Token balance changes in the window: exactly the vault and the attacker.
    assert_eq!(s.balance_changes.len(), 2);
    assert!(s.unmatched.is_empty(), "{:?}", s.unmatched);
}

#[test]
fn exploit_in_geth_and_parity_formats_gives_identical_token_deltas() {
    if !have_data() {
        return;
    }
    let geth = decode(
        &toml::from_str::<StateDiffConfig>(&format!(
            "chain_id = 31337\ntraces = [\"exploit.prestate_diff.json\"]\ncall_traces = [\"exploit.calltracer.json\"]\n[[tokens]]\nasset = \"TUSD\"\naddress = \"{TOKEN}\"\nlayout = \"oz\"\n"
        ))
        .unwrap(),
        &data().join("anvil-vault-drain"),
    )
    .unwrap();
    let parity = decode(
        &toml::from_str::<StateDiffConfig>(&format!(
            "chain_id = 31337\ntraces = [\"exploit_block.replay_statediff.json\"]\ncall_traces = [\"exploit.calltracer.json\"]\n[[tokens]]\nasset = \"TUSD\"\naddress = \"{TOKEN}\"\nlayout = \"oz\"\n"
        ))
        .unwrap(),
        &data().join("anvil-vault-drain"),
    )
    .unwrap();
    assert_eq!(geth.balance_changes, parity.balance_changes);
    assert_eq!(geth.balance_changes.len(), 2);
    // The same transaction in two formats, hashes known in both: deduplicated.
    let both = decode(
        &toml::from_str::<StateDiffConfig>(&format!(
            "chain_id = 31337\ntraces = [{{ path = \"exploit.prestate_diff.json\", tx = \"0x2ed5cfb205be9449ff391105e81d7231370f3eee93fec50f89a0572551597446\" }}, \"exploit_block.replay_statediff.json\"]\n[[tokens]]\nasset = \"TUSD\"\naddress = \"{TOKEN}\"\nlayout = \"oz\"\n"
        ))
        .unwrap(),
        &data().join("anvil-vault-drain"),
    )
    .unwrap();
    assert_eq!(both.txs, 1);
}

#[test]
fn holder_missing_from_candidates_is_reported_as_unmatched_not_dropped() {
    if !have_data() {
        return;
    }
    // Without call traces or logs, the attacker's slot still matches (it is in the diff as
    // the sender) but the vault's does not (the vault is not in this diff and not a token).
    let cfg: StateDiffConfig = toml::from_str(&format!(
        "chain_id = 31337\ntraces = [\"exploit.prestate_diff.json\"]\n[[tokens]]\nasset = \"TUSD\"\naddress = \"{TOKEN}\"\nlayout = \"oz\"\n"
    ))
    .unwrap();
    let s = decode(&cfg, &data().join("anvil-vault-drain")).unwrap();
    assert_eq!(s.balance_changes.len(), 1);
    assert_eq!(s.unmatched.len(), 1);
    assert_eq!(s.unmatched[0].count, 1);
    assert_eq!(s.unmatched[0].value_moved, e18(4920));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn truncated_json_names_file_line_and_column() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(data().join("anvil-vault-drain/exploit.prestate_diff.json")).unwrap();
    let p = write(dir.path(), "cut.json", &full[..full.len() / 2]);
    let e = format::read_diff_file(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, TraceError::Json { line, .. } if line > 1),
        "{msg}"
    );
    assert!(msg.contains("cut.json:"), "{msg}");
    assert!(msg.contains("EOF"), "{msg}");
}

#[test]
fn wrong_field_type_names_absolute_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.json", b"{\n \"pre\": {},\n \"post\": {\n  \"0x0000000000000000000000000000000000000001\": {\"balance\": true}\n }\n}\n");
    let msg = format::read_diff_file(&p).unwrap_err().to_string();
    assert!(msg.contains("bad.json:4:"), "{msg}");
    assert!(msg.contains("post"), "{msg}");
}

#[test]
fn slot_chain_gap_names_slot_account_and_both_transactions() {
    if !have_data() {
        return;
    }
    // Drop block 12 (bob's deposit) from the range: the vault's totalSupply jumps.
    let text = std::fs::read_to_string(
        data().join("anvil-vault-drain/range_3_17.prestate_diff_by_block.json"),
    )
    .unwrap();
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    v.remove("12");
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "exploit.calltracer.json",
        "token_transfer_logs.json",
        "vault_share_transfer_logs.json",
    ] {
        std::fs::copy(data().join("anvil-vault-drain").join(f), dir.path().join(f)).unwrap();
    }
    write(
        dir.path(),
        "gap.json",
        serde_json::to_string(&v).unwrap().as_bytes(),
    );
    let e = decode(
        &vault_config("\"gap.json\"", "{ start_block = 17 }", 31337, "\"oz\""),
        dir.path(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TraceError::ChainGap(_)), "{msg}");
    assert!(msg.contains("gap.json"), "{msg}");
    assert!(
        msg.contains("storage slot 0x") || msg.contains("balance") || msg.contains("nonce"),
        "{msg}"
    );
    assert!(
        msg.contains("(block 13)") && msg.contains("(block 11)"),
        "{msg}"
    );
}

#[test]
fn unknown_token_layout_names_asset_and_presets() {
    if !have_data() {
        return;
    }
    let e = decode(
        &vault_config(r#""exploit.prestate_diff.json""#, "{}", 31337, "\"oz-v9\""),
        &data().join("anvil-vault-drain"),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TraceError::UnknownLayout { .. }), "{msg}");
    assert!(
        msg.contains("TUSD") && msg.contains("oz-v9") && msg.contains("solmate"),
        "{msg}"
    );
}

#[test]
fn diff_for_another_chain_id_is_rejected_naming_the_file() {
    if !have_data() {
        return;
    }
    // geth's test case declares chain id 3 (Ropsten); the manifest says 31337.
    let cfg: StateDiffConfig =
        toml::from_str("chain_id = 31337\ntraces = [\"geth_prestate_diff_simple.json\"]\n")
            .unwrap();
    let e = decode(&cfg, &data()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            TraceError::WrongChain {
                expected: 31337,
                got: 3,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("geth_prestate_diff_simple.json"), "{msg}");
}

#[test]
fn manifest_section_rejects_unknown_keys() {
    let e =
        toml::from_str::<StateDiffConfig>("chain_id = 1\ntraces = []\ntracez = []\n").unwrap_err();
    assert!(e.to_string().contains("tracez"), "{e}");
}

#[test]
fn prestate_without_diff_mode_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "default.json", br#"[{"txHash":"0x2ed5cfb205be9449ff391105e81d7231370f3eee93fec50f89a0572551597446","result":{"0x0000000000000000000000000000000000000001":{"balance":"0x1"}}}]"#);
    let msg = format::read_diff_file(&p).unwrap_err().to_string();
    assert!(
        msg.contains("diffMode") && msg.contains("default.json"),
        "{msg}"
    );
}

const EXPLOIT_TX: &str = "0x2ed5cfb205be9449ff391105e81d7231370f3eee93fec50f89a0572551597446";

/// A vault totals file as `recoup ingest --vault` writes it for the anvil drain's exploit
/// block 17 (values: the diff-derived totals the test above pins).
fn calls_file() -> serde_json::Value {
    let at = |method: &str, block: u64, value: &str| serde_json::json!({ "method": method, "block": block, "value": value });
    serde_json::json!({
        "chainId": 31337,
        "beforeBlock": 16,
        "afterBlock": 17,
        "vaults": [{
            "address": VAULT,
            "totalAssetsBefore": at("totalAssets()", 16, "6150000000000000000001"),
            "totalAssetsAfter": at("totalAssets()", 17, "1230000000000000000001"),
            "totalSupplyBefore": at("totalSupply()", 16, "5290322580645161290322"),
            "totalSupplyAfter": at("totalSupply()", 17, "5290322580645161290322"),
        }]
    })
}

/// The drain's range with the exploit window and `totals` naming `text`, written to `dir`.
fn calls_config(dir: &Path, text: &str) -> StateDiffConfig {
    let mut cfg = vault_config(
        r#""range_3_17.prestate_diff_by_block.json""#,
        "{ start_block = 17 }",
        31337,
        "\"oz\"",
    );
    cfg.vaults[0].totals = Some(write(dir, "vault_totals.json", text.as_bytes()));
    cfg
}

/// Decodes [`calls_config`] with `file` as the totals.
fn decode_with_calls(dir: &Path, file: &serde_json::Value) -> Result<DecodedState, TraceError> {
    decode(
        &calls_config(dir, &file.to_string()),
        &data().join("anvil-vault-drain"),
    )
}

/// Asserts a [`TraceError::VaultCalls`] naming the file, `field` and the vault, with `what`.
fn assert_calls_error(r: Result<DecodedState, TraceError>, field: &str, what: &str) {
    let e = r.unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, TraceError::VaultCalls { field: f, vault, .. } if f == field && vault == "vTUSD"),
        "{msg}"
    );
    assert!(
        msg.contains("vault_totals.json: ") && msg.contains(what),
        "{msg}"
    );
}

#[test]
fn vault_totals_from_calls_give_the_same_losses_as_the_diffs() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let by_calls = decode_with_calls(dir.path(), &calls_file()).unwrap();
    let by_diffs = decode_vault(
        r#""range_3_17.prestate_diff_by_block.json""#,
        "{ start_block = 17 }",
    );
    assert_eq!(by_calls.vaults, by_diffs.vaults);
    assert_eq!(by_calls.share_losses, by_diffs.share_losses);
    assert_eq!(by_calls.share_losses.len(), 4);
    // The file's values are what is used: a higher total after lowers every loss.
    let mut f = calls_file();
    f["vaults"][0]["totalAssetsAfter"]["value"] = "6150000000000000000001".into();
    let s = decode_with_calls(dir.path(), &f).unwrap();
    assert!(s.share_losses.is_empty(), "{:?}", s.share_losses);
}

#[test]
fn vault_totals_for_another_chain_vault_or_window_name_file_and_field() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut f = calls_file();
    f["chainId"] = 1.into();
    assert_calls_error(decode_with_calls(dir.path(), &f), "chainId", "is 1");
    let mut f = calls_file();
    f["vaults"][0]["address"] = TOKEN.into();
    assert_calls_error(
        decode_with_calls(dir.path(), &f),
        "vaults",
        "no entry with address 0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    );
    let mut f = calls_file();
    f["afterBlock"] = 18.into();
    assert_calls_error(
        decode_with_calls(dir.path(), &f),
        "afterBlock",
        "is 18, but the window runs from",
    );
    let mut f = calls_file();
    f["vaults"][0]["totalSupplyBefore"]["block"] = 15.into();
    assert_calls_error(
        decode_with_calls(dir.path(), &f),
        "vaults[0].totalSupplyBefore.block",
        "must be 16",
    );
    let mut f = calls_file();
    f["vaults"][0]["totalAssetsAfter"]["method"] = "convertToAssets(uint256)".into();
    assert_calls_error(
        decode_with_calls(dir.path(), &f),
        "vaults[0].totalAssetsAfter.method",
        "expected \"totalAssets()\"",
    );
    // `totals` replaces the diff-derived totals: a total assets slot beside it is refused.
    let mut cfg = calls_config(dir.path(), &calls_file().to_string());
    cfg.vaults[0].total_assets_slot = Some("3".into());
    let msg = decode(&cfg, &data().join("anvil-vault-drain"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("vaults.vTUSD") && msg.contains("total_assets_slot"),
        "{msg}"
    );
}

#[test]
fn vault_totals_with_a_window_starting_or_ending_mid_block_are_refused() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Another transaction of block 17 before the exploit: the call at block 16 also sees
    // the state before it, so the window starting at the exploit is mid-block.
    write(
        dir.path(),
        "other.json",
        br#"{"pre":{"0x0000000000000000000000000000000000000001":{"balance":"0x0"}},"post":{"0x0000000000000000000000000000000000000001":{"balance":"0x1"}}}"#,
    );
    let exploit = data().join("anvil-vault-drain/exploit.prestate_diff.json");
    let totals = write(
        dir.path(),
        "vault_totals.json",
        calls_file().to_string().as_bytes(),
    );
    let config = |traces: &str, window: &str| -> StateDiffConfig {
        toml::from_str(&format!(
            r#"
chain_id = 31337
traces = [{traces}]
window = {window}
[[tokens]]
asset = "TUSD"
address = "{TOKEN}"
layout = "oz"
[[vaults]]
name = "vTUSD"
address = "{VAULT}"
asset = "TUSD"
shares_layout = {{ base_slot = "0", total_supply_slot = "1" }}
totals = {totals:?}
"#
        ))
        .unwrap()
    };
    let exploit_entry = format!("{{ path = {exploit:?}, block = 17, tx = \"{EXPLOIT_TX}\" }}");
    let other_entry = format!(
        "{{ path = \"other.json\", block = 17, tx = \"0x{}\" }}",
        "11".repeat(32)
    );
    let r = decode(
        &config(
            &format!("{other_entry}, {exploit_entry}"),
            &format!("{{ start_tx = \"{EXPLOIT_TX}\" }}"),
        ),
        dir.path(),
    );
    assert_calls_error(r, "beforeBlock", "the window starts mid-block: tx 0x2ed5");
    // The same after it: the window ending at the exploit ends mid-block.
    let r = decode(
        &config(
            &format!("{exploit_entry}, {other_entry}"),
            &format!("{{ end_tx = \"{EXPLOIT_TX}\" }}"),
        ),
        dir.path(),
    );
    assert_calls_error(r, "afterBlock", "the window ends mid-block");
    // Only the exploit traced (`--tx`): the file's own record of its position tells.
    let mut f = calls_file();
    f["firstTx"] =
        serde_json::json!({ "hash": EXPLOIT_TX, "block": 17, "index": 3, "blockTxCount": 4 });
    write(dir.path(), "vault_totals.json", f.to_string().as_bytes());
    let r = decode(&config(&exploit_entry, "{}"), dir.path());
    assert_calls_error(
        r,
        "beforeBlock",
        "transaction 3 of block 17, per the file's firstTx",
    );
    f["firstTx"]["index"] = 0.into();
    f["lastTx"] =
        serde_json::json!({ "hash": EXPLOIT_TX, "block": 17, "index": 0, "blockTxCount": 4 });
    write(dir.path(), "vault_totals.json", f.to_string().as_bytes());
    let r = decode(&config(&exploit_entry, "{}"), dir.path());
    assert_calls_error(r, "afterBlock", "transaction 0 of 4 in block 17");
    // At the block's edges it is accepted.
    f["lastTx"]["blockTxCount"] = 1.into();
    write(dir.path(), "vault_totals.json", f.to_string().as_bytes());
    let s = decode(&config(&exploit_entry, "{}"), dir.path()).unwrap();
    assert_eq!(
        s.vaults[0].total_assets_after.to_string(),
        "1230000000000000000001"
    );
}

#[test]
fn malformed_vault_totals_file_names_file_line_and_field() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pretty = |f: &serde_json::Value| serde_json::to_string_pretty(f).unwrap();
    let check = |text: String, field: &str, what: &str| {
        let cfg = calls_config(dir.path(), &text);
        let e = decode(&cfg, &data().join("anvil-vault-drain")).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, TraceError::Json { line, .. } if line > 0),
            "{msg}"
        );
        assert!(
            msg.contains("vault_totals.json:") && msg.contains(field) && msg.contains(what),
            "{msg}"
        );
    };
    let mut f = calls_file();
    f["vaults"][0]["totalAssetsBefore"]["value"] = "6150e18".into();
    check(pretty(&f), "vaults[0].totalAssetsBefore.value", "");
    let mut f = calls_file();
    f["vaults"][0]["totalSupplyAfter"]
        .as_object_mut()
        .unwrap()
        .remove("value");
    check(
        pretty(&f),
        "vaults[0].totalSupplyAfter",
        "missing field `value`",
    );
    let mut f = calls_file();
    f["blocks"] = 17.into();
    check(pretty(&f), "blocks", "unknown field");
    check(pretty(&calls_file())[..200].to_owned(), "", "EOF");
}
