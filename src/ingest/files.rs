//! CSV inputs named in the incident manifest, read with exact positions in every error.
//!
//! Every file must have a header row with exactly the documented columns (optional
//! columns may be left out; unknown columns are an error). Addresses are EIP-55 checked;
//! amounts are non-negative integers of base units, or whole tokens with at most the
//! asset's decimals when the manifest says `units = "token"`.

use crate::manifest::{AssetSpec, Units};
use crate::primitives::{parse_address, parse_units, Address, Amount, ChecksumBatch, LocalNames};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::primitives::Name;

/// A CSV input could not be read. Every variant names the file; row errors name the
/// line (1-based, the header is line 1), the column (1-based) and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File path.
        file: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file has no header row or no data rows.
    #[error("{file}: empty file: expected a header `{expected}` and at least one row")]
    Empty {
        /// File path.
        file: PathBuf,
        /// The expected header.
        expected: String,
    },
    /// The header has missing, unknown or repeated columns.
    #[error("{file}:1: wrong CSV columns: expected `{expected}`, got `{got}`")]
    Columns {
        /// File path.
        file: PathBuf,
        /// Expected columns (optional ones in brackets).
        expected: String,
        /// The header found.
        got: String,
    },
    /// A field is not acceptable.
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Field {
        /// File path.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: usize,
        /// Column name.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
    /// The same key appears twice.
    #[error("{file}:{line}: duplicate row for {key} (first at line {first})")]
    Duplicate {
        /// File path.
        file: PathBuf,
        /// Line of the repeat.
        line: u64,
        /// Line of the first occurrence.
        first: u64,
        /// The repeated key.
        key: String,
    },
    /// A row is malformed CSV (wrong number of fields, bad quoting, not UTF-8).
    #[error("{file}:{line}: malformed CSV row: {message}")]
    Row {
        /// File path.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// Parser message.
        message: String,
    },
}

/// Where a row came from, for later messages (duplicates across files, netting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path (shared by every row of the file).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u64,
}

/// A balance snapshot row: holdings before and after the exploit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    /// Holder.
    pub account: Address,
    /// Asset symbol.
    pub asset: Name,
    /// Pool (the `pool` column, else the input's `pool`).
    pub pool: Option<Name>,
    /// Balance at the snapshot block, base units.
    pub before: Amount,
    /// Balance after the exploit, base units.
    pub after: Amount,
    /// Source position.
    pub origin: Origin,
}

/// A row with one amount of one asset: a loss-list row or a netting row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountRow {
    /// Account.
    pub account: Address,
    /// Asset symbol.
    pub asset: Name,
    /// Pool (the `pool` column, else the input's `pool`).
    pub pool: Option<Name>,
    /// Amount, base units.
    pub amount: Amount,
    /// Free-text kind (netting: `withdrawal`, `refund`, `in_kind` …).
    pub kind: Option<String>,
    /// Source position.
    pub origin: Origin,
}

/// A holder-list row: an account and a balance (wrapper balance, vault shares, cover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderRow {
    /// Holder.
    pub account: Address,
    /// Balance, base units.
    pub amount: Amount,
    /// Source position.
    pub origin: Origin,
}

/// Column layout of one CSV kind.
struct Layout {
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

impl Layout {
    fn expected(&self) -> String {
        let mut s = self.required.join(",");
        for o in self.optional {
            s.push_str(&format!("[,{o}]"));
        }
        s
    }
}

/// The column map of an open CSV file.
#[derive(Clone)]
struct Cols {
    file: Arc<Path>,
    /// Our column name → its index in the file. A list: a handful of columns, read for
    /// every field of every row (a hash map's SipHash was 5% of parsing).
    cols: Vec<(&'static str, usize)>,
    /// Number of header fields: every record must have as many.
    width: usize,
}

impl Cols {
    /// The file's index of our column `field`.
    fn index(&self, field: &str) -> Option<usize> {
        self.cols.iter().find(|(n, _)| *n == field).map(|&(_, i)| i)
    }
}

/// An open CSV file: its bytes, column map and where the records start.
struct Table {
    cols: Cols,
    data: Vec<u8>,
    /// Byte offset of the first record (after the header).
    body: usize,
    /// 1-based line of the first record.
    first_line: u64,
    /// Whether large files may be parsed in parallel chunks (tests turn it off to compare).
    parallel: bool,
}

/// Files with at least this many bytes of records are parsed in parallel chunks.
const PARALLEL_FROM: usize = 1 << 20;

/// Mixed-case addresses a chunk of the parallel parse queues before it checks their
/// checksums ([`ChecksumBatch`]): enough to fill the eight keccak lanes many times, few
/// enough (40 KiB of text) to stay in cache.
const CHECKSUM_BATCH: usize = 1024;

/// A reader of `data` that trims the header row's names. Fields are trimmed as they are
/// read ([`Cursor::get`]): `csv`'s own field trimming allocates a new record for every row
/// (`ByteRecord::with_capacity`, 1.7% of a million-claimant run's CPU, `perf`).
fn reader(data: &[u8], headers: bool) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(headers)
        .trim(csv::Trim::Headers)
        .from_reader(data)
}

impl Table {
    fn open(file: &Path, layout: &Layout) -> Result<Self, InputError> {
        Self::open_renamed(file, layout, &BTreeMap::new())
    }

