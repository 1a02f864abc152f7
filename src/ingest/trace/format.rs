//! Reading trace files in the shapes nodes return, into [`TxDiff`]s.
//!
//! Recognised shapes (detected from the JSON keys, never from the file name):
//! - geth `prestateTracer` with `diffMode`: a bare `{"pre","post"}` (the
//!   `debug_traceTransaction` result); the `[{"txHash","result"}]` array of
//!   `debug_traceBlockByNumber`; geth's tracer test case `{"genesis","context","result",..}`;
//!   an object of block number → `debug_traceBlockByNumber` array.
//! - Parity `stateDiff` (`trace_replayBlockTransactions` / `trace_replayTransaction`):
//!   one `{"output","stateDiff",..}` or an array of them.
//! - Tenderly `stateChanges` (simulation or trace result).
//! - recoup's own node record `{"chainId","method","params","result"}` written by
//!   `recoup ingest`, wrapping one of the above exactly as the node returned it.
//!
//! References: geth `eth/tracers/native/prestate.go`; OpenEthereum `trace` module docs;
//! alloy `alloy_rpc_types_trace::{geth, parity}`.

use super::diff::{AccountChange, AccountKind, Change, TxDiff};
use super::TraceError;
use crate::primitives::{Address, B256, U256};
use alloy_rpc_types_trace::geth::{AccountState, CallFrame, DiffMode};
use alloy_rpc_types_trace::parity::{Delta, StateDiff};
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A trace file's contents, with what its metadata says about where it came from.
#[derive(Debug, Clone)]
pub struct TraceFile {
    /// The file.
    pub path: PathBuf,
    /// The chain id the file declares (geth test case `genesis.config.chainId`, recoup
    /// node record `chainId`), when it declares one.
    pub chain_id: Option<u64>,
    /// The transactions' diffs, in file order (blocks ascending for block maps).
    pub txs: Vec<TxDiff>,
}

/// Reads a file of state diffs in any recognised shape.
///
/// # Errors
/// [`TraceError::Io`], [`TraceError::Json`] (with line and column: truncated or invalid
/// JSON, a field of the wrong type), [`TraceError::UnknownShape`],
/// [`TraceError::NotDiffMode`], [`TraceError::TraceFailed`].
pub fn read_diff_file(path: &Path) -> Result<TraceFile, TraceError> {
    let buf = std::fs::read(path).map_err(|source| TraceError::Io {
        file: path.to_owned(),
        source,
    })?;
    parse_diff_bytes(path, &buf)
}

/// As [`read_diff_file`], over bytes already read (`path` only names them in errors).
///
/// # Errors
/// As [`read_diff_file`].
pub fn parse_diff_bytes(path: &Path, buf: &[u8]) -> Result<TraceFile, TraceError> {
    let p = Parser { path, buf };
    let mut out = TraceFile {
        path: path.to_owned(),
        chain_id: None,
        txs: Vec::new(),
    };
    match first_byte(buf) {
        Some(b'[') => p.array_bytes(buf, None, None, &mut out.txs)?,
        Some(b'{') => {
            let obj: HashMap<String, &RawValue> = p.parse(buf, None)?;
            p.object(&obj, None, &mut out)?;
        }
        _ => return Err(p.unknown("expected a JSON object or array")),
    }
    for (i, t) in out.txs.iter_mut().enumerate() {
        t.position = i;
    }
    Ok(out)
}

fn first_byte(buf: &[u8]) -> Option<u8> {
    buf.iter().copied().find(|b| !b.is_ascii_whitespace())
}

struct Parser<'a> {
    path: &'a Path,
    buf: &'a [u8],
}

