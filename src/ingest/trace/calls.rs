//! Vault totals from `eth_call`s at the window's two blocks: the file `recoup ingest
//! --vault` writes, and its checks against a vault and the incident window when a
//! `[[state_diff.vaults]]` entry names it with `totals`.
//!
//! A call at block `N` answers with the state after every transaction of block `N`. So
//! `beforeBlock = B − 1` is the state before block `B`, and it is the state before the
//! window only when the window starts with block `B`'s first transaction; `afterBlock = E`
//! is the state after the window only when the window ends with block `E`'s last
//! transaction. A window that starts or ends mid-block (a `start_tx` or `end_tx` inside a
//! block) would price the shares with transactions outside the window, so it is an error,
//! not a silent mismatch. recoup sees what the traces and the file show: an earlier
//! transaction of block `B` in the traces, or the file's `firstTx` / `lastTx` positions
//! (written for `--tx`). Trace whole blocks (`--blocks`) to be sure of the edges.
//!
//! ```json
//! {
//!   "chainId": 31337,
//!   "beforeBlock": 16,
//!   "afterBlock": 17,
//!   "firstTx": { "hash": "0x2ed5…", "block": 17, "index": 0, "blockTxCount": 1 },
//!   "lastTx": { "hash": "0x2ed5…", "block": 17, "index": 0, "blockTxCount": 1 },
//!   "vaults": [
//!     {
//!       "address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
//!       "totalAssetsBefore": { "method": "totalAssets()", "block": 16, "value": "6150000000000000000001" },
//!       "totalAssetsAfter": { "method": "totalAssets()", "block": 17, "value": "1230000000000000000001" },
//!       "totalSupplyBefore": { "method": "totalSupply()", "block": 16, "value": "5290322580645161290322" },
//!       "totalSupplyAfter": { "method": "totalSupply()", "block": 17, "value": "5290322580645161290322" }
//!     }
//!   ]
//! }
//! ```
//!
//! Values are decimal strings of base units: `totalAssets` in the underlying asset's,
//! `totalSupply` in the share token's. Methods are ERC-4626's
//! (<https://eips.ethereum.org/EIPS/eip-4626>) and ERC-20's `totalSupply()`.

use super::diff::TxDiff;
use super::TraceError;
use crate::primitives::{Address, Amount, B256};
use alloy_sol_types::SolCall;
use serde::{Deserialize, Serialize};
use std::path::Path;

mod abi {
    #![allow(missing_docs, unreachable_pub)]
    alloy_sol_types::sol! {
        function totalAssets() external view returns (uint256);
        function totalSupply() external view returns (uint256);
    }
}
pub(crate) use abi::{totalAssetsCall, totalSupplyCall};

/// The `totalAssets()` method name as written in the file (ERC-4626).
pub const TOTAL_ASSETS: &str = totalAssetsCall::SIGNATURE;
/// The `totalSupply()` method name as written in the file (ERC-20).
pub const TOTAL_SUPPLY: &str = totalSupplyCall::SIGNATURE;

/// The file `recoup ingest --vault` writes (`vault_totals.json`): every vault's totals by
/// `eth_call` at the block before the window and at its last block. Unknown keys are
/// rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultCallsFile {
    /// The node's chain id.
    pub chain_id: u64,
    /// The block of the "before" calls: the block before the window's first block.
    pub before_block: u64,
    /// The block of the "after" calls: the window's last block.
    pub after_block: u64,
    /// With `--tx`: the earliest traced transaction and its position in its block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_tx: Option<TxPosition>,
    /// With `--tx`: the latest traced transaction and its position in its block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tx: Option<TxPosition>,
    /// One entry per `--vault`, in command-line order.
    pub vaults: Vec<VaultCalls>,
}

/// Where a transaction stands in its block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TxPosition {
    /// The transaction hash.
    pub hash: B256,
    /// Its block.
    pub block: u64,
    /// Its index in the block (0-based, the receipt's `transactionIndex`).
    pub index: u64,
    /// How many transactions the block has (its header's `transactions`).
    pub block_tx_count: u64,
}

/// One vault's four totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultCalls {
    /// The vault contract (called with `to` = this address).
    pub address: Address,
    /// `totalAssets()` at `beforeBlock`, base units of the underlying.
    pub total_assets_before: CallValue,
    /// `totalAssets()` at `afterBlock`, base units of the underlying.
    pub total_assets_after: CallValue,
    /// `totalSupply()` at `beforeBlock`, base units of the shares.
    pub total_supply_before: CallValue,
    /// `totalSupply()` at `afterBlock`, base units of the shares.
    pub total_supply_after: CallValue,
}

/// One `eth_call`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallValue {
    /// The vault method called, `totalAssets()` or `totalSupply()`.
    pub method: String,
    /// The block id of the call.
    pub block: u64,
    /// The returned `uint256`, a decimal string of base units.
    pub value: Amount,
}

/// Reads a vault totals file.
///
/// # Errors
/// [`TraceError::Io`]; [`TraceError::Json`] with line, column and the field's path (e.g.
/// `vaults[0].totalAssetsBefore.value`) for invalid JSON, a missing or unknown field, or a
/// value that is not a decimal string of base units.
pub fn read_calls_file(path: &Path) -> Result<VaultCallsFile, TraceError> {
    let buf = std::fs::read(path).map_err(|source| TraceError::Io {
        file: path.to_owned(),
        source,
    })?;
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&buf)).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        TraceError::Json {
            file: path.to_owned(),
            line: inner.line(),
            column: inner.column(),
            message: format!("{field}: {inner}"),
        }
    })
}

