//! State diffs in, balances and share-price losses out: node traces, ERC-20 storage
//! decoding, vault share prices, and pulling traces from a node.
//!
//! Flow: [`format`](mod@format) reads each file (geth prestateTracer diffMode, Parity `stateDiff`,
//! Tenderly `stateChanges`, recoup node records) into [`diff::TxDiff`]s; [`diff::Timeline`]
//! chains them and checks each slot's `from` against the previous `to`; [`decode()`] maps
//! token storage to holders with [`layout`] and computes vault totals and share-price
//! losses, or takes the totals from [`calls`] (`eth_call`s at the window's two blocks);
//! [`rpc`] fetches the same files from a node.
//!
//! Units: balances and amounts are base units of their asset; ETH in wei; storage words
//! are raw 32-byte values.

pub mod calls;
pub mod decode;
pub mod diff;
pub mod format;
pub mod layout;
pub mod rpc;

pub use calls::{read_calls_file, CallValue, TxPosition, VaultCalls, VaultCallsFile};
pub use decode::{
    convert_to_assets, decode, decode_diffs, resolve_layout, BalanceChange, DecodedState,
    LayoutSpec, ShareBalance, ShareLoss, StateDiffConfig, TokenSpec, TraceInput, UnmatchedSlot,
    UnmatchedSlots, VaultSpec, VaultTotals, WindowSpec,
};
pub use diff::{AccountChange, AccountKind, Change, Timeline, TxDiff};
pub use layout::{BalanceLayout, MappingOrder};

use crate::primitives::{Address, AmountError, B256};

/// Details of a [`TraceError::ChainGap`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file}: {tx}: account {account} {what}: `from` is {got} but the previous transaction ({prev_tx} in {prev_file}) left it at {expected}; a transaction between them is missing or the traces are out of order",
    file = file.display(), prev_file = prev_file.display()
)]
pub struct ChainGap {
    /// File of the transaction with the gap.
    pub file: PathBuf,
    /// The transaction.
    pub tx: String,
    /// File of the previous change.
    pub prev_file: PathBuf,
    /// The previous transaction.
    pub prev_tx: String,
    /// The account.
    pub account: Address,
    /// `balance`, `nonce` or `storage slot 0x…`.
    pub what: String,
    /// The previous `to`.
    pub expected: String,
    /// This `from`.
    pub got: String,
}
use std::path::PathBuf;

/// Why state diffs could not be read or decoded. Every variant names the file, the
/// transaction, the account or slot, or the manifest field to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}", file = file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Invalid or truncated JSON, or a field of the wrong type.
    #[error("{file}:{line}:{column}: {message}", file = file.display())]
    Json {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// Valid JSON but no recognised trace shape.
    #[error("{file}: not a recognised trace: {why}", file = file.display())]
    UnknownShape {
        /// The file.
        file: PathBuf,
        /// What was found and what was expected.
        why: String,
    },
    /// A prestateTracer result without `pre`/`post` (the tracer ran without `diffMode`).
    #[error("{file}: {what} is a prestateTracer result without diffMode; trace with {{\"tracer\":\"prestateTracer\",\"tracerConfig\":{{\"diffMode\":true}}}}", file = file.display())]
    NotDiffMode {
        /// The file.
        file: PathBuf,
        /// Which entry.
        what: String,
    },
    /// The node reported an error for one transaction of a block trace.
    #[error("{file}: the node failed to trace {tx}: {error}", file = file.display())]
    TraceFailed {
        /// The file.
        file: PathBuf,
        /// The transaction (hash or entry).
        tx: String,
        /// The node's error.
        error: String,
    },
    /// A value's `from` differs from the previous transaction's `to`: a transaction is
    /// missing between the two, or the files are out of order.
    #[error("{0}")]
    ChainGap(Box<ChainGap>),
    /// The same transaction hash appears twice with different changes.
    #[error("transaction {tx} appears in {first} and in {second} with different state changes", first = first.display(), second = second.display())]
    DuplicateTx {
        /// The transaction.
        tx: B256,
        /// First file.
        first: PathBuf,
        /// Second file.
        second: PathBuf,
    },
    /// A file declares another chain id than the manifest.
    #[error("{file}: declares chain id {got}, but the manifest's state_diff.chain_id is {expected}", file = file.display())]
    WrongChain {
        /// The file.
        file: PathBuf,
        /// The manifest's chain id.
        expected: u64,
        /// The file's chain id.
        got: u64,
    },
    /// A token layout is not a known preset and gives no slot.
    #[error("asset {asset}: unknown token layout {layout:?}; use one of {known}, or a table with base_slot / erc7201")]
    UnknownLayout {
        /// The asset or vault.
        asset: String,
        /// The layout given.
        layout: String,
        /// The presets.
        known: String,
    },
    /// A manifest field is malformed.
    #[error("state_diff {what}: {message}")]
    Config {
        /// The field.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A holder list line is not an address.
    #[error("{file}:{line}: {message}", file = file.display())]
    Holder {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The window bounds select no transactions.
    #[error("state_diff window: {what}")]
    Window {
        /// What is wrong.
        what: String,
    },
    /// A vault total cannot be known from the diffs.
    #[error("vault {vault}: {what} (or give `totals`, calls at the window's blocks from `recoup ingest --vault`)")]
    VaultUnknown {
        /// The vault.
        vault: String,
        /// What is missing.
        what: String,
    },
    /// A vault totals file (`totals`, written by `recoup ingest --vault`) does not fit the
    /// manifest: another chain id, no entry for the vault's address, a method or block that
    /// is not the window's, or a window that starts or ends mid-block.
    #[error("{file}: {field}: {message} (vault {vault})", file = file.display())]
    VaultCalls {
        /// The totals file.
        file: PathBuf,
        /// The vault's name in the manifest.
        vault: String,
        /// The file's field, e.g. `chainId` or `vaults[0].totalAssetsBefore.block`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A window transaction has no receipt or block header, so gas cannot be excluded.
    #[error("{file}: {tx}: no receipt/header in state_diff.eth, so the gas it paid cannot be excluded from ETH changes", file = file.display())]
    MissingReceipt {
        /// The transaction.
        tx: String,
        /// Its file.
        file: PathBuf,
    },
    /// A node request failed after its retries.
    #[error("{url}: {method} {params} failed after {retries} retries: {message}")]
    Rpc {
        /// The endpoint.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// Its params, as JSON.
        params: String,
        /// The last error.
        message: String,
        /// Retries made.
        retries: u32,
    },
    /// Amount arithmetic overflowed.
    #[error(transparent)]
    Amount(#[from] AmountError),
}