    /// Opens with `renames`: our column name → the file's header name.
    fn open_renamed(
        file: &Path,
        layout: &Layout,
        renames: &BTreeMap<String, String>,
    ) -> Result<Self, InputError> {
        let data = std::fs::read(file).map_err(|source| InputError::Io {
            file: file.to_owned(),
            source,
        })?;
        let mut r = reader(&data, true);
        let headers = r.headers().map_err(|e| csv_err(file, &e, &data))?.clone();
        let start = r.position().clone();
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(InputError::Empty {
                file: file.to_owned(),
                expected: layout.expected(),
            });
        }
        let wrong = || InputError::Columns {
            file: file.to_owned(),
            expected: layout.expected(),
            got: headers.iter().collect::<Vec<_>>().join(","),
        };
        let mut cols = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            let h = renames
                .iter()
                .find(|(_, theirs)| theirs.as_str() == h)
                .map_or(h, |(ours, _)| ours.as_str());
            let name = layout
                .required
                .iter()
                .chain(layout.optional)
                .find(|n| **n == h)
                .ok_or_else(wrong)?;
            if cols.insert(*name, i).is_some() {
                return Err(wrong());
            }
        }
        if layout.required.iter().any(|r| !cols.contains_key(r)) {
            return Err(wrong());
        }
        Ok(Self {
            cols: Cols {
                file: Arc::from(file),
                cols: cols.into_iter().collect(),
                width: headers.len(),
            },
            body: usize::try_from(start.byte()).unwrap_or(data.len()),
            first_line: start.line(),
            data,
            parallel: true,
        })
    }

    /// Parses every record with `parse`, in file order. Returns the rows and, when a
    /// record failed, its error: the rows are then those before it, so that callers can
    /// still report an earlier duplicate first, as a reader going line by line would.
    /// An empty body is an [`InputError::Empty`].
    ///
    /// Large files without quotes are split at line ends and parsed on all threads; if
    /// any chunk fails, the file is parsed again line by line so the error reported is
    /// exactly the sequential one.
    fn rows<T, F>(&self, layout: &Layout, parse: F) -> (Vec<T>, Option<InputError>)
    where
        T: Send,
        F: Fn(&Cursor<'_>) -> Result<T, InputError> + Sync,
    {
        let body = &self.data[self.body.min(self.data.len())..];
        if self.parallel && body.len() >= PARALLEL_FROM && memchr::memchr(b'"', body).is_none() {
            if let Some(rows) = self.rows_parallel(body, &parse) {
                if !rows.is_empty() {
                    return (rows, None);
                }
            }
        }
        self.rows_sequential(layout, &parse)
    }

    /// The chunked parse; `None` on any error (the caller then goes line by line).
    fn rows_parallel<T, F>(&self, body: &[u8], parse: &F) -> Option<Vec<T>>
    where
        T: Send,
        F: Fn(&Cursor<'_>) -> Result<T, InputError> + Sync,
    {
        use rayon::prelude::*;
        let pieces = rayon::current_num_threads().max(1) * 8;
        let mut bounds = vec![0usize];
        for i in 1..pieces {
            let at = (body.len() / pieces * i).max(*bounds.last()?);
            match memchr::memchr(b'\n', &body[at..]) {
                Some(nl) if at + nl + 1 < body.len() => bounds.push(at + nl + 1),
                _ => break,
            }
        }
        bounds.dedup();
        bounds.push(body.len());
        // Line of each chunk's first byte, and its number of lines (an upper bound on its
        // records: no field has a quote, so none spans lines).
        let mut lines = Vec::with_capacity(bounds.len());
        let mut line = self.first_line;
        for w in bounds.windows(2) {
            let chunk = &body[w[0]..w[1]];
            let ends = memchr::memchr_iter(b'\n', chunk).count();
            lines.push((line, ends + usize::from(chunk.last() != Some(&b'\n'))));
            line += ends as u64;
        }
        // Each chunk writes its rows straight into its own part of one vector, a slot a
        // line, instead of into a vector of its own that is then copied into one: the copy
        // (3M balance rows, 432 MB, into memory touched for the first time) ran on one
        // thread; without it a million-claimant ingest took ≈ 0.2 s less and faulted ≈ 90k
        // fewer pages (BENCHMARKS.md, "Session 17").
        // The slots are made on all threads; a slot stays empty only for a blank line.
        let mut slots: Vec<Option<T>> = Vec::new();
        (0..lines.iter().map(|l| l.1).sum::<usize>())
            .into_par_iter()
            .map(|_| None)
            .collect_into_vec(&mut slots);
        let mut parts = Vec::with_capacity(lines.len());
        let mut rest = &mut slots[..];
        for &(_, n) in &lines {
            let (part, after) = rest.split_at_mut(n);
            parts.push(part);
            rest = after;
        }
        let parsed = bounds
            .windows(2)
            .zip(&lines)
            .zip(parts)
            .collect::<Vec<_>>()
            .into_par_iter()
            .all(|((w, &(first, _)), part)| {
                // This chunk's own path `Arc` and names (see [`LocalNames`]).
                let cols = Cols {
                    file: Arc::from(&*self.cols.file),
                    ..self.cols.clone()
                };
                let names = LocalNames::default();
                // A bad checksum fails the chunk as any bad field does; the line-by-line
                // parse that follows names it.
                let addresses = Addresses::deferred();
                let chunk = &body[w[0]..w[1]];
                let mut r = reader(chunk, false);
                let mut rec = csv::StringRecord::new();
                let mut slots = part.iter_mut();
                loop {
                    match r.read_record(&mut rec) {
                        Ok(false) => return addresses.checked(1),
                        Ok(true) if rec.len() == self.cols.width => {
                            let rel = rec.position().map_or(1, |p| record_line(p, chunk));
                            let c = Cursor {
                                t: &cols,
                                rec: &rec,
                                line: first + rel - 1,
                                names: &names,
                                addresses: &addresses,
                            };
                            let (Ok(row), Some(slot)) = (parse(&c), slots.next()) else {
                                return false;
                            };
                            *slot = Some(row);
                            if !addresses.checked(CHECKSUM_BATCH) {
                                return false;
                            }
                        }
                        _ => return false,
                    }
                }
            });
        if !parsed {
            return None;
        }
        slots.retain(Option::is_some);
        // In place: `Option<T>` has the size and alignment of the rows `T` (their `Arc`s
        // give it a niche), so the standard library reuses the allocation.
        Some(slots.into_iter().map(|r| r.expect("kept")).collect())
    }

    fn rows_sequential<T>(
        &self,
        layout: &Layout,
        parse: &dyn Fn(&Cursor<'_>) -> Result<T, InputError>,
    ) -> (Vec<T>, Option<InputError>) {
        let mut r = reader(&self.data, true);
        let mut rec = csv::StringRecord::new();
        let mut out = Vec::new();
        let mut rows = 0u64;
        let names = LocalNames::default();
        let addresses = Addresses::default();
        loop {
            match r.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {
                    let line = rec.position().map_or(0, |p| record_line(p, &self.data));
                    rows += 1;
                    let c = Cursor {
                        t: &self.cols,
                        rec: &rec,
                        line,
                        names: &names,
                        addresses: &addresses,
                    };
                    match parse(&c) {
                        Ok(row) => out.push(row),
                        Err(e) => return (out, Some(e)),
                    }
                }
                Err(e) => return (out, Some(csv_err(&self.cols.file, &e, &self.data))),
            }
        }
        if rows == 0 {
            return (
                out,
                Some(InputError::Empty {
                    file: self.cols.file.to_path_buf(),
                    expected: layout.expected(),
                }),
            );
        }
        (out, None)
    }
}

/// Checks rows for a repeated key in file order, then returns them, or the earlier of
/// the first repeat and the parse error `failed` (which ends `rows`).
fn unique_rows<T: RowKey>(
    file: &Path,
    (rows, failed): (Vec<T>, Option<InputError>),
    line: impl Fn(&T) -> u64,
    show: impl Fn(&T) -> String,
) -> Result<Vec<T>, InputError> {
    if let Some((first, repeat)) = first_repeat(&rows) {
        return Err(InputError::Duplicate {
            file: file.to_owned(),
            line: line(&rows[repeat]),
            first: line(&rows[first]),
            key: show(&rows[repeat]),
        });
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// The key a row of one input file must not repeat, borrowed from the row (cloning the
/// row's shared names for every key was a third of the check's time).
trait RowKey: Sync {
    /// The key.
    type Key<'a>: std::hash::Hash + Eq
    where
        Self: 'a;
    /// This row's key.
    fn key(&self) -> Self::Key<'_>;
}

impl RowKey for BalanceRow {
    type Key<'a> = (Address, &'a str, Option<&'a str>);
    fn key(&self) -> Self::Key<'_> {
        (self.account, &self.asset, self.pool.as_deref())
    }
}

impl RowKey for AmountRow {
    type Key<'a> = (Address, &'a str, Option<&'a str>, Option<&'a str>);
    fn key(&self) -> Self::Key<'_> {
        (
            self.account,
            &self.asset,
            self.pool.as_deref(),
            self.kind.as_deref(),
        )
    }
}

