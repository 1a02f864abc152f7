//! Pulling state diffs, call traces, receipts and headers from a node into files, so that
//! every run can be repeated offline and audited.
//!
//! Each file is a recoup node record: `{"chainId", "method", "params", "block"?, "txHash"?,
//! "result"}` where `result` is the node's answer byte for byte. [`super::format`] reads
//! them back; the record's `chainId` is checked against the manifest.
//!
//! Methods: `debug_traceTransaction` / `debug_traceBlockByNumber` with
//! `{"tracer":"prestateTracer","tracerConfig":{"diffMode":true,"disableCode":true}}` and with
//! `{"tracer":"callTracer","tracerConfig":{"withLog":true}}`; `eth_getTransactionReceipt`,
//! `eth_getBlockReceipts`, `eth_getBlockByNumber`; with vaults, `eth_call` of
//! `totalAssets()` and `totalSupply()` at the block before the window and at its last block,
//! written as one [`VaultCallsFile`] (`vault_totals.json`). Every call has a timeout and
//! retries with exponential backoff.

use super::calls::{
    totalAssetsCall, totalSupplyCall, CallValue, TxPosition, VaultCalls, VaultCallsFile,
};
use super::TraceError;
use crate::primitives::{Address, Amount, B256, U256};
use alloy_provider::network::{Ethereum, Network, TransactionBuilder};
use alloy_provider::transport::TransportResult;
use alloy_provider::{Provider, RootProvider};
use alloy_sol_types::SolCall;
use serde_json::{json, value::RawValue, Value};
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name of the vault totals `fetch` writes.
pub const VAULT_TOTALS_FILE: &str = "vault_totals.json";

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These transactions (ordered by block and index after fetching their receipts).
    Txs(Vec<B256>),
    /// Every transaction of blocks `from ..= to`.
    Blocks {
        /// First block.
        from: u64,
        /// Last block.
        to: u64,
    },
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// HTTP JSON-RPC endpoint.
    pub rpc_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after a failed or timed-out request (exponential backoff from 250 ms).
    pub retries: u32,
    /// Also fetch callTracer traces with logs (holder candidates).
    pub call_traces: bool,
    /// Vaults whose `totalAssets()` and `totalSupply()` are called at the block before the
    /// window's first block and at its last block ([`VAULT_TOTALS_FILE`]).
    pub vaults: Vec<Address>,
}

/// One file to write: a name inside the output directory and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// File name (no directories).
    pub name: String,
    /// What it holds: `traces`, `call_traces`, `receipts`, `blocks`, `vault_totals`.
    pub role: &'static str,
    /// JSON bytes.
    pub bytes: Vec<u8>,
}

/// Everything fetched, in chain order within each role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The node's chain id.
    pub chain_id: u64,
    /// Files in chain order.
    pub files: Vec<FetchedFile>,
    /// The vault totals (also in `files` as [`VAULT_TOTALS_FILE`]), when vaults were asked for.
    pub vault_totals: Option<VaultCallsFile>,
}

struct Client {
    p: RootProvider<Ethereum>,
    url: String,
    timeout: Duration,
    retries: u32,
}

impl Client {
    async fn call(&self, method: &'static str, params: Value) -> Result<Box<RawValue>, TraceError> {
        self.retry(method, &params, || {
            self.p
                .raw_request::<_, Box<RawValue>>(method.into(), params.clone())
        })
        .await
    }

    /// `eth_call` of a view returning one `uint256`, on `to` at block `block`; the value and
    /// the method's signature.
    async fn call_uint<C: SolCall<Return = U256>>(
        &self,
        to: Address,
        call: C,
        block: u64,
    ) -> Result<CallValue, TraceError> {
        let data = call.abi_encode();
        let method = format!("eth_call {}", C::SIGNATURE);
        let params = json!([{ "to": to, "data": alloy_primitives::hex::encode_prefixed(&data) }, hex(block)]);
        let tx = <Ethereum as Network>::TransactionRequest::default()
            .with_to(to)
            .with_input(data);
        let out = self
            .retry(&method, &params, || {
                self.p.call(tx.clone()).number(block).into_future()
            })
            .await?;
        let value = C::abi_decode_returns(&out).map_err(|e| {
            self.err(
                &method,
                &params,
                format!("returned {out}, not a uint256 ({e}); is {to} a vault at block {block}?"),
                0,
            )
        })?;
        Ok(CallValue {
            method: C::SIGNATURE.to_owned(),
            block,
            value: Amount::new(value),
        })
    }

