//! From a manifest's `[state_diff]` section to plain data the loss stage consumes:
//! per-account balance changes, vault totals, share balances, share-price losses, and the
//! report of changed token slots no candidate holder explains.

use super::diff::{Change, SlotTable, Timeline, TxDiff, WindowValue, WordMap};
use super::format::{self, LogEntry};
use super::layout::{erc7201_root, mapping_slots, BalanceLayout, MappingOrder, PRESETS};
use super::TraceError;
use crate::primitives::{parse_address, Address, Amount, B256, U256};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The manifest section naming state-diff inputs (`[state_diff]` in TOML).
///
/// Paths are relative to the manifest's directory. Every table rejects unknown keys.
///
/// ```toml
/// [state_diff]
/// chain_id = 31337
/// # Chained in this order; a bare debug_traceTransaction result may be annotated.
/// traces = ["traces/range_3_17.json", { path = "traces/exploit.json", block = 17, tx = "0x2ed5…" }]
/// call_traces = ["traces/exploit.calltracer.json"]   # holder candidates (frames, logs)
/// transfer_logs = ["traces/token_transfer_logs.json"]
/// holders = "holders.txt"                            # optional, one address a line
/// window = { start_block = 17, end_block = 17 }      # or start_tx / end_tx; default: all
///
/// [[state_diff.tokens]]
/// asset = "TUSD"
/// address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
/// layout = "oz"            # a preset, or a table:
/// # layout = { base_slot = "51", order = "vyper", mask = "0x7fff…", total_supply_slot = "53" }
/// # layout = { erc7201 = "openzeppelin.storage.ERC20" }
///
/// [[state_diff.vaults]]
/// name = "vTUSD"
/// address = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
/// asset = "TUSD"                       # the underlying: a `tokens` entry
/// shares_layout = { base_slot = "0", total_supply_slot = "1" }
/// # total_assets_slot = "3"            # default: the vault's balance of the underlying
/// # virtual_offset = 0                 # OZ 5 ERC4626: (TA + 1) / (TS + 10^offset)
/// # totals = "traces/vault_totals.json"  # totals by eth_call (`recoup ingest --vault`):
/// #   the window must start and end on block edges, see `calls`
///
/// [state_diff.eth]                     # optional: ETH balance changes, gas excluded
/// asset = "ETH"
/// receipts = ["traces/receipts.json"]
/// blocks = ["traces/blocks.json"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDiffConfig {
    /// Chain id every file that declares one must match.
    pub chain_id: u64,
    /// State-diff files, chained in this order.
    pub traces: Vec<TraceInput>,
    /// callTracer files (holder candidates from frames and logs).
    #[serde(default)]
    pub call_traces: Vec<PathBuf>,
    /// Log files (`eth_getLogs` arrays or receipts): Transfer `from`/`to` are candidates.
    #[serde(default)]
    pub transfer_logs: Vec<PathBuf>,
    /// Optional holder list: one address a line (`#` comments, blank lines allowed).
    #[serde(default)]
    pub holders: Option<PathBuf>,
    /// The incident window inside the chained history.
    #[serde(default)]
    pub window: WindowSpec,
    /// ERC-20 tokens to decode.
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    /// Vaults whose share price is measured.
    #[serde(default)]
    pub vaults: Vec<VaultSpec>,
    /// ETH balance changes.
    #[serde(default)]
    pub eth: Option<EthSpec>,
}

/// A trace file: a path, or a table that also says which block and transaction a bare
/// result (without its own hash) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TraceInput {
    /// Just the path.
    Path(PathBuf),
    /// Path plus annotations.
    Annotated(AnnotatedTrace),
}

/// A trace file with the block and transaction hash of a single-transaction result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotatedTrace {
    /// The file.
    pub path: PathBuf,
    /// Block number of every entry without one.
    #[serde(default)]
    pub block: Option<u64>,
    /// Transaction hash of a single-entry file without one.
    #[serde(default)]
    pub tx: Option<B256>,
}

impl TraceInput {
    /// The file path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Path(p) => p,
            Self::Annotated(a) => &a.path,
        }
    }
}

/// The incident window: the transactions whose effect is measured. Bounds are inclusive;
/// a missing bound is the start or end of the history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// First block of the window.
    #[serde(default)]
    pub start_block: Option<u64>,
    /// Last block of the window.
    #[serde(default)]
    pub end_block: Option<u64>,
    /// First transaction of the window.
    #[serde(default)]
    pub start_tx: Option<B256>,
    /// Last transaction of the window.
    #[serde(default)]
    pub end_tx: Option<B256>,
}

/// A storage layout: a preset name (see [`PRESETS`]) or explicit fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LayoutSpec {
    /// `"oz"`, `"solmate"`, `"usdc"`, …
    Preset(String),
    /// Explicit fields.
    Custom(CustomLayout),
}