/// Element of `debug_traceBlockByNumber` or of a Parity replay array.
#[derive(Deserialize)]
struct BlockElem {
    #[serde(rename = "txHash")]
    tx_hash: Option<B256>,
    result: Option<GethResult>,
    error: Option<serde_json::Value>,
    #[serde(rename = "stateDiff")]
    state_diff: Option<StateDiff>,
    #[serde(rename = "transactionHash")]
    transaction_hash: Option<B256>,
    #[serde(rename = "blockNumber")]
    block_number: Option<alloy_primitives::U64>,
}

/// A geth block-trace `result`, parsed in one pass: a prestate diff has `pre` and `post`;
/// anything else (a default-mode prestate, a callTracer frame) has neither.
#[derive(Deserialize)]
struct GethResult {
    pre: Option<BTreeMap<Address, AccountState>>,
    post: Option<BTreeMap<Address, AccountState>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenderlyChange {
    address: Address,
    nonce: Option<TenderlyValue<alloy_primitives::U64>>,
    balance: Option<TenderlyValue<U256>>,
    #[serde(default)]
    storage: Option<Vec<TenderlySlot>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenderlyValue<T> {
    previous_value: T,
    new_value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenderlySlot {
    slot: B256,
    previous_value: B256,
    new_value: B256,
}

impl<'a> Parser<'a> {
    /// Parses `raw` (a slice of `self.buf`), reporting errors at absolute line/column.
    fn parse<T: Deserialize<'a>>(
        &self,
        raw: &'a [u8],
        what: Option<&str>,
    ) -> Result<T, TraceError> {
        serde_json::from_slice(raw).map_err(|e| self.json_err(raw, &e, what))
    }

    fn parse_raw<T: DeserializeOwned>(
        &self,
        raw: &'a RawValue,
        what: &str,
    ) -> Result<T, TraceError> {
        serde_json::from_str(raw.get())
            .map_err(|e| self.json_err(raw.get().as_bytes(), &e, Some(what)))
    }

    fn json_err(&self, raw: &[u8], e: &serde_json::Error, what: Option<&str>) -> TraceError {
        // `raw` is a sub-slice of `buf` (or `buf` itself): shift its line/column.
        let base = (raw.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        let (mut line, mut column) = (e.line(), e.column());
        if base <= self.buf.len() && base > 0 {
            let before = &self.buf[..base];
            let bline = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let bcol = base
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
            if line == 1 {
                column += bcol;
            }
            line += bline - 1;
        }
        let mut message = e.to_string();
        if let Some(pos) = message.rfind(" at line ") {
            message.truncate(pos);
        }
        if let Some(w) = what {
            message = format!("{w}: {message}");
        }
        TraceError::Json {
            file: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    fn unknown(&self, why: &str) -> TraceError {
        TraceError::UnknownShape {
            file: self.path.to_owned(),
            why: why.to_owned(),
        }
    }

    fn object(
        &self,
        obj: &HashMap<String, &'a RawValue>,
        block: Option<u64>,
        out: &mut TraceFile,
    ) -> Result<(), TraceError> {
        let has = |k: &str| obj.contains_key(k);
        if has("pre") || has("post") {
            let d = self.geth_diff(obj, "the prestate diff")?;
            out.txs.push(self.tx(block, None, d));
        } else if has("method") && has("result") {
            // recoup node record.
            if let Some(c) = obj.get("chainId") {
                out.chain_id = Some(
                    self.parse_raw::<alloy_primitives::U64>(c, "chainId")
                        .or_else(|_| {
                            self.parse_raw::<u64>(c, "chainId")
                                .map(alloy_primitives::U64::from)
                        })?
                        .to(),
                );
            }
            let block = match obj.get("block") {
                Some(b) => Some(self.parse_raw::<u64>(b, "block")?),
                None => block,
            };
            let tx: Option<B256> = match obj.get("txHash") {
                Some(t) => self.parse_raw(t, "txHash")?,
                None => None,
            };
            let r = obj["result"];
            let before = out.txs.len();
            self.value(r, block, out)?;
            if let Some(h) = tx {
                if out.txs.len() == before + 1 && out.txs[before].tx_hash.is_none() {
                    out.txs[before].tx_hash = Some(h);
                }
            }
        } else if has("result") && (has("genesis") || has("context")) {
            // geth tracer test case.
            if let Some(g) = obj.get("genesis") {
                #[derive(Deserialize)]
                struct Genesis {
                    config: Option<Config>,
                }
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Config {
                    chain_id: Option<u64>,
                }
                let g: Genesis = self.parse_raw(g, "genesis")?;
                out.chain_id = g.config.and_then(|c| c.chain_id);
            }
            let block = match obj.get("context") {
                Some(c) => {
                    #[derive(Deserialize)]
                    struct Ctx {
                        number: Option<String>,
                    }
                    let c: Ctx = self.parse_raw(c, "context")?;
                    c.number.and_then(|n| n.parse::<u64>().ok()).or(block)
                }
                None => block,
            };
            self.value(obj["result"], block, out)?;
        } else if has("stateDiff") {
            let d = self.parity(obj.get("stateDiff").copied(), "stateDiff")?;
            let tx = match obj.get("transactionHash") {
                Some(t) => Some(self.parse_raw(t, "transactionHash")?),
                None => None,
            };
            out.txs.push(self.tx(block, tx, d));
        } else if has("stateChanges") {
            let ch: Option<Vec<TenderlyChange>> =
                self.parse_raw(obj["stateChanges"], "stateChanges")?;
            let block = match obj.get("blockNumber") {
                Some(b) => self
                    .parse_raw::<Option<alloy_primitives::U64>>(b, "blockNumber")?
                    .map(|b| b.to())
                    .or(block),
                None => block,
            };
            out.txs
                .push(self.tx(block, None, tenderly(ch.unwrap_or_default())));
        } else if !obj.is_empty() && obj.keys().all(|k| parse_block_key(k).is_some()) {
            // block number → debug_traceBlockByNumber array.
            let mut blocks: Vec<(u64, &RawValue)> = obj
                .iter()
                .map(|(k, v)| (parse_block_key(k).unwrap_or_default(), *v))
                .collect();
            blocks.sort_by_key(|(b, _)| *b);
            for (b, raw) in blocks {
                let what = format!("block {b}");
                self.array_bytes(raw.get().as_bytes(), Some(&what), Some(b), &mut out.txs)?;
            }
        } else if has("from") && (has("calls") || has("type") || has("gasUsed")) {
            return Err(self.unknown(
                "this is a callTracer frame (no state); name it under `call_traces`, not `traces`",
            ));
        } else {
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            keys.truncate(8);
            return Err(self.unknown(&format!(
                "no state diff found: expected keys pre/post (geth prestateTracer diffMode), stateDiff (Parity), stateChanges (Tenderly), result (geth test case or recoup record), got {keys:?}"
            )));
        }
        Ok(())
    }

    fn parse_raw_borrowed<T: Deserialize<'a>>(
        &self,
        raw: &'a RawValue,
        what: &str,
    ) -> Result<T, TraceError> {
        self.parse(raw.get().as_bytes(), Some(what))
    }

    /// A JSON value of unknown shape (the `result` of a wrapper).
    fn value(
        &self,
        raw: &'a RawValue,
        block: Option<u64>,
        out: &mut TraceFile,
    ) -> Result<(), TraceError> {
        match first_byte(raw.get().as_bytes()) {
            Some(b'[') => {
                self.array_bytes(raw.get().as_bytes(), Some("result"), block, &mut out.txs)
            }
            Some(b'{') => {
                let obj: HashMap<String, &RawValue> = self.parse_raw_borrowed(raw, "result")?;
                self.object(&obj, block, out)
            }
            _ => Err(self.unknown("`result` is neither an object nor an array")),
        }
    }

    /// Parses and normalises a JSON array of block-trace elements (`raw`, a slice of
    /// `self.buf`).
    ///
    /// Fast path: split the array into its elements, then parse and normalise them in
    /// parallel. Whenever that path meets anything unusual (invalid JSON, an element that
    /// fails to parse, an element carrying `error`, whose `Value` is the one field whose
    /// parse depends on nesting depth), the whole array is parsed again in one sequential
    /// pass, so errors are exactly those of a plain `serde_json` parse of the file.
    fn array_bytes(
        &self,
        raw: &'a [u8],
        what: Option<&str>,
        block: Option<u64>,
        out: &mut Vec<TxDiff>,
    ) -> Result<(), TraceError> {
        if let Ok(elems) = serde_json::from_slice::<Vec<&RawValue>>(raw) {
            let items: Result<Vec<BlockElem>, serde_json::Error> = elems
                .par_iter()
                .map(|e| serde_json::from_str::<BlockElem>(e.get()))
                .collect();
            if let Ok(items) = items {
                if items.iter().all(|e| e.error.is_none()) {
                    return self.array(items, block, out);
                }
            }
        }
        let items: Vec<BlockElem> = self.parse(raw, what)?;
        self.array(items, block, out)
    }

    /// Normalises parsed elements in parallel; the first element (in file order) that is
    /// not a state diff is the error.
    fn array(
        &self,
        items: Vec<BlockElem>,
        block: Option<u64>,
        out: &mut Vec<TxDiff>,
    ) -> Result<(), TraceError> {
        let txs: Vec<Result<TxDiff, TraceError>> = items
            .into_par_iter()
            .enumerate()
            .map(|(i, e)| self.elem(i, e, block))
            .collect();
        out.reserve(txs.len());
        for t in txs {
            out.push(t?);
        }
        Ok(())
    }

    fn elem(&self, i: usize, e: BlockElem, block: Option<u64>) -> Result<TxDiff, TraceError> {
        let what = || format!("element {i}");
        let block = e.block_number.map(|b| b.to()).or(block);
        if let Some(err) = e.error {
            return Err(TraceError::TraceFailed {
                file: self.path.to_owned(),
                tx: e.tx_hash.map(|h| h.to_string()).unwrap_or_else(what),
                error: err.to_string(),
            });
        }
        if let Some(sd) = e.state_diff {
            Ok(self.tx(block, e.transaction_hash, parity(sd)))
        } else if let Some(r) = e.result {
            let (Some(pre), Some(post)) = (r.pre, r.post) else {
                return Err(TraceError::NotDiffMode {
                    file: self.path.to_owned(),
                    what: format!("{}.result", what()),
                });
            };
            let d = geth(DiffMode { pre, post });
            Ok(self.tx(block, e.tx_hash.or(e.transaction_hash), d))
        } else {
            Err(self.unknown(&format!("{} has neither `result` (geth debug_traceBlock*) nor `stateDiff` (Parity trace_replay*)", what())))
        }
    }

    fn tx(
        &self,
        block: Option<u64>,
        tx_hash: Option<B256>,
        accounts: BTreeMap<Address, AccountChange>,
    ) -> TxDiff {
        TxDiff {
            file: self.path.to_owned(),
            position: 0,
            block,
            tx_hash,
            accounts,
        }
    }

    fn geth_diff(
        &self,
        obj: &HashMap<String, &'a RawValue>,
        what: &str,
    ) -> Result<BTreeMap<Address, AccountChange>, TraceError> {
        let (Some(pre), Some(post)) = (obj.get("pre"), obj.get("post")) else {
            return Err(TraceError::NotDiffMode {
                file: self.path.to_owned(),
                what: what.to_owned(),
            });
        };
        if let Some(k) = obj.keys().find(|k| *k != "pre" && *k != "post") {
            return Err(self.unknown(&format!("{what}: unexpected key {k:?} beside pre/post")));
        }
        let pre: BTreeMap<Address, AccountState> = self.parse_raw(pre, &format!("{what}.pre"))?;
        let post: BTreeMap<Address, AccountState> =
            self.parse_raw(post, &format!("{what}.post"))?;
        Ok(geth(DiffMode { pre, post }))
    }

    fn parity(
        &self,
        raw: Option<&'a RawValue>,
        what: &str,
    ) -> Result<BTreeMap<Address, AccountChange>, TraceError> {
        let Some(raw) = raw else {
            return Ok(BTreeMap::new());
        };
        let sd: Option<StateDiff> = self.parse_raw(raw, what)?;
        Ok(parity(sd.unwrap_or_default()))
    }
}

fn parse_block_key(k: &str) -> Option<u64> {
    match k.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => k.parse().ok(),
    }
}

/// Normalises a geth `prestateTracer` diff: an account only in `pre` was destroyed, only in
/// `post` created; a field missing from `post` did not change; a slot missing on either
/// side is zero there.
pub fn geth(d: DiffMode) -> BTreeMap<Address, AccountChange> {
    let DiffMode { pre, mut post } = d;
    let mut out = BTreeMap::new();
    for (addr, p) in pre {
        let q = post.remove(&addr);
        let kind = if q.is_some() {
            AccountKind::Modified
        } else {
            AccountKind::Destroyed
        };
        let q = q.unwrap_or_default();
        let destroyed = kind == AccountKind::Destroyed;
        let mut a = AccountChange::new(kind);
        let bf = p.balance.unwrap_or_default();
        let bt = q.balance.unwrap_or(if destroyed { U256::ZERO } else { bf });
        if bf != bt {
            a.balance = Some(Change { from: bf, to: bt });
        }
        let nf = p.nonce.unwrap_or_default();
        let nt = q.nonce.unwrap_or(if destroyed { 0 } else { nf });
        if nf != nt {
            a.nonce = Some(Change { from: nf, to: nt });
        }
        a.code_changed = destroyed || q.code.as_ref().is_some_and(|c| Some(c) != p.code.as_ref());
        a.storage = merge_storage(p.storage, q.storage);
        if !a.is_noop() {
            out.insert(addr, a);
        }
    }
    for (addr, q) in post {
        let mut a = AccountChange::new(AccountKind::Created);
        let bt = q.balance.unwrap_or_default();
        if !bt.is_zero() {
            a.balance = Some(Change {
                from: U256::ZERO,
                to: bt,
            });
        }
        if let Some(n) = q.nonce.filter(|n| *n != 0) {
            a.nonce = Some(Change { from: 0, to: n });
        }
        a.code_changed = q.code.as_ref().is_some_and(|c| !c.is_empty());
        a.storage = merge_storage(BTreeMap::new(), q.storage);
        out.insert(addr, a);
    }
    out
}

/// The changed slots between a `pre` and a `post` storage map: a slot missing on a side
/// is zero there; unchanged slots are left out. Both maps are sorted, so this is one merge
/// pass, and the result is built from sorted entries.
fn merge_storage(
    pre: BTreeMap<B256, B256>,
    post: BTreeMap<B256, B256>,
) -> BTreeMap<B256, Change<B256>> {
    let mut out = Vec::with_capacity(pre.len().max(post.len()));
    let (mut p, mut q) = (pre.into_iter().peekable(), post.into_iter().peekable());
    loop {
        let (slot, from, to) = match (p.peek(), q.peek()) {
            (None, None) => break,
            (Some(&(ps, _)), Some(&(qs, _))) if ps == qs => {
                let ((slot, from), (_, to)) =
                    (p.next().unwrap_or_default(), q.next().unwrap_or_default());
                (slot, from, to)
            }
            (Some(&(ps, _)), Some(&(qs, _))) if qs < ps => {
                let (slot, to) = q.next().unwrap_or_default();
                (slot, B256::ZERO, to)
            }
            (Some(_), _) => {
                let (slot, from) = p.next().unwrap_or_default();
                (slot, from, B256::ZERO)
            }
            (None, Some(_)) => {
                let (slot, to) = q.next().unwrap_or_default();
                (slot, B256::ZERO, to)
            }
        };
        if from != to {
            out.push((slot, Change { from, to }));
        }
    }
    out.into_iter().collect()
}

fn delta<T: Default + PartialEq + Clone>(d: Delta<T>) -> Option<Change<T>> {
    let c = match d {
        Delta::Unchanged => return None,
        Delta::Added(v) => Change {
            from: T::default(),
            to: v,
        },
        Delta::Removed(v) => Change {
            from: v,
            to: T::default(),
        },
        Delta::Changed(c) => Change {
            from: c.from,
            to: c.to,
        },
    };
    (c.from != c.to).then_some(c)
}

/// Normalises a Parity `stateDiff`: `"="` unchanged, `{"+":v}` from zero (a created
/// account), `{"-":v}` to zero (a destroyed account), `{"*":{from,to}}` changed.
pub fn parity(sd: StateDiff) -> BTreeMap<Address, AccountChange> {
    let mut out = BTreeMap::new();
    for (addr, d) in sd.0 {
        let kind = match (&d.balance, &d.nonce, &d.code) {
            (Delta::Added(_), _, _) | (_, Delta::Added(_), _) | (_, _, Delta::Added(_)) => {
                AccountKind::Created
            }
            (Delta::Removed(_), _, _) | (_, Delta::Removed(_), _) | (_, _, Delta::Removed(_)) => {
                AccountKind::Destroyed
            }
            _ => AccountKind::Modified,
        };
        let mut a = AccountChange::new(kind);
        a.balance = delta(d.balance);
        a.nonce = delta(d.nonce).map(|c| Change {
            from: c.from.to(),
            to: c.to.to(),
        });
        a.code_changed = delta(d.code).is_some();
        for (slot, v) in d.storage {
            if let Some(c) = delta(v) {
                a.storage.insert(slot, c);
            }
        }
        if !a.is_noop() {
            out.insert(addr, a);
        }
    }
    out
}

fn tenderly(ch: Vec<TenderlyChange>) -> BTreeMap<Address, AccountChange> {
    let mut out: BTreeMap<Address, AccountChange> = BTreeMap::new();
    for c in ch {
        let a = out
            .entry(c.address)
            .or_insert_with(|| AccountChange::new(AccountKind::Modified));
        if let Some(b) = c.balance.filter(|b| b.previous_value != b.new_value) {
            a.balance = Some(Change {
                from: b.previous_value,
                to: b.new_value,
            });
        }
        if let Some(n) = c.nonce.filter(|n| n.previous_value != n.new_value) {
            a.nonce = Some(Change {
                from: n.previous_value.to(),
                to: n.new_value.to(),
            });
        }
        for s in c.storage.unwrap_or_default() {
            if s.previous_value != s.new_value {
                a.storage.insert(
                    s.slot,
                    Change {
                        from: s.previous_value,
                        to: s.new_value,
                    },
                );
            }
        }
    }
    out.retain(|_, a| !a.is_noop());
    out
}

/// One log entry, as in `eth_getLogs`, receipts and callTracer `withLog` frames.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEntry {
    /// Emitting contract.
    pub address: Address,
    /// Topics (topic 0 is the event signature hash).
    pub topics: Vec<B256>,
    /// Non-indexed data.
    #[serde(default)]
    pub data: alloy_primitives::Bytes,
}

/// `keccak256("Transfer(address,address,uint256)")`, the ERC-20 Transfer event topic.
pub const TRANSFER_TOPIC: B256 =
    alloy_primitives::b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// Addresses named in Transfer logs (`from` and `to`, topics 1 and 2) and every log's
/// emitter, for holder candidates.
pub fn log_addresses(logs: &[LogEntry], out: &mut Vec<Address>) {
    for l in logs {
        out.push(l.address);
        if l.topics.len() == 3 && l.topics[0] == TRANSFER_TOPIC {
            out.push(Address::from_word(l.topics[1]));
            out.push(Address::from_word(l.topics[2]));
        }
    }
}

/// Reads a file of logs: a JSON array of log objects (`eth_getLogs`), a recoup node record
/// wrapping one, or an array of receipts (`{"logs":[..]}` each).
///
/// # Errors
/// [`TraceError::Io`], [`TraceError::Json`], [`TraceError::UnknownShape`].
pub fn read_logs_file(path: &Path) -> Result<Vec<LogEntry>, TraceError> {
    let buf = std::fs::read(path).map_err(|source| TraceError::Io {
        file: path.to_owned(),
        source,
    })?;
    let p = Parser { path, buf: &buf };
    let v: serde_json::Value = p.parse(&buf, None)?;
    let v = match v {
        serde_json::Value::Object(mut o) if o.contains_key("result") => {
            o.remove("result").unwrap_or_default()
        }
        v => v,
    };
    let serde_json::Value::Array(items) = v else {
        return Err(p.unknown("expected an array of logs (eth_getLogs) or of receipts"));
    };
    let mut out = Vec::new();
    for (i, it) in items.into_iter().enumerate() {
        let is_receipt = it.get("logs").is_some();
        let r = if is_receipt {
            serde_json::from_value::<Vec<LogEntry>>(it["logs"].clone()).map(|mut l| {
                out.append(&mut l);
            })
        } else {
            serde_json::from_value::<LogEntry>(it).map(|l| out.push(l))
        };
        r.map_err(|e| TraceError::Json {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("element {i}: {e}"),
        })?;
    }
    Ok(out)
}

/// Reads a callTracer result (one frame, a geth test case, a recoup node record, or the
/// `[{txHash,result}]` array of `debug_traceBlockByNumber`) and returns every address in
/// its frames (`from`, `to`) and its logs.
///
/// # Errors
/// [`TraceError::Io`], [`TraceError::Json`], [`TraceError::UnknownShape`].
pub fn read_call_trace_file(path: &Path) -> Result<(Vec<Address>, Vec<LogEntry>), TraceError> {
    let buf = std::fs::read(path).map_err(|source| TraceError::Io {
        file: path.to_owned(),
        source,
    })?;
    let p = Parser { path, buf: &buf };
    let mut frames: Vec<CallFrame> = Vec::new();
    let mut stack: Vec<serde_json::Value> = vec![p.parse(&buf, None)?];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(a) => stack.extend(a.into_iter().rev()),
            serde_json::Value::Object(mut o) => {
                if o.contains_key("from") && o.contains_key("type") {
                    let f: CallFrame = serde_json::from_value(serde_json::Value::Object(o))
                        .map_err(|e| TraceError::Json {
                            file: path.to_owned(),
                            line: 0,
                            column: 0,
                            message: format!("call frame: {e}"),
                        })?;
                    frames.push(f);
                } else if let Some(r) = o.remove("result") {
                    stack.push(r);
                } else {
                    return Err(p.unknown("expected a callTracer frame ({from,to,type,calls,logs}) or a wrapper with `result`"));
                }
            }
            _ => return Err(p.unknown("expected a callTracer frame")),
        }
    }
    let (mut addrs, mut logs) = (Vec::new(), Vec::new());
    let mut todo: Vec<&CallFrame> = frames.iter().collect();
    while let Some(f) = todo.pop() {
        addrs.push(f.from);
        addrs.extend(f.to);
        for l in &f.logs {
            let e = LogEntry {
                address: l.address.unwrap_or_default(),
                topics: l.topics.clone().unwrap_or_default(),
                data: l.data.clone().unwrap_or_default(),
            };
            logs.push(e);
        }
        todo.extend(f.calls.iter());
    }
    Ok((addrs, logs))
}