impl RowKey for HolderRow {
    type Key<'a> = Address;
    fn key(&self) -> Address {
        self.account
    }
}

impl RowKey for (Address, String, u64) {
    type Key<'a> = Address;
    fn key(&self) -> Address {
        self.0
    }
}

/// The first repeated key in `rows` order: `(first, repeat)`, the positions of the key's
/// first row and of the earliest row whose key an earlier row already had.
///
/// Each key's 64-bit hash is computed and sorted with its position on all threads; only
/// rows of equal hash have their keys compared, so a hash collision is never taken for a
/// repeat. A hash map of a million keys spent most of its time on cache misses; the sort
/// touches memory in order.
fn first_repeat<T: RowKey>(rows: &[T]) -> Option<(usize, usize)> {
    use rayon::prelude::*;
    use std::hash::BuildHasher as _;
    let hasher = foldhash::fast::FixedState::with_seed(0x7265_636f_7570);
    let mut hashed: Vec<(u64, usize)> = rows
        .par_iter()
        .enumerate()
        .map(|(i, r)| (hasher.hash_one(r.key()), i))
        .collect();
    hashed.par_sort_unstable();
    let mut best: Option<(usize, usize)> = None;
    for run in hashed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        // Within a run, positions ascend: the first earlier row with an equal key is the
        // repeat's first occurrence.
        for (j, &(_, repeat)) in run.iter().enumerate().skip(1) {
            if best.is_some_and(|(_, r)| r < repeat) {
                break;
            }
            let k = rows[repeat].key();
            if let Some(&(_, first)) = run[..j].iter().find(|(_, f)| rows[*f].key() == k) {
                best = Some((first, repeat));
                break;
            }
        }
    }
    best
}