/// Explicit layout fields. Slots are decimal or `0x` hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomLayout {
    /// Start from this preset and override the fields given.
    #[serde(default)]
    pub preset: Option<String>,
    /// Base slot of `balanceOf`.
    #[serde(default)]
    pub base_slot: Option<String>,
    /// ERC-7201 namespace id; the balances mapping is at its root + `erc7201_field`.
    #[serde(default)]
    pub erc7201: Option<String>,
    /// Field index of the balances mapping inside the ERC-7201 struct (default 0).
    #[serde(default)]
    pub erc7201_field: Option<u64>,
    /// Hash order (`solidity` default, `vyper`).
    #[serde(default)]
    pub order: Option<MappingOrder>,
    /// Mask of the balance bits of the stored word.
    #[serde(default)]
    pub mask: Option<String>,
    /// Slot of `totalSupply`.
    #[serde(default)]
    pub total_supply_slot: Option<String>,
    /// Base slot of `allowance[owner][spender]`.
    #[serde(default)]
    pub allowance_slot: Option<String>,
}

/// An ERC-20 to decode from storage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Asset symbol (a key of the manifest's assets).
    pub asset: String,
    /// Token contract (EIP-55 checked when mixed case).
    pub address: String,
    /// Its balance layout.
    pub layout: LayoutSpec,
}

/// A vault (ERC-4626-style) whose holders lose through its share price.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSpec {
    /// Pool name for the loss rows.
    pub name: String,
    /// Vault contract; it is also the share token.
    pub address: String,
    /// Underlying asset symbol (a `tokens` entry unless `total_assets_slot` is given).
    pub asset: String,
    /// Layout of the share balances; `total_supply_slot` is required (here or by preset).
    pub shares_layout: LayoutSpec,
    /// Slot holding total assets; default: the vault's balance of the underlying token.
    #[serde(default)]
    pub total_assets_slot: Option<String>,
    /// OpenZeppelin 5 ERC4626 virtual offset: assets = shares × (TA + 1) / (TS + 10^offset).
    /// Absent: assets = shares × TA / TS.
    #[serde(default)]
    pub virtual_offset: Option<u8>,
    /// A vault totals file written by `recoup ingest --vault` ([`super::calls`]): total
    /// assets and supply before and after come from its `totalAssets()` / `totalSupply()`
    /// calls instead of the diffs. Its chain id, this vault's address and its blocks must
    /// fit the window, which must start with its first block's first transaction and end
    /// with its last block's last one (a call at block N sees all of block N). Not with
    /// `total_assets_slot`.
    #[serde(default)]
    pub totals: Option<PathBuf>,
}

/// ETH balance changes, with gas paid excluded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthSpec {
    /// Asset symbol for ETH rows (default `ETH`).
    #[serde(default = "eth_symbol")]
    pub asset: String,
    /// Receipt files (`eth_getTransactionReceipt` objects, an array of them, or recoup
    /// node records): `transactionHash`, `from`, `gasUsed`, `effectiveGasPrice`, `blockNumber`.
    pub receipts: Vec<PathBuf>,
    /// Block header files (`eth_getBlockByNumber`): `number`, `miner`, `baseFeePerGas`.
    pub blocks: Vec<PathBuf>,
}

fn eth_symbol() -> String {
    "ETH".to_owned()
}

/// One account's balance of one asset at the window's start and end (base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    /// The holder.
    pub account: Address,
    /// Asset symbol.
    pub asset: String,
    /// Balance before the window.
    pub before: Amount,
    /// Balance after the window (for ETH: with the gas the account paid added back).
    pub after: Amount,
}

/// A vault's totals before and after the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultTotals {
    /// Vault (pool) name.
    pub vault: String,
    /// Vault contract.
    pub address: Address,
    /// Underlying asset symbol.
    pub asset: String,
    /// Total assets before, base units of the underlying.
    pub total_assets_before: Amount,
    /// Total assets after.
    pub total_assets_after: Amount,
    /// Total shares before, base units of the share token.
    pub total_supply_before: Amount,
    /// Total shares after.
    pub total_supply_after: Amount,
}

/// A holder's vault shares before and after the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBalance {
    /// Vault name.
    pub vault: String,
    /// The holder.
    pub account: Address,
    /// Shares before.
    pub before: Amount,
    /// Shares after.
    pub after: Amount,
}

/// A holder's loss through the share price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLoss {
    /// Vault name.
    pub vault: String,
    /// The holder.
    pub account: Address,
    /// Underlying asset symbol (the loss is in its base units).
    pub asset: String,
    /// Shares held before the window.
    pub shares: Amount,
    /// `convertToAssets(shares)` before.
    pub value_before: Amount,
    /// `convertToAssets(shares)` with the totals after.
    pub value_after: Amount,
    /// `value_before − value_after`, zero when the price rose.
    pub loss: Amount,
}

/// A changed token slot that matched no candidate holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedSlot {
    /// The slot.
    pub slot: B256,
    /// Word before the window.
    pub before: B256,
    /// Word after the window.
    pub after: B256,
}

/// Changed slots of one token (inside the window) that are neither a candidate's balance,
/// a candidate pair's allowance, nor the declared total supply: reported, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedSlots {
    /// Asset symbol (or vault name for share tokens).
    pub asset: String,
    /// Token contract.
    pub token: Address,
    /// How many.
    pub count: usize,
    /// Sum over them of `|after − before|` read as integers (masked), base units when they
    /// are balances of holders nobody named.
    pub value_moved: Amount,
    /// The slots, sorted.
    pub slots: Vec<UnmatchedSlot>,
}

