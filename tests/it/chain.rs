//! A local chain end to end: users deposit into a vault and approve a router; one exploit
//! transaction drains both; recoup pulls the diffs over RPC and its per-user losses equal
//! the chain's own `balanceOf` / `convertToAssets` at the blocks before and after, to the
//! wei, and so do they with the vault's totals called over RPC (`recoup ingest --vault`)
//! instead of read from the diffs; a fund covers part; recoup's claim root (its own `claims::StandardMerkleTree`) is
//! deployed in a distributor, funded, and every user claims exactly their payout with
//! recoup's proof; a tampered amount, a wrong proof and a
//! second claim revert.
//!
//! Needs `npm install --no-save --prefix tests` (anvil 1.7.1, solc-js 0.8.37, OZ merkle-tree 1.0.8).
//! Without it the test fails under CI (env `CI` set) and skips loudly otherwise.

use crate::support::recoup;
use alloy_provider::{network::Ethereum, Provider, RootProvider};
use alloy_sol_types::{sol, SolCall, SolValue};
use recoup::claims::{LeafEncoding, LeafValue, StandardMerkleTree};
use recoup::ingest::trace::{decode, read_calls_file, rpc, StateDiffConfig};
use recoup::primitives::{Address, Amount, B256, U256};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

sol! {
    function mint(address to, uint256 amount);
    function approve(address spender, uint256 amount) returns (bool);
    function deposit(uint256 assets) returns (uint256);
    function redeem(uint256 shares) returns (uint256);
    function balanceOf(address who) returns (uint256);
    function convertToAssets(uint256 shares) returns (uint256);
    function totalAssets() returns (uint256);
    function totalSupply() returns (uint256);
    function attack(address vault, address router, address token, address[] victims, address to);
    function claim(address account, uint256 amount, bytes32[] proof);
    function claimed(address account) returns (bool);
    function merkleRoot() returns (bytes32);
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn anvil_bin() -> PathBuf {
    tests_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// Kills exactly the anvil process it started, on drop.
struct AnvilGuard {
    child: Child,
    url: String,
}

impl Drop for AnvilGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_anvil() -> AnvilGuard {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(anvil_bin())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--chain-id",
            "31337",
            "--silent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anvil");
    let g = AnvilGuard {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "anvil did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    g
}

fn compile() -> BTreeMap<String, Vec<u8>> {
    let out = Command::new("node")
        .arg(tests_dir().join("contracts/compile.js"))
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "solc-js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut m = BTreeMap::new();
    for (k, c) in v.as_object().unwrap() {
        if let Some(b) = c.get("bytecode") {
            m.insert(
                k.clone(),
                alloy_primitives::hex::decode(b.as_str().unwrap()).unwrap(),
            );
        }
    }
    m
}

struct Chain {
    p: RootProvider<Ethereum>,
}

impl Chain {
    async fn rpc(&self, method: &'static str, params: Value) -> Result<Value, String> {
        self.p
            .raw_request::<_, Value>(method.into(), params)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends from an unlocked dev account (anvil automines); returns the receipt.
    async fn send(
        &self,
        from: Address,
        to: Option<Address>,
        data: Vec<u8>,
    ) -> Result<Value, String> {
        let mut tx = json!({ "from": from, "data": alloy_primitives::hex::encode_prefixed(&data) });
        if let Some(t) = to {
            tx["to"] = json!(t);
        }
        let h = self.rpc("eth_sendTransaction", json!([tx])).await?;
        let t0 = Instant::now();
        let r = loop {
            let r = self.rpc("eth_getTransactionReceipt", json!([h])).await?;
            if !r.is_null() {
                break r;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no receipt for {h}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if r["status"] != json!("0x1") {
            return Err(format!("transaction reverted: {r}"));
        }
        Ok(r)
    }

    async fn deploy(&self, from: Address, code: &[u8], args: Vec<u8>) -> Address {
        let mut data = code.to_vec();
        data.extend(args);
        let r = self.send(from, None, data).await.unwrap();
        r["contractAddress"].as_str().unwrap().parse().unwrap()
    }

    async fn call<C: SolCall>(&self, to: Address, c: C, block: u64) -> C::Return {
        let v = self.rpc("eth_call", json!([{ "to": to, "data": alloy_primitives::hex::encode_prefixed(c.abi_encode()) }, format!("0x{block:x}")])).await.unwrap();
        let bytes = alloy_primitives::hex::decode(v.as_str().unwrap()).unwrap();
        C::abi_decode_returns(&bytes).unwrap()
    }

    async fn block(&self) -> u64 {
        let v = self.rpc("eth_blockNumber", json!([])).await.unwrap();
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }
}

fn e18(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

// The claim tree is recoup's own: `recoup::claims::StandardMerkleTree` over
// (address, uint256), i.e. leaf = keccak256(keccak256(abi.encode(account, amount))), sorted
// leaves in OpenZeppelin's heap layout. Its root and proofs are also checked against
// @openzeppelin/merkle-tree below, and redeemed on chain.
fn recoup_tree(values: &[(Address, U256)]) -> (B256, Vec<Vec<B256>>) {
    let enc = LeafEncoding::new(&["address", "uint256"]).unwrap();
    let rows: Vec<Vec<LeafValue>> = values
        .iter()
        .map(|(a, v)| vec![LeafValue::Address(*a), LeafValue::Uint(*v)])
        .collect();
    let t = StandardMerkleTree::of(enc, &rows, true).unwrap();
    let proofs = (0..values.len()).map(|i| t.proof(i)).collect();
    (t.root(), proofs)
}

fn tools_present() -> bool {
    if anvil_bin().is_file() && tests_dir().join("node_modules/solc").is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "anvil or solc-js missing under CI: run `npm install --no-save --prefix tests`"
    );
    eprintln!(
        "\n!!! SKIPPED local-chain test: {} missing; run `npm install --no-save --prefix tests` !!!\n",
        anvil_bin().display()
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoup_losses_equal_chain_truth_and_its_root_pays_every_claim_once() {
    if !tools_present() {
        return;
    }
    let code = compile();
    let anvil = start_anvil();
    let c = Chain {
        p: RootProvider::new_http(anvil.url.parse().unwrap()),
    };
    let accts: Vec<Address> =
        serde_json::from_value(c.rpc("eth_accounts", json!([])).await.unwrap()).unwrap();
    let (deployer, attacker) = (accts[0], accts[9]);
    let users: Vec<Address> = accts[1..7].to_vec();

    let token = c
        .deploy(
            deployer,
            &code["TestToken"],
            ("Test USD".to_string(), "TUSD".to_string()).abi_encode_params(),
        )
        .await;
    let vault = c.deploy(deployer, &code["Vault"], token.abi_encode()).await;
    let router = c.deploy(deployer, &code["Router"], vec![]).await;
    let exploiter = c.deploy(attacker, &code["Exploiter"], vec![]).await;

    // u0..u3 deposit (u2 keeps 100 TUSD, approved to the router); u4, u5 only approve the router.
    let minted = [1000u64, 3000, 600, 2000, 800, 1200];
    for (u, m) in users.iter().zip(minted) {
        c.send(
            deployer,
            Some(token),
            mintCall {
                to: *u,
                amount: e18(m),
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    }
    for u in &users[..4] {
        c.send(
            *u,
            Some(token),
            approveCall {
                spender: vault,
                amount: U256::MAX,
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    }
    c.send(
        users[0],
        Some(vault),
        depositCall { assets: e18(1000) }.abi_encode(),
    )
    .await
    .unwrap();
    c.send(
        users[1],
        Some(vault),
        depositCall { assets: e18(3000) }.abi_encode(),
    )
    .await
    .unwrap();
    // Yield: the price per share moves off 1, so conversions round.
    c.send(
        deployer,
        Some(token),
        mintCall {
            to: vault,
            amount: e18(650) + U256::from(7u8),
        }
        .abi_encode(),
    )
    .await
    .unwrap();
    c.send(
        users[2],
        Some(vault),
        depositCall { assets: e18(500) }.abi_encode(),
    )
    .await
    .unwrap();
    c.send(
        users[3],
        Some(vault),
        depositCall { assets: e18(2000) }.abi_encode(),
    )
    .await
    .unwrap();
    let half = c
        .call(vault, balanceOfCall { who: users[3] }, c.block().await)
        .await
        / U256::from(3u8);
    c.send(
        users[3],
        Some(vault),
        redeemCall { shares: half }.abi_encode(),
    )
    .await
    .unwrap();
    for u in &users[2..] {
        if *u != users[3] {
            c.send(
                *u,
                Some(token),
                approveCall {
                    spender: router,
                    amount: U256::MAX,
                }
                .abi_encode(),
            )
            .await
            .unwrap();
        }
    }
    let victims = vec![users[2], users[4], users[5]];
    let pre = c.block().await;
    let exploit_receipt = c
        .send(
            attacker,
            Some(exploiter),
            attackCall {
                vault,
                router,
                token,
                victims,
                to: attacker,
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    let post = c.block().await;
    assert_eq!(post, pre + 1);

    // The chain's truth: balanceOf and convertToAssets at the blocks before and after.
    let mut truth: BTreeMap<Address, U256> = BTreeMap::new();
    let mut share_truth: BTreeMap<Address, Amount> = BTreeMap::new();
    for u in &users {
        let (tb, ta) = (
            c.call(token, balanceOfCall { who: *u }, pre).await,
            c.call(token, balanceOfCall { who: *u }, post).await,
        );
        let s = c.call(vault, balanceOfCall { who: *u }, pre).await;
        let (cb, ca) = (
            c.call(vault, convertToAssetsCall { shares: s }, pre).await,
            c.call(vault, convertToAssetsCall { shares: s }, post).await,
        );
        truth.insert(*u, (tb - ta) + (cb - ca));
        if cb != ca {
            share_truth.insert(*u, Amount::new(cb - ca));
        }
    }
    let gain = c.call(token, balanceOfCall { who: attacker }, post).await
        - c.call(token, balanceOfCall { who: attacker }, pre).await;

    // recoup ingest over RPC, written to files, then decoded offline from those files.
    let opts = rpc::FetchOptions {
        rpc_url: anvil.url.clone(),
        timeout: Duration::from_secs(30),
        retries: 2,
        call_traces: true,
        vaults: vec![],
    };
    let fetched = rpc::fetch(
        &opts,
        &rpc::Selection::Blocks { from: 1, to: post },
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(fetched.chain_id, 31337);
    // The same exploit fetched by transaction hash: receipt, prestate diff, call trace and
    // its block header, and the diff reads back as that one transaction.
    let exploit_hash: B256 =
        serde_json::from_value(exploit_receipt["transactionHash"].clone()).unwrap();
    let by_tx = rpc::fetch(&opts, &rpc::Selection::Txs(vec![exploit_hash]), |_, _| {})
        .await
        .unwrap();
    let roles: Vec<&str> = by_tx.files.iter().map(|f| f.role).collect();
    assert_eq!(roles, ["receipts", "traces", "call_traces", "blocks"]);
    let diff = by_tx.files.iter().find(|f| f.role == "traces").unwrap();
    let parsed = recoup::ingest::trace::format::parse_diff_bytes(
        std::path::Path::new(&diff.name),
        &diff.bytes,
    )
    .unwrap();
    assert_eq!(parsed.txs.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    rpc::write_all(&dir.path().join("traces"), &fetched.files, false).unwrap();
    let manifest = format!(
        "{}\n[state_diff.window]\nstart_block = {post}\n\n[[state_diff.tokens]]\nasset = \"TUSD\"\naddress = \"{token}\"\nlayout = \"oz\"\n\n[[state_diff.vaults]]\nname = \"vTUSD\"\naddress = \"{vault}\"\nasset = \"TUSD\"\nshares_layout = {{ base_slot = \"0\", total_supply_slot = \"1\" }}\n",
        rpc::manifest_snippet(&fetched, "traces")
    );
    #[derive(serde::Deserialize)]
    struct M {
        state_diff: StateDiffConfig,
    }
    let m: M = toml::from_str(&manifest).unwrap_or_else(|e| panic!("{e}\n{manifest}"));
    let s = decode(&m.state_diff, dir.path()).unwrap();
    assert_eq!(s.window_txs, 1);
    // Gas is excluded: the attacker paid gas and the coinbase got the tip, yet no ETH row.
    assert!(
        s.balance_changes.iter().all(|b| b.asset == "TUSD"),
        "{:?}",
        s.balance_changes
    );
    assert!(s.unmatched.is_empty(), "{:?}", s.unmatched);

    let mut recoup_loss: BTreeMap<Address, Amount> = BTreeMap::new();
    for b in s.balance_changes.iter().filter(|b| b.after < b.before) {
        let e = recoup_loss.entry(b.account).or_default();
        *e = e
            .checked_add(b.before.checked_sub(b.after).unwrap())
            .unwrap();
    }
    for l in &s.share_losses {
        let e = recoup_loss.entry(l.account).or_default();
        *e = e.checked_add(l.loss).unwrap();
    }
    // The vault lost tokens too, but as a wrapper: its holders carry that loss.
    recoup_loss.remove(&vault);
    let truth: BTreeMap<Address, Amount> = truth
        .into_iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(a, v)| (a, Amount::new(v)))
        .collect();
    assert_eq!(truth.len(), 6, "every user lost something");
    assert_eq!(
        recoup_loss, truth,
        "recoup's per-user losses vs the chain's balanceOf/convertToAssets"
    );
    vault_totals_by_calls_equal_chain_truth(
        &c,
        &opts,
        (pre, post, exploit_hash),
        (token, vault),
        dir.path(),
        (manifest.as_str(), s.share_losses.as_slice()),
        &share_truth,
    )
    .await;
    let total = Amount::checked_sum(truth.values().copied()).unwrap();
    // Each holder's value is floored before and after, so the sum of share losses can miss
    // the vault's drop by up to one wei per holder, either way (4 vault holders here).
    let dust = if gain > total.raw() {
        gain - total.raw()
    } else {
        total.raw() - gain
    };
    assert!(
        dust <= U256::from(4u8),
        "sum of losses {total} vs attacker gain {gain}"
    );
    let attacker_row = s
        .balance_changes
        .iter()
        .find(|b| b.account == attacker)
        .unwrap();
    assert_eq!(
        attacker_row.after.checked_sub(attacker_row.before).unwrap(),
        Amount::new(gain)
    );

    // A fund covers 70%: payout = floor(F × loss / Σloss).
    let fund = total
        .mul_div_floor(U256::from(7u8), U256::from(10u8))
        .unwrap();
    let payouts: Vec<(Address, U256)> = truth
        .iter()
        .map(|(a, l)| (*a, l.mul_div_floor(fund.raw(), total.raw()).unwrap().raw()))
        .collect();
    let (root, proofs) = recoup_tree(&payouts);

    // Cross-check with the reference client, @openzeppelin/merkle-tree.
    let input = serde_json::to_string(
        &payouts
            .iter()
            .map(|(a, v)| json!([a.to_string(), v.to_string()]))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut js = Command::new("node")
        .arg(tests_dir().join("contracts/oz_tree.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(js.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = js.wait_with_output().unwrap();
    let oz: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(oz["root"].as_str().unwrap(), root.to_string());
    assert_eq!(
        oz["proofs"],
        json!(proofs
            .iter()
            .map(|p| p.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>())
    );

    let dist = c
        .deploy(
            deployer,
            &code["ClaimDistributor"],
            (token, root).abi_encode_params(),
        )
        .await;
    assert_eq!(c.call(dist, merkleRootCall {}, c.block().await).await, root);
    c.send(
        deployer,
        Some(token),
        mintCall {
            to: dist,
            amount: fund.raw(),
        }
        .abi_encode(),
    )
    .await
    .unwrap();

    // A tampered amount and a wrong proof revert (before the legitimate claims).
    let (a0, v0) = payouts[0];
    let tampered = claimCall {
        account: a0,
        amount: v0 + U256::from(1u8),
        proof: proofs[0].clone(),
    };
    assert!(
        c.send(a0, Some(dist), tampered.abi_encode()).await.is_err(),
        "tampered amount must revert"
    );
    let wrong = claimCall {
        account: a0,
        amount: v0,
        proof: proofs[1].clone(),
    };
    assert!(
        c.send(a0, Some(dist), wrong.abi_encode()).await.is_err(),
        "wrong proof must revert"
    );

    for ((a, v), proof) in payouts.iter().zip(&proofs) {
        let before = c
            .call(token, balanceOfCall { who: *a }, c.block().await)
            .await;
        c.send(
            *a,
            Some(dist),
            claimCall {
                account: *a,
                amount: *v,
                proof: proof.clone(),
            }
            .abi_encode(),
        )
        .await
        .unwrap();
        let after = c
            .call(token, balanceOfCall { who: *a }, c.block().await)
            .await;
        assert_eq!(after - before, *v, "claim of {a} paid exactly its payout");
        assert!(
            c.call(dist, claimedCall { account: *a }, c.block().await)
                .await
        );
        let again = claimCall {
            account: *a,
            amount: *v,
            proof: proof.clone(),
        };
        assert!(
            c.send(*a, Some(dist), again.abi_encode()).await.is_err(),
            "second claim must revert"
        );
    }
    let paid = payouts
        .iter()
        .fold(U256::ZERO, |s, (_, v)| s.checked_add(*v).unwrap());
    let left = c
        .call(token, balanceOfCall { who: dist }, c.block().await)
        .await;
    assert_eq!(
        left,
        fund.raw() - paid,
        "the distributor keeps only the floor dust"
    );
    drop(anvil);
}

/// `recoup ingest --vault` (the binary, by transaction) and `rpc::fetch` (by block) call the
/// vault's totals at `pre` and `post`; the manifest with `totals` naming that file gives
/// per-holder share losses equal to the diff-derived ones and to the chain's
/// `convertToAssets` at both blocks, to the wei. A vault call that reverts (the token has no
/// `totalAssets()`) fails the command with exit 2 and writes nothing.
async fn vault_totals_by_calls_equal_chain_truth(
    c: &Chain,
    opts: &rpc::FetchOptions,
    (pre, post, exploit): (u64, u64, B256),
    (token, vault): (Address, Address),
    dir: &Path,
    (manifest, by_diffs): (&str, &[recoup::ingest::trace::ShareLoss]),
    share_truth: &BTreeMap<Address, Amount>,
) {
    let window = dir.join("window");
    let (tx_arg, vault_arg) = (exploit.to_string(), vault.to_string());
    let out = recoup(&[
        "ingest",
        "--json",
        "--no-call-traces",
        "--rpc-url",
        &opts.rpc_url,
        "--tx",
        &tx_arg,
        "--vault",
        &vault_arg,
        "--out",
        window.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snippet = printed["manifest"].as_str().unwrap();
    let named = format!(
        "address = \"{vault}\"\ntotals = {:?}",
        format!("{}/vault_totals.json", window.display())
    );
    assert!(
        snippet.contains(&named)
            && snippet.contains(&format!("start_block = {post}, end_block = {post}")),
        "{snippet}"
    );
    let calls = read_calls_file(&window.join("vault_totals.json")).unwrap();
    assert_eq!(
        (calls.chain_id, calls.before_block, calls.after_block),
        (31337, pre, post)
    );
    let first = calls.first_tx.clone().unwrap();
    assert_eq!(
        (first.hash, first.index, first.block_tx_count),
        (exploit, 0, 1)
    );
    let v = &calls.vaults[0];
    assert_eq!(v.address, vault);
    for (got, want) in [
        (
            &v.total_assets_before,
            c.call(vault, totalAssetsCall {}, pre).await,
        ),
        (
            &v.total_assets_after,
            c.call(vault, totalAssetsCall {}, post).await,
        ),
        (
            &v.total_supply_before,
            c.call(vault, totalSupplyCall {}, pre).await,
        ),
        (
            &v.total_supply_after,
            c.call(vault, totalSupplyCall {}, post).await,
        ),
    ] {
        assert_eq!(got.value.raw(), want, "{got:?}");
    }
    // By block range: the same calls at the same blocks.
    let by_block = rpc::fetch(
        &rpc::FetchOptions {
            vaults: vec![vault],
            call_traces: false,
            ..opts.clone()
        },
        &rpc::Selection::Blocks {
            from: post,
            to: post,
        },
        |_, _| {},
    )
    .await
    .unwrap()
    .vault_totals
    .unwrap();
    assert_eq!(
        (
            by_block.before_block,
            by_block.after_block,
            &by_block.vaults
        ),
        (pre, post, &calls.vaults)
    );

    #[derive(serde::Deserialize)]
    struct M {
        state_diff: StateDiffConfig,
    }
    let with_calls = format!("{manifest}totals = \"window/vault_totals.json\"\n");
    let m: M = toml::from_str(&with_calls).unwrap_or_else(|e| panic!("{e}\n{with_calls}"));
    let s = decode(&m.state_diff, dir).unwrap();
    assert_eq!(
        s.share_losses, by_diffs,
        "totals by calls vs from the diffs"
    );
    let by_calls: BTreeMap<Address, Amount> =
        s.share_losses.iter().map(|l| (l.account, l.loss)).collect();
    assert_eq!(
        by_calls.len(),
        4,
        "every depositor lost through the share price"
    );
    assert_eq!(
        &by_calls, share_truth,
        "recoup's share losses with called totals vs the chain's convertToAssets"
    );

    // A failing call writes nothing: the token has no totalAssets().
    let bad = dir.join("bad");
    let out = recoup(&[
        "ingest",
        "-q",
        "--retries",
        "0",
        "--rpc-url",
        &opts.rpc_url,
        "--blocks",
        &format!("{post}..{post}"),
        "--vault",
        &token.to_string(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("eth_call totalAssets()"), "{err}");
    assert!(!bad.exists(), "nothing written when a vault call fails");
}
