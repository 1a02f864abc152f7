//! CSV inputs named in the incident manifest, read with exact positions in every error.
//!
//! Every file must have a header row with exactly the documented columns (optional
//! columns may be left out; unknown columns are an error). Addresses are EIP-55 checked;
//! amounts are non-negative integers of base units, or whole tokens with at most the
//! asset's decimals when the manifest says `units = "token"`.

use crate::manifest::{AssetSpec, Units};
use crate::primitives::{parse_address, parse_units, Address, Amount};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
    /// File path.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
}

/// A balance snapshot row: holdings before and after the exploit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    /// Holder.
    pub account: Address,
    /// Asset symbol.
    pub asset: String,
    /// Pool (the `pool` column, else the input's `pool`).
    pub pool: Option<String>,
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
    pub asset: String,
    /// Pool (the `pool` column, else the input's `pool`).
    pub pool: Option<String>,
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

/// An open CSV file with its column map.
struct Table {
    file: PathBuf,
    reader: csv::Reader<std::io::BufReader<std::fs::File>>,
    cols: HashMap<&'static str, usize>,
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
        let f = std::fs::File::open(file).map_err(|source| InputError::Io {
            file: file.to_owned(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(std::io::BufReader::with_capacity(1 << 20, f));
        let headers = reader.headers().map_err(|e| csv_err(file, &e))?.clone();
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
            file: file.to_owned(),
            reader,
            cols,
        })
    }

    /// Iterates records; calls `f(record, line)`. Errors on an empty body.
    fn each<F>(&mut self, layout: &Layout, mut f: F) -> Result<(), InputError>
    where
        F: FnMut(&Cursor<'_>) -> Result<(), InputError>,
    {
        let mut rec = csv::StringRecord::new();
        let mut rows = 0u64;
        loop {
            match self.reader.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {
                    let line = rec.position().map_or(0, |p| p.line());
                    rows += 1;
                    f(&Cursor {
                        t: self,
                        rec: &rec,
                        line,
                    })?;
                }
                Err(e) => return Err(csv_err(&self.file, &e)),
            }
        }
        if rows == 0 {
            return Err(InputError::Empty {
                file: self.file.clone(),
                expected: layout.expected(),
            });
        }
        Ok(())
    }
}

fn csv_err(file: &Path, e: &csv::Error) -> InputError {
    let line = e.position().map_or(0, |p| p.line());
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
    t: &'a Table,
    rec: &'a csv::StringRecord,
    line: u64,
}

impl Cursor<'_> {
    fn err(&self, field: &str, message: String) -> InputError {
        let column = self.t.cols.get(field).map_or(0, |c| c + 1);
        InputError::Field {
            file: self.t.file.clone(),
            line: self.line,
            column,
            field: field.to_owned(),
            message,
        }
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.t.cols.get(field).and_then(|&i| self.rec.get(i))
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

    fn address(&self, field: &str) -> Result<Address, InputError> {
        let s = self.text(field)?;
        parse_address(s).map_err(|e| self.err(field, e.to_string()))
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

    fn asset<'m>(&self, field: &str, assets: &'m [AssetSpec]) -> Result<&'m AssetSpec, InputError> {
        let s = self.text(field)?;
        assets.iter().find(|a| a.symbol == s).ok_or_else(|| {
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
            file: self.t.file.clone(),
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

fn check_dup<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, u64>,
    key: K,
    c: &Cursor<'_>,
    show: impl FnOnce() -> String,
) -> Result<(), InputError> {
    if let Some(first) = seen.insert(key, c.line) {
        return Err(InputError::Duplicate {
            file: c.t.file.clone(),
            line: c.line,
            first,
            key: show(),
        });
    }
    Ok(())
}

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
    let mut t = Table::open_renamed(file, &BALANCES, columns)?;
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    t.each(&BALANCES, |c| {
        let account = c.address("account")?;
        let a = c.asset("asset", assets)?;
        let before = c.amount("before", units, a.decimals)?;
        let after = c.amount("after", units, a.decimals)?;
        let pool = c.opt_text("pool").or_else(|| pool.map(str::to_owned));
        check_dup(
            &mut seen,
            (account, a.symbol.clone(), pool.clone()),
            c,
            || format!("account {account}, asset {}, pool {:?}", a.symbol, pool),
        )?;
        out.push(BalanceRow {
            account,
            asset: a.symbol.clone(),
            pool,
            before,
            after,
            origin: c.origin(),
        });
        Ok(())
    })?;
    Ok(out)
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
    let fixed = match opts.asset {
        Some(sym) => {
            Some(
                assets
                    .iter()
                    .find(|a| a.symbol == sym)
                    .ok_or_else(|| InputError::Field {
                        file: file.to_owned(),
                        line: 0,
                        column: 0,
                        field: "asset".into(),
                        message: format!("unknown asset {sym:?}"),
                    })?,
            )
        }
        None => None,
    };
    let (units, pool) = (opts.units, opts.pool);
    let mut t = Table::open_renamed(file, layout, opts.columns)?;
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    t.each(layout, |c| {
        let account = c.address("account")?;
        let a = match fixed {
            Some(a) => a,
            None => c.asset("asset", assets)?,
        };
        let amount = c.amount("amount", units, a.decimals)?;
        let pool = c.opt_text("pool").or_else(|| pool.map(str::to_owned));
        let kind = c.opt_text("kind");
        check_dup(
            &mut seen,
            (account, a.symbol.clone(), pool.clone(), kind.clone()),
            c,
            || format!("account {account}, asset {}, pool {:?}", a.symbol, pool),
        )?;
        out.push(AmountRow {
            account,
            asset: a.symbol.clone(),
            pool,
            amount,
            kind,
            origin: c.origin(),
        });
        Ok(())
    })?;
    Ok(out)
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
    let mut t = Table::open(file, layout)?;
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    t.each(layout, |c| {
        let account = c.address("account")?;
        let amount = c.amount(field, units, decimals)?;
        check_dup(&mut seen, account, c, || format!("account {account}"))?;
        out.push(HolderRow {
            account,
            amount,
            origin: c.origin(),
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads a class list CSV `account,class`.
///
/// # Errors
/// As [`read_balances`].
pub fn read_classes(file: &Path) -> Result<Vec<(Address, String)>, InputError> {
    let mut t = Table::open(file, &CLASSES)?;
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    t.each(&CLASSES, |c| {
        let account = c.address("account")?;
        let class = c.text("class")?.to_owned();
        check_dup(&mut seen, account, c, || format!("account {account}"))?;
        out.push((account, class));
        Ok(())
    })?;
    Ok(out)
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
        out.push(AmountRow {
            account,
            asset: a.symbol.clone(),
            pool: pool.map(str::to_owned),
            amount,
            kind: None,
            origin: Origin {
                file: file.to_owned(),
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