/// What [`decode`] returns: plain data for the loss stage. Every list is sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedState {
    /// Chain id.
    pub chain_id: u64,
    /// Transactions chained.
    pub txs: usize,
    /// Transactions in the window.
    pub window_txs: usize,
    /// Balance changes inside the window, sorted by (asset, account); ETH included when
    /// configured. Accounts whose balance did not change are left out.
    pub balance_changes: Vec<BalanceChange>,
    /// Vault totals, in manifest order.
    pub vaults: Vec<VaultTotals>,
    /// Share balances of every matched holder (non-zero before or after), sorted by (vault, account).
    pub share_balances: Vec<ShareBalance>,
    /// Share-price losses, sorted by (vault, account); zero losses left out.
    pub share_losses: Vec<ShareLoss>,
    /// Unexplained changed slots, per token with any.
    pub unmatched: Vec<UnmatchedSlots>,
}

fn parse_slot(s: &str) -> Option<B256> {
    let v = match s.strip_prefix("0x") {
        Some(h) => U256::from_str_radix(h, 16).ok()?,
        None => U256::from_str_radix(s, 10).ok()?,
    };
    Some(B256::from(v))
}

/// Resolves a layout spec for `what` (an asset or vault name).
///
/// # Errors
/// [`TraceError::UnknownLayout`] for an unknown preset, [`TraceError::Config`] for a
/// malformed slot or mask.
pub fn resolve_layout(spec: &LayoutSpec, what: &str) -> Result<BalanceLayout, TraceError> {
    let preset = |name: &str| {
        BalanceLayout::preset(name).ok_or_else(|| TraceError::UnknownLayout {
            asset: what.to_owned(),
            layout: name.to_owned(),
            known: PRESETS.join(", "),
        })
    };
    let c = match spec {
        LayoutSpec::Preset(p) => return preset(p),
        LayoutSpec::Custom(c) => c,
    };
    let slot = |field: &str, v: &Option<String>| -> Result<Option<B256>, TraceError> {
        v.as_deref()
            .map(|s| {
                parse_slot(s).ok_or_else(|| TraceError::Config {
                    what: format!("{what}: layout.{field}"),
                    message: format!("expected a decimal or 0x-hex slot, got {s:?}"),
                })
            })
            .transpose()
    };
    let mut l = match &c.preset {
        Some(p) => preset(p)?,
        None => BalanceLayout::solidity(B256::ZERO),
    };
    if c.preset.is_none() && c.base_slot.is_none() && c.erc7201.is_none() {
        return Err(TraceError::UnknownLayout {
            asset: what.to_owned(),
            layout: "(no preset, base_slot or erc7201)".into(),
            known: PRESETS.join(", "),
        });
    }
    if let Some(b) = slot("base_slot", &c.base_slot)? {
        l.base = b;
    }
    if let Some(id) = &c.erc7201 {
        let root = U256::from_be_bytes(erc7201_root(id).0);
        l.base = B256::from(root | U256::from(c.erc7201_field.unwrap_or(0)));
    }
    if let Some(o) = c.order {
        l.order = o;
    }
    if let Some(m) = slot("mask", &c.mask)? {
        l.mask = U256::from_be_bytes(m.0);
    }
    if let Some(t) = slot("total_supply_slot", &c.total_supply_slot)? {
        l.total_supply = Some(t);
    }
    if let Some(a) = slot("allowance_slot", &c.allowance_slot)? {
        l.allowance = Some(a);
    }
    Ok(l)
}