/// The line of the record at `pos` in `data` (the bytes `pos` counts in). The csv crate gives
/// a record that follows blank lines the position of the first of them, line and byte
/// (<https://github.com/BurntSushi/rust-csv/issues/208>, open in csv 1.3): an error in that
/// record would name a blank line. The blank lines are skipped here and counted.
pub(crate) fn record_line(pos: &csv::Position, data: &[u8]) -> u64 {
    let at = usize::try_from(pos.byte()).unwrap_or(usize::MAX);
    let blank = data
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|&&b| b == b'\n')
        .count();
    pos.line() + blank as u64
}

fn csv_err(file: &Path, e: &csv::Error, data: &[u8]) -> InputError {
    let line = e.position().map_or(0, |p| record_line(p, data));
    match e.kind() {
        csv::ErrorKind::Io(_) => InputError::Io {
            file: file.to_owned(),
            source: std::io::Error::other(e.to_string()),
        },
        _ => InputError::Row {
            file: file.to_owned(),
            line,
            message: e.to_string(),
        },
    }
}

/// One record with its position.
struct Cursor<'a> {
    t: &'a Cols,
    rec: &'a csv::StringRecord,
    line: u64,
    names: &'a LocalNames,
    addresses: &'a Addresses,
}

/// One parse's (a chunk's, or the line-by-line reader's) memory of the addresses it read.
#[derive(Default)]
struct Addresses {
    /// The last address text accepted and its address: inputs list each account's assets
    /// on consecutive rows, and its EIP-55 check need not rerun.
    last: std::cell::RefCell<(String, Address)>,
    /// On the chunked parse, the mixed-case addresses whose checksums are still to be
    /// checked (by [`Addresses::checked`]); `None` checks each as it is read.
    deferred: Option<std::cell::RefCell<ChecksumBatch>>,
}

impl Addresses {
    /// Checksums are queued and checked in batches.
    fn deferred() -> Self {
        Addresses {
            deferred: Some(Default::default()),
            ..Default::default()
        }
    }

    /// Checks the queued checksums if at least `at_least` are queued (1: any): `false` when
    /// one of them fails.
    fn checked(&self, at_least: usize) -> bool {
        self.deferred.as_ref().is_none_or(|b| {
            let mut b = b.borrow_mut();
            b.len() < at_least || b.check()
        })
    }
}

impl Cursor<'_> {
    fn err(&self, field: &str, message: String) -> InputError {
        let column = self.t.index(field).map_or(0, |c| c + 1);
        InputError::Field {
            file: self.t.file.to_path_buf(),
            line: self.line,
            column,
            field: field.to_owned(),
            message,
        }
    }

    /// The field's text without leading and trailing whitespace (`str::trim`, as
    /// `csv::Trim::All` trims).
    fn get(&self, field: &str) -> Option<&str> {
        self.t
            .index(field)
            .and_then(|i| self.rec.get(i))
            .map(str::trim)
    }

    fn text(&self, field: &str) -> Result<&str, InputError> {
        match self.get(field) {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.err(field, "expected a value, got an empty field".to_owned())),
        }
    }

    fn opt_text(&self, field: &str) -> Option<String> {
        self.get(field).filter(|s| !s.is_empty()).map(str::to_owned)
    }

    fn opt_name(&self, field: &str) -> Option<Name> {
        self.get(field).filter(|s| !s.is_empty()).map(Name::from)
    }

    fn address(&self, field: &str) -> Result<Address, InputError> {
        let s = self.text(field)?;
        let mut last = self.addresses.last.borrow_mut();
        if last.0 == s {
            return Ok(last.1);
        }
        let a = match &self.addresses.deferred {
            Some(batch) => batch.borrow_mut().parse(s),
            None => parse_address(s),
        }
        .map_err(|e| self.err(field, e.to_string()))?;
        last.0.clear();
        last.0.push_str(s);
        last.1 = a;
        Ok(a)
    }

    fn amount(&self, field: &str, units: Units, decimals: u8) -> Result<Amount, InputError> {
        let s = self.text(field)?;
        let d = match units {
            Units::Base => 0,
            Units::Token => decimals,
        };
        parse_units(s, d).map_err(|e| match (units, e) {
            (Units::Base, crate::primitives::AmountError::TooManyDecimals { .. }) => {
                self.err(field, format!("expected an integer of base units, got {s:?} (write whole tokens with units = \"token\" on the input)"))
            }
            (_, e) => self.err(field, e.to_string()),
        })
    }

    /// The index in `assets` of the asset the field names.
    fn asset(&self, field: &str, assets: &[AssetSpec]) -> Result<usize, InputError> {
        let s = self.text(field)?;
        assets.iter().position(|a| a.symbol == s).ok_or_else(|| {
            let known: Vec<&str> = assets.iter().map(|a| a.symbol.as_str()).collect();
            self.err(
                field,
                format!(
                    "unknown asset {s:?}: expected one of [{}] declared in [[assets]]",
                    known.join(", ")
                ),
            )
        })
    }

    fn origin(&self) -> Origin {
        Origin {
            file: Arc::clone(&self.t.file),
            line: self.line,
        }
    }
}