    /// Runs `request` under the timeout, retrying transport errors and timeouts with
    /// exponential backoff from 250 ms; `method` and `params` name it in errors.
    async fn retry<T, F, Fut>(
        &self,
        method: &str,
        params: &Value,
        request: F,
    ) -> Result<T, TraceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        let mut wait = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            let r = tokio::time::timeout(self.timeout, request()).await;
            let err = match r {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    // A JSON-RPC error response (method not found, bad params) will not
                    // change on retry.
                    if e.is_error_resp() {
                        return Err(self.err(method, params, e.to_string(), attempt));
                    }
                    e.to_string()
                }
                Err(_) => format!("timed out after {:?}", self.timeout),
            };
            if attempt >= self.retries {
                return Err(self.err(method, params, err, attempt));
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }

    /// Calls `method` and keeps the node's answer, byte for byte, as the record file `name`.
    async fn fetch(
        &self,
        chain_id: u64,
        method: &'static str,
        params: Value,
        at: (Option<u64>, Option<B256>),
        name: String,
        role: &'static str,
    ) -> Result<FetchedFile, TraceError> {
        let d = self.call(method, params.clone()).await?;
        Ok(FetchedFile {
            name,
            role,
            bytes: record(chain_id, method, &params, at.0, at.1, &d),
        })
    }

    fn err(&self, method: &str, params: &Value, message: String, retries: u32) -> TraceError {
        TraceError::Rpc {
            url: self.url.clone(),
            method: method.to_owned(),
            params: params.to_string(),
            message,
            retries,
        }
    }
}

fn record(
    chain_id: u64,
    method: &str,
    params: &Value,
    block: Option<u64>,
    tx: Option<B256>,
    result: &RawValue,
) -> Vec<u8> {
    let mut s = String::with_capacity(result.get().len() + 256);
    s.push_str(&format!(
        "{{\"chainId\":{chain_id},\"method\":{},\"params\":{}",
        json!(method),
        params
    ));
    if let Some(b) = block {
        s.push_str(&format!(",\"block\":{b}"));
    }
    if let Some(t) = tx {
        s.push_str(&format!(",\"txHash\":\"{t}\""));
    }
    s.push_str(",\"result\":");
    s.push_str(result.get());
    s.push_str("}\n");
    s.into_bytes()
}

fn prestate_opts() -> Value {
    json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true, "disableCode": true}})
}

fn call_opts() -> Value {
    json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}})
}

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