fn addr(s: &str, what: &str) -> Result<Address, TraceError> {
    parse_address(s).map_err(|e| TraceError::Config {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// Reads every file the section names, chains the diffs, and decodes balances, vault
/// totals and share-price losses. `base_dir` resolves relative paths (the manifest's
/// directory).
///
/// Holder candidates: every address in the diffs, in call traces (frames and logs), in
/// Transfer logs, in the holder list, and every configured token and vault.
///
/// # Rounding
/// A holder's asset value is `floor(shares × TA / TS)` (or with the virtual offset
/// `floor(shares × (TA + 1) / (TS + 10^offset))`), exactly what `convertToAssets` returns
/// for these vaults; the loss is `value_before − value_after`, so the sum of losses may
/// differ from the vault's drop by at most one base unit per holder (floor dust).
///
/// # Errors
/// Any [`TraceError`]: unreadable or malformed files (named with line and column), a chain
/// gap, a file for another chain id, an unknown layout, a window bound not found, a vault
/// whose totals are unknown from the diffs, a vault totals file that does not fit the vault
/// or the window ([`TraceError::VaultCalls`]), a missing receipt for ETH.
pub fn decode(config: &StateDiffConfig, base_dir: &Path) -> Result<DecodedState, TraceError> {
    // Files are read and parsed in parallel; the first failing file in manifest order is
    // the error, as when reading them one by one.
    let t = crate::timing::StageTimer::new();
    let files: Vec<Result<Vec<TxDiff>, TraceError>> = config
        .traces
        .par_iter()
        .map(|t| read_trace(config, base_dir, t))
        .collect();
    let mut diffs: Vec<TxDiff> = Vec::with_capacity(files.iter().flatten().map(Vec::len).sum());
    for f in files {
        diffs.extend(f?);
    }
    t.lap("sd.parse");
    let out = decode_diffs(config, base_dir, diffs);
    t.lap("sd.decode+drop");
    out
}

/// Reads one `traces` entry: its diffs, with the manifest's annotations applied.
fn read_trace(
    config: &StateDiffConfig,
    base_dir: &Path,
    t: &TraceInput,
) -> Result<Vec<TxDiff>, TraceError> {
    let path = base_dir.join(t.path());
    let f = format::read_diff_file(&path)?;
    if let Some(c) = f.chain_id {
        if c != config.chain_id {
            return Err(TraceError::WrongChain {
                file: path,
                expected: config.chain_id,
                got: c,
            });
        }
    }
    let mut txs = f.txs;
    if let TraceInput::Annotated(a) = t {
        for d in &mut txs {
            d.block = d.block.or(a.block);
        }
        if let Some(h) = a.tx {
            if txs.len() != 1 {
                return Err(TraceError::Config {
                    what: format!("traces: {}", path.display()),
                    message: format!(
                        "`tx` annotates a single-transaction file, this one has {}",
                        txs.len()
                    ),
                });
            }
            txs[0].tx_hash = Some(h);
        }
    }
    Ok(txs)
}

/// As [`decode`], over diffs already read (used by `recoup ingest` and benchmarks).
///
/// # Errors
/// As [`decode`], minus the file reading of the traces.
pub fn decode_diffs(
    config: &StateDiffConfig,
    base_dir: &Path,
    diffs: Vec<TxDiff>,
) -> Result<DecodedState, TraceError> {
    let t = crate::timing::StageTimer::new();
    let diffs = dedupe(diffs)?;
    let window = resolve_window(&config.window, &diffs)?;
    let tl = Timeline::build(&diffs, window)?;
    t.lap("sd.chain");

    // Candidates.
    let mut cands: Vec<Address> = Vec::new();
    for d in &diffs {
        cands.extend(d.accounts.keys().copied());
    }
    let mut logs: Vec<LogEntry> = Vec::new();
    for p in &config.call_traces {
        let (a, mut l) = format::read_call_trace_file(&base_dir.join(p))?;
        cands.extend(a);
        logs.append(&mut l);
    }
    for p in &config.transfer_logs {
        logs.extend(format::read_logs_file(&base_dir.join(p))?);
    }
    format::log_addresses(&logs, &mut cands);
    if let Some(h) = &config.holders {
        cands.extend(read_holders(&base_dir.join(h))?);
    }
    let mut tokens = Vec::new();
    for t in &config.tokens {
        let a = addr(&t.address, &format!("tokens.{}.address", t.asset))?;
        tokens.push((t.asset.clone(), a, resolve_layout(&t.layout, &t.asset)?));
        cands.push(a);
    }
    let mut vaults = Vec::new();
    for v in &config.vaults {
        let a = addr(&v.address, &format!("vaults.{}.address", v.name))?;
        let l = resolve_layout(&v.shares_layout, &v.name)?;
        if l.total_supply.is_none() {
            return Err(TraceError::Config {
                what: format!("vaults.{}.shares_layout", v.name),
                message: "needs total_supply_slot".into(),
            });
        }
        // Totals by eth_call, checked now: a file that does not fit fails before the work.
        let calls = match &v.totals {
            None => None,
            Some(p) => {
                if v.total_assets_slot.is_some() {
                    return Err(TraceError::Config {
                        what: format!("vaults.{}", v.name),
                        message: "give `totals` or `total_assets_slot`, not both".into(),
                    });
                }
                let path = base_dir.join(p);
                let f = super::calls::read_calls_file(&path)?;
                let c = super::calls::totals_for(
                    &f,
                    &path,
                    config.chain_id,
                    &v.name,
                    a,
                    &diffs,
                    window,
                )?;
                Some(Totals {
                    assets: Change {
                        from: c.total_assets_before.value.raw(),
                        to: c.total_assets_after.value.raw(),
                    },
                    supply: Change {
                        from: c.total_supply_before.value.raw(),
                        to: c.total_supply_after.value.raw(),
                    },
                })
            }
        };
        vaults.push((v, a, l, calls));
        cands.push(a);
    }
    cands.par_sort_unstable();
    cands.dedup();
    t.lap("sd.cands");

    // Which candidate holds which changed slot. Entries are the tokens, then the vaults'
    // share tokens. Entries with the same layout (order, base) share one hash per
    // candidate, which is looked up in the changed slots of each of their contracts (read
    // only, in parallel; hits come back in candidate order, so each entry's are sorted by
    // holder). A slot is matched by at most one candidate: two candidates hashing to the
    // same slot would be a keccak-256 collision.
    let entries: Vec<(Address, &BalanceLayout)> = tokens
        .iter()
        .map(|(_, a, l)| (*a, l))
        .chain(vaults.iter().map(|(_, a, l, _)| (*a, l)))
        .collect();
    let mut groups: Vec<LayoutGroup<'_>> = Vec::new();
    for (k, (token, l)) in entries.iter().enumerate() {
        let Some(t) = tl.slot_table(*token) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == (l.order, l.base)) {
            Some((_, ks)) => ks.push((k, t)),
            None => groups.push(((l.order, l.base), vec![(k, t)])),
        }
    }
    let mut hits: Vec<Vec<Hit>> = vec![Vec::new(); entries.len()];
    for ((o, b), ks) in &groups {
        let filter = SlotFilter::new(
            ks.iter().flat_map(|(_, t)| t.slots()),
            ks.iter().map(|(_, t)| t.len()).sum(),
        );
        // Candidates go in batches: hash the whole batch, then probe, so the probes (cache
        // misses into large maps) are independent and overlap.
        let found: Vec<(usize, Hit)> = cands
            .par_chunks(256)
            .flat_map_iter(|batch| {
                let mut slots: Vec<B256> = Vec::with_capacity(batch.len());
                mapping_slots(*o, batch, *b, &mut slots);
                let mut found = Vec::new();
                for (h, slot) in batch.iter().zip(slots) {
                    if !filter.may_contain(&slot) {
                        continue;
                    }
                    for (k, t) in ks {
                        if let Some(value) = t.get(&slot) {
                            found.push((
                                *k,
                                Hit {
                                    holder: *h,
                                    slot,
                                    value,
                                },
                            ));
                        }
                    }
                }
                found
            })
            .collect();
        for (k, hit) in found {
            hits[k].push(hit);
        }
    }
    let mut hits = hits.into_iter();
    t.lap("sd.match");

    let mut out = DecodedState {
        chain_id: config.chain_id,
        txs: tl.len(),
        window_txs: window.1 - window.0,
        ..Default::default()
    };
    // Balances of each token at start/end: token → (account, change, changed in window),
    // sorted by account.
    let mut balances: HashMap<Address, Held> = HashMap::new();
    let decode_token = |name: &str,
                        token: Address,
                        l: &BalanceLayout,
                        hits: Vec<Hit>,
                        out: &mut DecodedState|
     -> Held {
        // Changed slots no candidate explains: only searched for when the counts differ.
        let eligible = |slot: &B256, v: &WindowValue<B256>| {
            v.changed_in_window && Some(*slot) != l.total_supply
        };
        let explained = hits.iter().filter(|x| eligible(&x.slot, &x.value)).count();
        let changed = tl.slots_of(token).filter(|(s, v)| eligible(s, v)).count();
        let mut unmatched = Vec::new();
        if changed > explained {
            let hit: WordMap<B256, ()> = hits.iter().map(|x| (x.slot, ())).collect();
            for (slot, v) in tl.slots_of(token) {
                if eligible(&slot, &v) && !hit.contains_key(&slot) {
                    unmatched.push(UnmatchedSlot {
                        slot,
                        before: v.start,
                        after: v.end,
                    });
                }
            }
        }
        let held: Held = hits
            .into_iter()
            .map(|x| {
                (
                    x.holder,
                    Change {
                        from: l.balance(x.value.start),
                        to: l.balance(x.value.end),
                    },
                    x.value.changed_in_window,
                )
            })
            .collect();
        if !unmatched.is_empty() && l.allowance.is_some() {
            // Allowances of (owner, spender) pairs: owners are this token's holders.
            let owners: Vec<Address> = held.iter().map(|(h, ..)| *h).collect();
            if owners.len().saturating_mul(cands.len()) <= 4_000_000 {
                let want: HashSet<B256> = unmatched.iter().map(|u| u.slot).collect();
                let found: HashSet<B256> = owners
                    .par_iter()
                    .flat_map_iter(|o| cands.iter().filter_map(move |s| l.allowance_slot(*o, *s)))
                    .filter(|s| want.contains(s))
                    .collect();
                unmatched.retain(|u| !found.contains(&u.slot));
            }
        }
        if !unmatched.is_empty() {
            unmatched.sort_by_key(|u| u.slot);
            let mut moved = Amount::ZERO;
            for u in &unmatched {
                let (a, b) = (l.balance(u.before), l.balance(u.after));
                let d = if a > b { a - b } else { b - a };
                moved = moved.checked_add(Amount::new(d)).unwrap_or(Amount::MAX);
            }
            out.unmatched.push(UnmatchedSlots {
                asset: name.to_owned(),
                token,
                count: unmatched.len(),
                value_moved: moved,
                slots: unmatched,
            });
        }
        held
    };
    for (asset, token, l) in &tokens {
        let held = decode_token(asset, *token, l, hits.next().unwrap_or_default(), &mut out);
        for (h, c, ch) in &held {
            if *ch && c.from != c.to {
                out.balance_changes.push(BalanceChange {
                    account: *h,
                    asset: asset.clone(),
                    before: Amount::new(c.from),
                    after: Amount::new(c.to),
                });
            }
        }
        balances.insert(*token, held);
    }

    for (v, vaddr, l, calls) in &vaults {
        let shares = decode_token(
            &v.name,
            *vaddr,
            l,
            hits.next().unwrap_or_default(),
            &mut out,
        );
        let t = match calls {
            Some(t) => *t,
            None => totals_from_diffs(v, *vaddr, l, &tl, &tokens, &balances)?,
        };
        let (ta_b, ta_a, ts_b, ts_a) = (t.assets.from, t.assets.to, t.supply.from, t.supply.to);
        out.vaults.push(VaultTotals {
            vault: v.name.clone(),
            address: *vaddr,
            asset: v.asset.clone(),
            total_assets_before: Amount::new(ta_b),
            total_assets_after: Amount::new(ta_a),
            total_supply_before: Amount::new(ts_b),
            total_supply_after: Amount::new(ts_a),
        });
        for (h, c, _) in &shares {
            if c.from.is_zero() && c.to.is_zero() {
                continue;
            }
            out.share_balances.push(ShareBalance {
                vault: v.name.clone(),
                account: *h,
                before: Amount::new(c.from),
                after: Amount::new(c.to),
            });
            let vb = convert_to_assets(Amount::new(c.from), ta_b, ts_b, v.virtual_offset)?;
            let va = convert_to_assets(Amount::new(c.from), ta_a, ts_a, v.virtual_offset)?;
            let loss = vb.saturating_sub(va);
            if !loss.is_zero() {
                out.share_losses.push(ShareLoss {
                    vault: v.name.clone(),
                    account: *h,
                    asset: v.asset.clone(),
                    shares: Amount::new(c.from),
                    value_before: vb,
                    value_after: va,
                    loss,
                });
            }
        }
    }

    if let Some(eth) = &config.eth {
        eth_changes(eth, base_dir, &diffs, &tl, &mut out)?;
    }
    out.balance_changes
        .sort_by(|a, b| (&a.asset, a.account).cmp(&(&b.asset, b.account)));
    out.share_balances
        .sort_by(|a, b| (&a.vault, a.account).cmp(&(&b.vault, b.account)));
    out.share_losses
        .sort_by(|a, b| (&a.vault, a.account).cmp(&(&b.vault, b.account)));
    t.lap("sd.rows");
    Ok(out)
}

/// A vault's totals over the window in base units: `assets` of the underlying
/// (`totalAssets`), `supply` of its shares (`totalSupply`).
#[derive(Clone, Copy)]
struct Totals {
    assets: Change<U256>,
    supply: Change<U256>,
}

/// A vault's totals from the diffs: supply from its `total_supply` slot; assets from
/// `total_assets_slot`, or else from its balance of the underlying (a `tokens` entry).
///
/// # Errors
/// [`TraceError::VaultUnknown`] when a total never changes in the traces;
/// [`TraceError::Config`] for a bad `total_assets_slot` or an underlying that is not a
/// `tokens` entry.
fn totals_from_diffs(
    v: &VaultSpec,
    vaddr: Address,
    l: &BalanceLayout,
    tl: &Timeline,
    tokens: &[(String, Address, BalanceLayout)],
    balances: &HashMap<Address, Held>,
) -> Result<Totals, TraceError> {
    let ts_slot = l.total_supply.unwrap_or_default();
    let ts = tl.slot(vaddr, ts_slot).ok_or_else(|| TraceError::VaultUnknown {
        vault: v.name.clone(),
        what: format!("totalSupply (slot {ts_slot}) never changes in the traces; add earlier history (e.g. the deposits) to `traces`"),
    })?;
    let supply = Change {
        from: l.balance(ts.start),
        to: l.balance(ts.end),
    };
    if let Some(s) = &v.total_assets_slot {
        let slot = parse_slot(s).ok_or_else(|| TraceError::Config {
            what: format!("vaults.{}.total_assets_slot", v.name),
            message: format!("expected a slot, got {s:?}"),
        })?;
        let w = tl
            .slot(vaddr, slot)
            .ok_or_else(|| TraceError::VaultUnknown {
                vault: v.name.clone(),
                what: format!("total assets slot {slot} never changes in the traces"),
            })?;
        let assets = Change {
            from: super::diff::word(w.start),
            to: super::diff::word(w.end),
        };
        return Ok(Totals { assets, supply });
    }
    let (_, token, _) = tokens
        .iter()
        .find(|(a, _, _)| *a == v.asset)
        .ok_or_else(|| TraceError::Config {
            what: format!("vaults.{}.asset", v.name),
            message: format!(
                "{:?} is not a `tokens` entry; declare it or give total_assets_slot",
                v.asset
            ),
        })?;
    let held = &balances[token];
    let i = held
        .binary_search_by_key(&vaddr, |(h, ..)| *h)
        .map_err(|_| TraceError::VaultUnknown {
            vault: v.name.clone(),
            what: format!("its {} balance never changes in the traces", v.asset),
        })?;
    Ok(Totals {
        assets: held[i].1,
        supply,
    })
}

/// A bitset over the leading 64 bits of a set of slots (about 16 bits per slot, at most
/// 16 MiB), so that most candidates whose slot is not in the set are turned away without
/// a probe into the (much larger) slot maps. No false negatives: every slot of the set
/// has its bit set.
struct SlotFilter {
    bits: Vec<u64>,
    shift: u32,
}

impl SlotFilter {
    fn new<'a>(slots: impl Iterator<Item = &'a B256>, n: usize) -> Self {
        let log2 = n
            .saturating_mul(16)
            .clamp(1 << 12, 1 << 27)
            .next_power_of_two()
            .trailing_zeros();
        let mut f = SlotFilter {
            bits: vec![0; (1usize << log2) / 64],
            shift: 64 - log2,
        };
        for s in slots {
            let i = f.index(s);
            f.bits[i / 64] |= 1 << (i % 64);
        }
        f
    }

    fn index(&self, slot: &B256) -> usize {
        let lead = u64::from_be_bytes(slot.0[..8].try_into().unwrap_or_default());
        (lead >> self.shift) as usize
    }

    fn may_contain(&self, slot: &B256) -> bool {
        let i = self.index(slot);
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Entries (by index) sharing one mapping layout `(order, base)`, each with its
/// contract's changed slots.
type LayoutGroup<'a> = ((MappingOrder, B256), Vec<(usize, SlotTable<'a>)>);

/// A candidate whose balance slot changed in an entry's contract.
#[derive(Clone)]
struct Hit {
    holder: Address,
    slot: B256,
    value: WindowValue<B256>,
}

/// One token's holders: (account, balance change, changed inside the window), sorted by
/// account.
type Held = Vec<(Address, Change<U256>, bool)>;

/// `convertToAssets(shares)` of a vault with totals `ta`, `ts`.
///
/// # Rounding
/// Floor, as Solidity's integer division and OpenZeppelin's `Math.Rounding.Floor`:
/// `floor(shares × TA / TS)`, or `floor(shares × (TA + 1) / (TS + 10^offset))` with an
/// OpenZeppelin 5 virtual offset. An empty vault (`TS == 0` without offset) is worth 0.
///
/// # Errors
/// [`TraceError::Amount`] on overflow.
pub fn convert_to_assets(
    shares: Amount,
    ta: U256,
    ts: U256,
    virtual_offset: Option<u8>,
) -> Result<Amount, TraceError> {
    let (num, den) = match virtual_offset {
        None => (ta, ts),
        Some(o) => {
            let ten = U256::from(10u8)
                .checked_pow(U256::from(o))
                .ok_or(TraceError::Amount(crate::primitives::AmountError::Overflow))?;
            (
                ta.checked_add(U256::from(1u8))
                    .ok_or(TraceError::Amount(crate::primitives::AmountError::Overflow))?,
                ts.checked_add(ten)
                    .ok_or(TraceError::Amount(crate::primitives::AmountError::Overflow))?,
            )
        }
    };
    if den.is_zero() {
        return Ok(Amount::ZERO);
    }
    Ok(shares.mul_div_floor(num, den)?)
}

fn dedupe(diffs: Vec<TxDiff>) -> Result<Vec<TxDiff>, TraceError> {
    let mut seen: HashMap<B256, usize> = HashMap::new();
    let mut out: Vec<TxDiff> = Vec::with_capacity(diffs.len());
    for d in diffs {
        if let Some(h) = d.tx_hash {
            if let Some(&i) = seen.get(&h) {
                if out[i].accounts != d.accounts {
                    return Err(TraceError::DuplicateTx {
                        tx: h,
                        first: out[i].file.clone(),
                        second: d.file.clone(),
                    });
                }
                continue;
            }
            seen.insert(h, out.len());
        }
        out.push(d);
    }
    Ok(out)
}

fn resolve_window(w: &WindowSpec, diffs: &[TxDiff]) -> Result<(usize, usize), TraceError> {
    let n = diffs.len();
    let mut start = 0;
    if let Some(b) = w.start_block {
        start = diffs
            .iter()
            .position(|d| d.block.is_some_and(|x| x >= b))
            .ok_or_else(|| TraceError::Window {
                what: format!("no transaction at or after start_block {b}"),
            })?;
    }
    if let Some(h) = w.start_tx {
        start = diffs
            .iter()
            .position(|d| d.tx_hash == Some(h))
            .ok_or_else(|| TraceError::Window {
                what: format!("start_tx {h} is not in the traces"),
            })?;
    }
    let mut end = n;
    if let Some(b) = w.end_block {
        end = diffs
            .iter()
            .rposition(|d| d.block.is_some_and(|x| x <= b))
            .map(|i| i + 1)
            .ok_or_else(|| TraceError::Window {
                what: format!("no transaction at or before end_block {b}"),
            })?;
    }
    if let Some(h) = w.end_tx {
        end = diffs
            .iter()
            .position(|d| d.tx_hash == Some(h))
            .map(|i| i + 1)
            .ok_or_else(|| TraceError::Window {
                what: format!("end_tx {h} is not in the traces"),
            })?;
    }
    if start >= end {
        return Err(TraceError::Window {
            what: format!("the window is empty (transactions {start}..{end} of {n})"),
        });
    }
    Ok((start, end))
}

/// Reads a holder list: one address a line; blank lines and `#` comments ignored.
///
/// # Errors
/// [`TraceError::Io`], [`TraceError::Holder`] naming the line.
pub fn read_holders(path: &Path) -> Result<Vec<Address>, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        file: path.to_owned(),
        source,
    })?;
    // Lines are parsed in parallel chunks; the first bad line in file order is the error.
    const CHUNK: usize = 8192;
    let lines: Vec<&str> = text.lines().collect();
    let chunks: Vec<Result<Vec<Address>, TraceError>> = lines
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let mut v = Vec::with_capacity(chunk.len());
            for (j, line) in chunk.iter().enumerate() {
                let s = line.split('#').next().unwrap_or("").trim();
                if s.is_empty() {
                    continue;
                }
                v.push(parse_address(s).map_err(|e| TraceError::Holder {
                    file: path.to_owned(),
                    line: c * CHUNK + j + 1,
                    message: e.to_string(),
                })?);
            }
            Ok(v)
        })
        .collect();
    let mut v = Vec::with_capacity(lines.len());
    for c in chunks {
        v.extend(c?);
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    transaction_hash: B256,
    from: Address,
    gas_used: alloy_primitives::U64,
    effective_gas_price: U256,
    block_number: alloy_primitives::U64,
    #[serde(default)]
    blob_gas_used: Option<alloy_primitives::U64>,
    #[serde(default)]
    blob_gas_price: Option<U256>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    number: alloy_primitives::U64,
    miner: Address,
    #[serde(default)]
    base_fee_per_gas: Option<U256>,
}