const BALANCES: Layout = Layout {
    required: &["account", "asset", "before", "after"],
    optional: &["pool"],
};
const AMOUNTS_ONE_ASSET: Layout = Layout {
    required: &["account", "amount"],
    optional: &["pool", "kind"],
};
const AMOUNTS: Layout = Layout {
    required: &["account", "asset", "amount"],
    optional: &["pool", "kind"],
};
const HOLDERS_BALANCE: Layout = Layout {
    required: &["account", "balance"],
    optional: &[],
};
const HOLDERS_SHARES: Layout = Layout {
    required: &["account", "shares"],
    optional: &[],
};
const HOLDERS_AMOUNT: Layout = Layout {
    required: &["account", "amount"],
    optional: &[],
};
const CLASSES: Layout = Layout {
    required: &["account", "class"],
    optional: &[],
};

/// Reads a balance snapshot CSV `account,asset,before,after[,pool]`.
///
/// # Errors
/// [`InputError`] on a missing file, wrong columns, an empty file, a bad or
/// mis-checksummed address, an unknown asset, a negative, fractional, too precise or
/// too large amount, or a duplicate (account, asset, pool).
pub fn read_balances(
    file: &Path,
    units: Units,
    pool: Option<&str>,
    assets: &[AssetSpec],
    columns: &BTreeMap<String, String>,
) -> Result<Vec<BalanceRow>, InputError> {
    let t = Table::open_renamed(file, &BALANCES, columns)?;
    balances(&t, units, pool, assets)
}

/// The rows of an open balances table (see [`read_balances`]).
fn balances(
    t: &Table,
    units: Units,
    pool: Option<&str>,
    assets: &[AssetSpec],
) -> Result<Vec<BalanceRow>, InputError> {
    let file = &*t.cols.file;
    let names = symbols(assets);
    let pool: Option<Name> = pool.map(Name::from);
    let rows = t.rows(&BALANCES, |c| {
        let account = c.address("account")?;
        let a = c.asset("asset", assets)?;
        let decimals = assets[a].decimals;
        let before = c.amount("before", units, decimals)?;
        let after = c.amount("after", units, decimals)?;
        Ok(BalanceRow {
            account,
            asset: c.names.get(&names[a]),
            pool: c
                .opt_name("pool")
                .or_else(|| pool.as_ref().map(|p| c.names.get(p))),
            before,
            after,
            origin: c.origin(),
        })
    });
    unique_rows(
        file,
        rows,
        |r| r.origin.line,
        |r| {
            format!(
                "account {}, asset {}, pool {:?}",
                r.account, r.asset, r.pool
            )
        },
    )
}

/// The asset symbols as shared names, in manifest order.
fn symbols(assets: &[AssetSpec]) -> Vec<Name> {
    assets
        .iter()
        .map(|a| Name::from(a.symbol.as_str()))
        .collect()
}

/// How a CSV input is read: units, default pool, a fixed asset for files without an
/// `asset` column, and column renames (our name → the file's header).
#[derive(Debug, Clone, Copy)]
pub struct CsvOptions<'a> {
    /// Units of amount columns.
    pub units: Units,
    /// Pool for rows without a `pool` column.
    pub pool: Option<&'a str>,
    /// The asset of every row, for files without an `asset` column.
    pub asset: Option<&'a str>,
    /// Our column name → the file's header name.
    pub columns: &'a BTreeMap<String, String>,
}