/// The number of transactions of a block, from its `eth_getBlockByNumber` record.
fn tx_count(f: &FetchedFile) -> Result<u64, TraceError> {
    #[derive(serde::Deserialize)]
    struct Record {
        result: Header,
    }
    #[derive(serde::Deserialize)]
    struct Header {
        transactions: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Record>(&f.bytes)
        .map(|r| r.result.transactions.len() as u64)
        .map_err(|e| TraceError::Json {
            file: PathBuf::from(&f.name),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
}

/// Fetches the selection. `tick` is called as requests complete (for a progress bar), with
/// the number done and the total.
///
/// With `opts.vaults`, each vault's `totalAssets()` and `totalSupply()` are called at the
/// block before the window's first block (`FROM − 1` for blocks; for transactions, the
/// block before the earliest one's block) and at its last block, and written as one
/// [`VAULT_TOTALS_FILE`]. With transactions, the file also gives the earliest and latest
/// one's position in its block, so that a window starting or ending mid-block is caught
/// when the file is used (see [`super::calls`]).
///
/// # Errors
/// [`TraceError::Rpc`] naming the URL, method and params after the retries are spent (a
/// vault call that reverts or returns no `uint256` too); [`TraceError::Config`] for a bad
/// URL, or vaults with a window starting at block 0; [`TraceError::Json`] when the node's
/// answer is not a trace (or block) recoup can read.
pub async fn fetch(
    opts: &FetchOptions,
    sel: &Selection,
    mut tick: impl FnMut(usize, usize),
) -> Result<Fetched, TraceError> {
    let url = opts.rpc_url.parse().map_err(|e| TraceError::Config {
        what: "--rpc-url".into(),
        message: format!("{e}"),
    })?;
    // Vault totals need a block before the window: checked before any request.
    let no_before = match sel {
        Selection::Blocks { from, .. } => *from == 0,
        Selection::Txs(h) => h.is_empty(),
    };
    if no_before && !opts.vaults.is_empty() {
        return Err(TraceError::Config {
            what: "--vault".into(),
            message: "the window starts at block 0 or selects no transaction: there is no block before it to call at".into(),
        });
    }
    let c = Client {
        p: RootProvider::new_http(url),
        url: opts.rpc_url.clone(),
        timeout: opts.timeout,
        retries: opts.retries,
    };
    let cid = c.call("eth_chainId", json!([])).await?;
    let chain_id = serde_json::from_str::<alloy_primitives::U64>(cid.get())
        .map_err(|e| c.err("eth_chainId", &json!([]), e.to_string(), 0))?
        .to::<u64>();
    let mut files = Vec::new();
    let per = if opts.call_traces { 4 } else { 3 };
    let vault_calls = 4 * opts.vaults.len();
    // The window's first and last block, and (for transactions) their edge positions.
    let (done, total, first_block, last_block, edges) = match sel {
        Selection::Txs(hashes) => {
            let total = hashes.len() * per + vault_calls;
            // Receipts first: they give each transaction's block and index, for ordering.
            let mut rs = Vec::new();
            for h in hashes {
                let params = json!([h]);
                let r = c.call("eth_getTransactionReceipt", params.clone()).await?;
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Pos {
                    block_number: alloy_primitives::U64,
                    transaction_index: alloy_primitives::U64,
                }
                let pos: Option<Pos> = serde_json::from_str(r.get())
                    .map_err(|e| c.err("eth_getTransactionReceipt", &params, e.to_string(), 0))?;
                let pos = pos.ok_or_else(|| {
                    c.err(
                        "eth_getTransactionReceipt",
                        &params,
                        format!("transaction {h} is not mined (null receipt)"),
                        0,
                    )
                })?;
                rs.push((
                    pos.block_number.to::<u64>(),
                    pos.transaction_index.to::<u64>(),
                    *h,
                    params,
                    r,
                ));
                tick(rs.len(), total);
            }
            rs.sort_by_key(|(b, i, ..)| (*b, *i));
            let mut done = rs.len();
            let mut blocks_seen = std::collections::BTreeSet::new();
            let mut tx_counts: HashMap<u64, u64> = HashMap::new();
            for (b, _, h, rp, r) in &rs {
                let name = format!("tx-{h}");
                files.push(FetchedFile {
                    name: format!("{name}.receipt.json"),
                    role: "receipts",
                    bytes: record(
                        chain_id,
                        "eth_getTransactionReceipt",
                        rp,
                        Some(*b),
                        Some(*h),
                        r,
                    ),
                });
                files.push(
                    c.fetch(
                        chain_id,
                        "debug_traceTransaction",
                        json!([h, prestate_opts()]),
                        (Some(*b), Some(*h)),
                        format!("{name}.prestate_diff.json"),
                        "traces",
                    )
                    .await?,
                );
                done += 1;
                tick(done, total);
                if opts.call_traces {
                    files.push(
                        c.fetch(
                            chain_id,
                            "debug_traceTransaction",
                            json!([h, call_opts()]),
                            (Some(*b), Some(*h)),
                            format!("{name}.calltracer.json"),
                            "call_traces",
                        )
                        .await?,
                    );
                    done += 1;
                    tick(done, total);
                }
                if blocks_seen.insert(*b) {
                    let header = c
                        .fetch(
                            chain_id,
                            "eth_getBlockByNumber",
                            json!([hex(*b), false]),
                            (Some(*b), None),
                            format!("block-{b}.header.json"),
                            "blocks",
                        )
                        .await?;
                    if !opts.vaults.is_empty() {
                        tx_counts.insert(*b, tx_count(&header)?);
                    }
                    files.push(header);
                }
                done += 1;
                tick(done, total);
            }
            let position = |(b, i, h, ..): &(u64, u64, B256, Value, Box<RawValue>)| TxPosition {
                hash: *h,
                block: *b,
                index: *i,
                block_tx_count: tx_counts.get(b).copied().unwrap_or_default(),
            };
            match (rs.first(), rs.last()) {
                (Some(f), Some(l)) => (done, total, f.0, l.0, Some((position(f), position(l)))),
                _ => (done, total, 0, 0, None),
            }
        }
        Selection::Blocks { from, to } => {
            if from > to {
                return Err(TraceError::Config {
                    what: "--blocks".into(),
                    message: format!("{from}..{to} is empty"),
                });
            }
            let total = (to - from + 1) as usize * per + vault_calls;
            let mut done = 0;
            for b in *from..=*to {
                files.push(
                    c.fetch(
                        chain_id,
                        "debug_traceBlockByNumber",
                        json!([hex(b), prestate_opts()]),
                        (Some(b), None),
                        format!("block-{b}.prestate_diff.json"),
                        "traces",
                    )
                    .await?,
                );
                done += 1;
                tick(done, total);
                if opts.call_traces {
                    files.push(
                        c.fetch(
                            chain_id,
                            "debug_traceBlockByNumber",
                            json!([hex(b), call_opts()]),
                            (Some(b), None),
                            format!("block-{b}.calltracer.json"),
                            "call_traces",
                        )
                        .await?,
                    );
                    done += 1;
                    tick(done, total);
                }
                files.push(
                    c.fetch(
                        chain_id,
                        "eth_getBlockReceipts",
                        json!([hex(b)]),
                        (Some(b), None),
                        format!("block-{b}.receipts.json"),
                        "receipts",
                    )
                    .await?,
                );
                done += 1;
                tick(done, total);
                files.push(
                    c.fetch(
                        chain_id,
                        "eth_getBlockByNumber",
                        json!([hex(b), false]),
                        (Some(b), None),
                        format!("block-{b}.header.json"),
                        "blocks",
                    )
                    .await?,
                );
                done += 1;
                tick(done, total);
            }
            (done, total, *from, *to, None)
        }
    };
    // Every trace must read back: a node answer recoup cannot parse fails now, not later.
    for f in files.iter().filter(|f| f.role == "traces") {
        super::format::parse_diff_bytes(Path::new(&f.name), &f.bytes)?;
    }
    let vault_totals = if opts.vaults.is_empty() {
        None
    } else {
        let before = first_block
            .checked_sub(1)
            .ok_or_else(|| TraceError::Config {
                what: "--vault".into(),
                message: format!("no block before block {first_block} to call at"),
            })?;
        let mut done = done;
        let mut vaults = Vec::with_capacity(opts.vaults.len());
        for v in &opts.vaults {
            let total_assets_before = c.call_uint(*v, totalAssetsCall {}, before).await?;
            let total_supply_before = c.call_uint(*v, totalSupplyCall {}, before).await?;
            done += 2;
            tick(done, total);
            let total_assets_after = c.call_uint(*v, totalAssetsCall {}, last_block).await?;
            let total_supply_after = c.call_uint(*v, totalSupplyCall {}, last_block).await?;
            done += 2;
            tick(done, total);
            vaults.push(VaultCalls {
                address: *v,
                total_assets_before,
                total_assets_after,
                total_supply_before,
                total_supply_after,
            });
        }
        let (first_tx, last_tx) = edges.unzip();
        let f = VaultCallsFile {
            chain_id,
            before_block: before,
            after_block: last_block,
            first_tx,
            last_tx,
            vaults,
        };
        let mut bytes = serde_json::to_vec_pretty(&f).map_err(|e| TraceError::Json {
            file: VAULT_TOTALS_FILE.into(),
            line: 0,
            column: 0,
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        files.push(FetchedFile {
            name: VAULT_TOTALS_FILE.to_owned(),
            role: "vault_totals",
            bytes,
        });
        Some(f)
    };
    Ok(Fetched {
        chain_id,
        files,
        vault_totals,
    })
}

/// The `[state_diff]` lines naming the fetched files (paths relative to `dir_in_manifest`).
/// With vault totals, also the window they were called around (`start_block`, `end_block`)
/// and a `[[state_diff.vaults]]` table per vault naming [`VAULT_TOTALS_FILE`] as `totals`
/// (its `name`, `asset` and `shares_layout` left to fill in).
pub fn manifest_snippet(f: &Fetched, dir_in_manifest: &str) -> String {
    let path = |name: &str| format!("{:?}", format!("{dir_in_manifest}/{name}"));
    let list = |role: &str| {
        let v: Vec<String> = f
            .files
            .iter()
            .filter(|x| x.role == role)
            .map(|x| path(&x.name))
            .collect();
        format!("[{}]", v.join(", "))
    };
    let window = match &f.vault_totals {
        Some(t) => format!(
            "window = {{ start_block = {}, end_block = {} }}   # the blocks {VAULT_TOTALS_FILE} was called around\n",
            t.before_block + 1,
            t.after_block
        ),
        None => String::new(),
    };
    let mut s = format!(
        "[state_diff]\nchain_id = {}\ntraces = {}\ncall_traces = {}\n{window}# tokens, vaults and window: add [[state_diff.tokens]] / [[state_diff.vaults]] here\n\n[state_diff.eth]\nreceipts = {}\nblocks = {}\n",
        f.chain_id,
        list("traces"),
        list("call_traces"),
        list("receipts"),
        list("blocks")
    );
    for v in f.vault_totals.iter().flat_map(|t| &t.vaults) {
        s.push_str(&format!(
            "\n[[state_diff.vaults]]   # add name, asset and shares_layout\naddress = \"{}\"\ntotals = {}\n",
            v.address,
            path(VAULT_TOTALS_FILE)
        ));
    }
    s
}

/// Writes every file into `dir` (created if needed) all-or-nothing: files are written to a
/// temporary directory beside it and renamed into place only when all are written. An
/// existing file of the same name is an error unless `overwrite`.
///
/// # Errors
/// [`TraceError::Io`] naming the file; [`TraceError::Config`] when a file exists.
pub fn write_all(
    dir: &Path,
    files: &[FetchedFile],
    overwrite: bool,
) -> Result<Vec<PathBuf>, TraceError> {
    let io = |file: &Path| {
        let file = file.to_owned();
        move |source| TraceError::Io { file, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if !overwrite {
        if let Some(f) = files.iter().find(|f| dir.join(&f.name).exists()) {
            return Err(TraceError::Config {
                what: "--out".into(),
                message: format!(
                    "{} exists; pass --force to overwrite",
                    dir.join(&f.name).display()
                ),
            });
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(".recoup-ingest-")
        .tempdir_in(dir)
        .map_err(io(dir))?;
    for f in files {
        let p = tmp.path().join(&f.name);
        std::fs::write(&p, &f.bytes).map_err(io(&p))?;
    }
    let mut out = Vec::new();
    for f in files {
        let to = dir.join(&f.name);
        std::fs::rename(tmp.path().join(&f.name), &to).map_err(io(&to))?;
        out.push(to);
    }
    Ok(out)
}