/// Reads JSON objects from a file: one object, an array, or recoup node records (their
/// `result`), flattened.
fn read_objects<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, TraceError> {
    let text = std::fs::read(path).map_err(|source| TraceError::Io {
        file: path.to_owned(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| TraceError::Json {
        file: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(a) => stack.extend(a.into_iter().rev()),
            serde_json::Value::Object(mut o)
                if o.contains_key("method") && o.contains_key("result") =>
            {
                stack.push(o.remove("result").unwrap_or_default())
            }
            v => out.push(serde_json::from_value(v).map_err(|e| TraceError::Json {
                file: path.to_owned(),
                line: 0,
                column: 0,
                message: e.to_string(),
            })?),
        }
    }
    Ok(out)
}

fn eth_changes(
    eth: &EthSpec,
    base_dir: &Path,
    diffs: &[TxDiff],
    tl: &Timeline,
    out: &mut DecodedState,
) -> Result<(), TraceError> {
    let mut receipts: HashMap<B256, Receipt> = HashMap::new();
    for p in &eth.receipts {
        for r in read_objects::<Receipt>(&base_dir.join(p))? {
            receipts.insert(r.transaction_hash, r);
        }
    }
    let mut headers: HashMap<u64, Header> = HashMap::new();
    for p in &eth.blocks {
        for h in read_objects::<Header>(&base_dir.join(p))? {
            headers.insert(h.number.to(), h);
        }
    }
    // Gas paid (added back) and priority fees received (taken off), per account.
    let mut add_back: HashMap<Address, Amount> = HashMap::new();
    let mut take_off: HashMap<Address, Amount> = HashMap::new();
    let (s, e) = tl.window();
    for d in &diffs[s..e] {
        let h = d.tx_hash.ok_or_else(|| TraceError::MissingReceipt {
            tx: d.label(),
            file: d.file.clone(),
        })?;
        let r = receipts.get(&h).ok_or_else(|| TraceError::MissingReceipt {
            tx: d.label(),
            file: d.file.clone(),
        })?;
        let gas = U256::from(r.gas_used.to::<u64>());
        let ovf = |_| TraceError::Amount(crate::primitives::AmountError::Overflow);
        let mut fee = Amount::new(gas)
            .checked_mul(r.effective_gas_price)
            .map_err(ovf)?;
        if let (Some(bg), Some(bp)) = (r.blob_gas_used, r.blob_gas_price) {
            fee = fee.checked_add(
                Amount::new(U256::from(bg.to::<u64>()))
                    .checked_mul(bp)
                    .map_err(ovf)?,
            )?;
        }
        let e = add_back.entry(r.from).or_default();
        *e = e.checked_add(fee)?;
        let b: u64 = r.block_number.to();
        let hd = headers.get(&b).ok_or_else(|| TraceError::MissingReceipt {
            tx: format!("{} (header of block {b})", d.label()),
            file: d.file.clone(),
        })?;
        let tip = r
            .effective_gas_price
            .saturating_sub(hd.base_fee_per_gas.unwrap_or_default());
        let e = take_off.entry(hd.miner).or_default();
        *e = e.checked_add(Amount::new(gas).checked_mul(tip).map_err(ovf)?)?;
    }
    for a in tl.balance_accounts() {
        let Some(v) = tl.balance(a) else { continue };
        let mut after = Amount::new(v.end);
        if let Some(f) = add_back.get(&a) {
            after = after.checked_add(*f)?;
        }
        if let Some(t) = take_off.get(&a) {
            after = after.checked_sub(*t)?;
        }
        let before = Amount::new(v.start);
        if v.changed_in_window && before != after {
            out.balance_changes.push(BalanceChange {
                account: a,
                asset: eth.asset.clone(),
                before,
                after,
            });
        }
    }
    Ok(())
}