/// Reads a loss list or netting CSV `account,asset,amount[,pool][,kind]` (or
/// `account,amount[,pool][,kind]` with a fixed `asset`; columns may be renamed).
///
/// # Errors
/// As [`read_balances`].
pub fn read_amounts(
    file: &Path,
    opts: CsvOptions<'_>,
    assets: &[AssetSpec],
) -> Result<Vec<AmountRow>, InputError> {
    let layout = if opts.asset.is_some() {
        &AMOUNTS_ONE_ASSET
    } else {
        &AMOUNTS
    };
    let fixed =
        match opts.asset {
            Some(sym) => Some(assets.iter().position(|a| a.symbol == sym).ok_or_else(|| {
                InputError::Field {
                    file: file.to_owned(),
                    line: 0,
                    column: 0,
                    field: "asset".into(),
                    message: format!("unknown asset {sym:?}"),
                }
            })?),
            None => None,
        };
    let units = opts.units;
    let pool: Option<Name> = opts.pool.map(Name::from);
    let names = symbols(assets);
    let t = Table::open_renamed(file, layout, opts.columns)?;
    let rows = t.rows(layout, |c| {
        let account = c.address("account")?;
        let a = match fixed {
            Some(a) => a,
            None => c.asset("asset", assets)?,
        };
        let amount = c.amount("amount", units, assets[a].decimals)?;
        Ok(AmountRow {
            account,
            asset: c.names.get(&names[a]),
            pool: c
                .opt_name("pool")
                .or_else(|| pool.as_ref().map(|p| c.names.get(p))),
            amount,
            kind: c.opt_text("kind"),
            origin: c.origin(),
        })
    });
    unique_rows(
        file,
        rows,
        |r| r.origin.line,
        |r| {
            format!(
                "account {}, asset {}, pool {:?}",
                r.account, r.asset, r.pool
            )
        },
    )
}

/// Which amount column a holder list has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderColumn {
    /// `account,balance` (wrapper holders).
    Balance,
    /// `account,shares` (vault holders).
    Shares,
    /// `account,amount` (cover lists).
    Amount,
}

/// Reads a holder list CSV (`account,balance`, `account,shares` or `account,amount`).
/// `decimals` applies when `units` is [`Units::Token`].
///
/// # Errors
/// As [`read_balances`]; a repeated account is a duplicate.
pub fn read_holders(
    file: &Path,
    column: HolderColumn,
    units: Units,
    decimals: u8,
) -> Result<Vec<HolderRow>, InputError> {
    let (layout, field) = match column {
        HolderColumn::Balance => (&HOLDERS_BALANCE, "balance"),
        HolderColumn::Shares => (&HOLDERS_SHARES, "shares"),
        HolderColumn::Amount => (&HOLDERS_AMOUNT, "amount"),
    };
    let t = Table::open(file, layout)?;
    let rows = t.rows(layout, |c| {
        Ok(HolderRow {
            account: c.address("account")?,
            amount: c.amount(field, units, decimals)?,
            origin: c.origin(),
        })
    });
    unique_rows(
        file,
        rows,
        |r| r.origin.line,
        |r| format!("account {}", r.account),
    )
}

/// Reads a class list CSV `account,class`.
///
/// # Errors
/// As [`read_balances`].
pub fn read_classes(file: &Path) -> Result<Vec<(Address, String)>, InputError> {
    let t = Table::open(file, &CLASSES)?;
    let rows = t.rows(&CLASSES, |c| {
        Ok((c.address("account")?, c.text("class")?.to_owned(), c.line))
    });
    let rows = unique_rows(file, rows, |r| r.2, |r| format!("account {}", r.0))?;
    Ok(rows.into_iter().map(|(a, c, _)| (a, c)).collect())
}