/// Finds one vault's entry in `file` (read from `path`) and checks it against the window
/// `diffs[window.0..window.1]`; its four values are the vault's totals.
///
/// # Errors
/// [`TraceError::VaultCalls`] naming the file, the field and the vault when the chain id
/// differs from `chain_id`, the file has no entry for `address`, a method or block does not
/// fit the window, a window edge has no block number or is mid-block (see the module docs).
pub fn totals_for<'f>(
    file: &'f VaultCallsFile,
    path: &Path,
    chain_id: u64,
    vault: &str,
    address: Address,
    diffs: &[TxDiff],
    window: (usize, usize),
) -> Result<&'f VaultCalls, TraceError> {
    let err = |field: String, message: String| TraceError::VaultCalls {
        file: path.to_owned(),
        vault: vault.to_owned(),
        field,
        message,
    };
    if file.chain_id != chain_id {
        return Err(err(
            "chainId".into(),
            format!(
                "is {}, but the manifest's state_diff.chain_id is {chain_id}",
                file.chain_id
            ),
        ));
    }
    let (i, v) = file
        .vaults
        .iter()
        .enumerate()
        .find(|(_, v)| v.address == address)
        .ok_or_else(|| {
            let have: Vec<String> = file.vaults.iter().map(|v| v.address.to_string()).collect();
            err(
                "vaults".into(),
                format!(
                    "has no entry with address {address} (it has [{}])",
                    have.join(", ")
                ),
            )
        })?;
    let (first, last) = (&diffs[window.0], &diffs[window.1 - 1]);
    let block_of = |d: &TxDiff, edge: &str| {
        d.block.ok_or_else(|| {
            err(
                "beforeBlock".into(),
                format!(
                    "the window's {edge} transaction, {} in {}, has no block number, so the calls cannot be placed against it; annotate the trace with `block`",
                    d.label(),
                    d.file.display()
                ),
            )
        })
    };
    let (b, e) = (block_of(first, "first")?, block_of(last, "last")?);
    let before = b.checked_sub(1).ok_or_else(|| {
        err(
            "beforeBlock".into(),
            "the window starts at block 0: there is no block before it to call at".into(),
        )
    })?;
    let span = format!("the window runs from {} to {}", first.label(), last.label());
    let at = |field: String, got: u64, want: u64| {
        if got == want {
            Ok(())
        } else {
            Err(err(
                field,
                format!("is {got}, but {span}, so it must be {want} (calls at block N see the state after all of block N)"),
            ))
        }
    };
    at("beforeBlock".into(), file.before_block, before)?;
    at("afterBlock".into(), file.after_block, e)?;
    let values = [
        (
            "totalAssetsBefore",
            &v.total_assets_before,
            TOTAL_ASSETS,
            before,
        ),
        ("totalAssetsAfter", &v.total_assets_after, TOTAL_ASSETS, e),
        (
            "totalSupplyBefore",
            &v.total_supply_before,
            TOTAL_SUPPLY,
            before,
        ),
        ("totalSupplyAfter", &v.total_supply_after, TOTAL_SUPPLY, e),
    ];
    for (name, c, method, block) in values {
        if c.method != method {
            return Err(err(
                format!("vaults[{i}].{name}.method"),
                format!("is {:?}, expected {method:?}", c.method),
            ));
        }
        at(format!("vaults[{i}].{name}.block"), c.block, block)?;
    }

    // Mid-block edges: the calls would see transactions outside the window. An edge is
    // off when the transaction beside it in the traces is of the same block, or when the
    // file's own record of its position says so.
    let first_off = file
        .first_tx
        .as_ref()
        .filter(|t| Some(t.hash) == first.tx_hash && t.index > 0)
        .map(|t| {
            format!(
                "it is transaction {} of block {b}, per the file's firstTx",
                t.index
            )
        });
    let last_off = file
        .last_tx
        .as_ref()
        .filter(|t| Some(t.hash) == last.tx_hash && t.index.saturating_add(1) < t.block_tx_count)
        .map(|t| {
            format!(
                "it is transaction {} of {} in block {e}, per the file's lastTx",
                t.index, t.block_tx_count
            )
        });
    let edges = [
        (
            "beforeBlock",
            ("start", "first", "before"),
            first,
            b,
            before,
            window.0.checked_sub(1).map(|k| &diffs[k]),
            first_off,
        ),
        (
            "afterBlock",
            ("end", "last", "after"),
            last,
            e,
            e,
            diffs.get(window.1),
            last_off,
        ),
    ];
    for (field, (verb, which, side), d, block, call_block, beside, off) in edges {
        let why = match beside.filter(|n| n.block == Some(block)) {
            Some(n) => Some(format!("{} comes {side} it in the traces", n.label())),
            None => off,
        };
        if let Some(why) = why {
            return Err(err(
                field.into(),
                format!(
                    "the window {verb}s mid-block: {} is not the {which} transaction of block {block} ({why}); the calls at block {call_block} see the state {side} all of block {block}, not {side} the window. The window must {verb} with block {block}'s {which} transaction, or leave out `totals` to take the totals from the diffs",
                    d.label()
                ),
            ));
        }
    }
    Ok(v)
}