/// Reads an `address = amount` file (optionally with `[ASSET]` section headers): the
/// per-user tables of the Eminence 2020 and Harvest 2020 pipelines (banteg/your-eminence,
/// harvest-finance/snapshot). Blank lines and `#` comments are skipped; keys and values
/// may be quoted. Amounts beyond 64 bits are not valid TOML for common parsers, so the
/// lines are read here, strictly: anything else is an error naming the line.
///
/// # Errors
/// As [`read_balances`]; rows outside a section need `asset`.
pub fn read_address_map(
    file: &Path,
    units: Units,
    asset: Option<&str>,
    pool: Option<&str>,
    assets: &[AssetSpec],
) -> Result<Vec<AmountRow>, InputError> {
    let text = std::fs::read_to_string(file).map_err(|source| InputError::Io {
        file: file.to_owned(),
        source,
    })?;
    let field_err = |line: u64, column: usize, field: &str, message: String| InputError::Field {
        file: file.to_owned(),
        line,
        column,
        field: field.to_owned(),
        message,
    };
    let find = |sym: &str| assets.iter().find(|a| a.symbol == sym);
    let mut current: Option<&AssetSpec> = match asset {
        Some(a) => {
            Some(find(a).ok_or_else(|| field_err(0, 0, "asset", format!("unknown asset {a:?}")))?)
        }
        None => None,
    };
    let mut out = Vec::new();
    let names = symbols(assets);
    let file_name: Arc<Path> = Arc::from(file);
    let pool: Option<Name> = pool.map(Name::from);
    let mut seen: HashMap<(Address, String), u64> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if let Some(sec) = l.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            let sym = sec.trim().trim_matches('"');
            current = Some(find(sym).ok_or_else(|| {
                field_err(
                    line,
                    2,
                    "section",
                    format!("unknown asset {sym:?}: declare it in [[assets]]"),
                )
            })?);
            continue;
        }
        let (k, v) = l.split_once('=').ok_or_else(|| {
            field_err(
                line,
                1,
                "line",
                format!("expected `address = amount`, got {l:?}"),
            )
        })?;
        let (k, v) = (k.trim().trim_matches('"'), v.trim().trim_matches('"'));
        let vcol = raw.find('=').map_or(1, |p| p + 2);
        let a = current.ok_or_else(|| {
            field_err(
                line,
                1,
                "asset",
                "row outside an [ASSET] section and the input names no `asset`".to_owned(),
            )
        })?;
        let account = parse_address(k).map_err(|e| field_err(line, 1, "account", e.to_string()))?;
        let d = if units == Units::Token { a.decimals } else { 0 };
        let amount =
            parse_units(v, d).map_err(|e| field_err(line, vcol, "amount", e.to_string()))?;
        if let Some(first) = seen.insert((account, a.symbol.clone()), line) {
            return Err(InputError::Duplicate {
                file: file.to_owned(),
                line,
                first,
                key: format!("account {account}, asset {}", a.symbol),
            });
        }
        let ix = assets
            .iter()
            .position(|x| x.symbol == a.symbol)
            .unwrap_or(0);
        out.push(AmountRow {
            account,
            asset: Name::clone(&names[ix]),
            pool: pool.clone(),
            amount,
            kind: None,
            origin: Origin {
                file: Arc::clone(&file_name),
                line,
            },
        });
    }
    if out.is_empty() {
        return Err(InputError::Empty {
            file: file.to_owned(),
            expected: "address = amount".to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::Decimal;

    fn usdc() -> Vec<AssetSpec> {
        vec![AssetSpec {
            symbol: "USDC".into(),
            address: None,
            decimals: 6,
            price: Decimal::ONE,
            price_source: None,
            price_block: None,
        }]
    }

    /// A balances CSV well over [`PARALLEL_FROM`]: `rows` rows, row `i` (line `i + 2`) for
    /// account `i + 1`, checksummed on even rows and lowercase on odd ones; `edit` may
    /// rewrite any row.
    fn big_csv(rows: usize, edit: impl Fn(usize, String) -> String) -> tempfile::NamedTempFile {
        use std::io::Write as _;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut text = String::from("account,asset,before,after\n");
        for i in 0..rows {
            let a = Address::from_word(crate::primitives::B256::from(
                crate::primitives::U256::from(i + 1),
            ));
            let account = if i % 2 == 0 {
                a.to_checksum(None)
            } else {
                format!("{a:#x}")
            };
            let row = format!("{account},USDC,{},{}\n", 1_000_000 + i, i);
            text.push_str(&edit(i, row));
        }
        assert!(text.len() > PARALLEL_FROM);
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn line_by_line(path: &Path) -> Result<Vec<BalanceRow>, InputError> {
        let mut t = Table::open(path, &BALANCES)?;
        t.parallel = false;
        balances(&t, Units::Base, None, &usdc())
    }

    #[test]
    fn a_large_file_read_in_parallel_equals_it_read_line_by_line() {
        let f = big_csv(40_000, |_, r| r);
        let rows = read_balances(f.path(), Units::Base, None, &usdc(), &BTreeMap::new()).unwrap();
        assert_eq!(rows.len(), 40_000);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.origin.line, i as u64 + 2, "row {i}");
            assert_eq!(r.before, Amount::from(1_000_000 + i as u64));
        }
        assert_eq!(rows, line_by_line(f.path()).unwrap());
        // ... and the parallel path really was taken, not its line-by-line fallback.
        let t = Table::open(f.path(), &BALANCES).unwrap();
        let parsed = t.rows_parallel(&t.data[t.body..], &|c: &Cursor<'_>| c.address("account"));
        assert_eq!(parsed.map(|r| r.len()), Some(40_000));
    }

    #[test]
    fn blank_lines_leave_no_hole_in_the_rows_of_a_parallel_parse() {
        // Each chunk writes into one slot a line; a blank line's slot stays empty and is
        // dropped. Blank lines here and there, two in a row, and one ending the file.
        let f = big_csv(40_000, |i, r| match i {
            7 | 12_345 => format!("{r}\n"),
            30_000 => format!("{r}\n\n"),
            39_999 => format!("{r}\n"),
            _ => r,
        });
        let t = Table::open(f.path(), &BALANCES).unwrap();
        let parsed = t
            .rows_parallel(&t.data[t.body..], &|c: &Cursor<'_>| {
                Ok((c.address("account")?, c.line))
            })
            .expect("the chunked parse");
        assert_eq!(parsed.len(), 40_000);
        let rows = read_balances(f.path(), Units::Base, None, &usdc(), &BTreeMap::new()).unwrap();
        assert_eq!(rows, line_by_line(f.path()).unwrap());
        for (i, (r, (a, line))) in rows.iter().zip(&parsed).enumerate() {
            assert_eq!(r.before, Amount::from(1_000_000 + i as u64), "row {i}");
            assert_eq!((r.account, r.origin.line), (*a, *line), "row {i}");
        }
        assert_eq!(rows[8].origin.line, 11, "after the blank line 10");
        assert_eq!(
            rows[39_999].origin.line, 40_005,
            "four blank lines before it"
        );
    }

    #[test]
    fn an_error_after_blank_lines_names_its_own_line_on_both_paths() {
        // csv 1.3 places a record that follows blank lines on the first of them
        // (rust-csv#208); the reported line must be the record's. Line 2 + 20,000 is
        // row 20,000 without the blank lines; three precede it (one `\r\n`).
        let f = big_csv(40_000, |i, r| match i {
            5 => format!("{r}\n"),
            19_999 => format!("{r}\r\n\n"),
            20_000 => r.replace(",USDC,", ",DAI,"),
            _ => r,
        });
        let e = read_balances(f.path(), Units::Base, None, &usdc(), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(":20005:2: field `asset`"), "{e}");
        assert_eq!(e, line_by_line(f.path()).unwrap_err().to_string());
        // A small file (read line by line only), the bad row straight after blank lines,
        // and a CSV-level error (a short row) there too.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.csv");
        let a = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        std::fs::write(&p, format!("account,asset,before,after\n\n{a},DAI,1,0\n")).unwrap();
        let e = read_balances(&p, Units::Base, None, &usdc(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains(":3:2: field `asset`"), "{e}");
        std::fs::write(
            &p,
            format!("account,asset,before,after\n{a},USDC,1,0\n\n\n{a},USDC\n"),
        )
        .unwrap();
        let e = read_balances(&p, Units::Base, None, &usdc(), &BTreeMap::new()).unwrap_err();
        assert!(matches!(e, InputError::Row { line: 5, .. }), "{e}");
    }

    #[test]
    fn whitespace_around_fields_and_headers_is_trimmed_on_both_paths() {
        let plain = big_csv(40_000, |_, r| r);
        let padded = big_csv(40_000, |i, r| match i % 3 {
            0 => r.replace(',', " ,\t"),
            1 => format!("  {}", r.trim_end().replace(',', "  , ")) + " \n",
            _ => r,
        });
        let text = std::fs::read_to_string(padded.path()).unwrap().replacen(
            "account,asset,before,after",
            " account , asset,before ,after",
            1,
        );
        std::fs::write(padded.path(), text).unwrap();
        let read = |p: &Path| read_balances(p, Units::Base, None, &usdc(), &BTreeMap::new());
        let (want, got) = (read(plain.path()).unwrap(), read(padded.path()).unwrap());
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.account, g.before, g.after),
                (w.account, w.before, w.after)
            );
        }
        let slow = line_by_line(padded.path()).unwrap();
        assert_eq!(slow, got);
    }

    #[test]
    fn an_error_deep_in_a_large_file_names_its_line() {
        let f = big_csv(40_000, |i, r| {
            if i == 31_337 {
                r.replace(",USDC,", ",USDC,-") // a negative `before`
            } else {
                r
            }
        });
        let e = read_balances(f.path(), Units::Base, None, &usdc(), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(":31339:3: field `before`"), "{e}");
        assert_eq!(e, line_by_line(f.path()).unwrap_err().to_string());
    }

    #[test]
    fn a_bad_checksum_anywhere_in_a_large_file_fails_its_chunk_and_is_named() {
        // The chunked parse checks checksums in batches: a bad one must still fail the
        // parse wherever it falls (first row, mid-batch, the very last row), and the error
        // be the line-by-line reader's. Even rows are checksummed (see `big_csv`).
        let flip = |i: usize, r: String| {
            // Another account's address, checksummed, with the case of its first letter
            // swapped: still hex of mixed case, wrong checksum.
            let a = Address::from_word(crate::primitives::keccak256((i as u64).to_be_bytes()));
            let mut b = a.to_checksum(None).into_bytes();
            let l = 2 + b[2..].iter().position(u8::is_ascii_alphabetic).unwrap();
            b[l] ^= 0x20;
            let bad = String::from_utf8(b).unwrap();
            assert!(matches!(
                parse_address(&bad),
                Err(crate::primitives::AddressError::BadChecksum { .. })
            ));
            format!("{bad}{}", &r[r.find(',').unwrap()..])
        };
        for bad in [0, 1_000, 20_002, 39_998] {
            let f = big_csv(40_000, |i, r| if i == bad { flip(i, r) } else { r });
            let t = Table::open(f.path(), &BALANCES).unwrap();
            let parsed = t.rows_parallel(&t.data[t.body..], &|c: &Cursor<'_>| c.address("account"));
            assert!(parsed.is_none(), "row {bad}: the chunked parse accepted it");
            let e = read_balances(f.path(), Units::Base, None, &usdc(), &BTreeMap::new())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(":{}:1: field `account`", bad + 2)) && e.contains("EIP-55"),
                "{e}"
            );
            assert_eq!(e, line_by_line(f.path()).unwrap_err().to_string());
        }
    }

    #[test]
    fn a_repeat_before_a_bad_field_is_reported_first_as_line_by_line() {
        let first = big_csv(40_000, |_, r| r);
        let text = std::fs::read_to_string(first.path()).unwrap();
        let row_10 = text.lines().nth(11).unwrap().to_owned();
        let f = big_csv(40_000, |i, r| match i {
            20_000 => format!("{row_10}\n"),
            35_000 => r.replace(",USDC,", ",DAI,"),
            _ => r,
        });
        let e = read_balances(f.path(), Units::Base, None, &usdc(), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(":20002: duplicate row"), "{e}");
        assert!(e.contains("(first at line 12)"), "{e}");
        assert_eq!(e, line_by_line(f.path()).unwrap_err().to_string());
    }
}
