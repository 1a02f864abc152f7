//! The incident manifest: one TOML file that says everything a run needs.
//!
//! Paths inside a manifest are relative to the manifest's own directory. Unknown keys
//! are rejected everywhere, and every error names the file and the key (and, for TOML
//! syntax and type errors, the line and column). Amounts are decimal strings of base
//! units unless a field says otherwise. See `examples/` and `models/incidents/` for
//! documented manifests.

use crate::claims::ClaimTreeSpec;
use crate::ingest::trace::StateDiffConfig;
use crate::loss::ExclusionMode;
use crate::policy::{FundingSource, PolicyConfig, SourceKind};
use crate::primitives::{parse_address, parse_units, Address, Amount, Asset, Decimal};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A manifest could not be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: cannot read manifest: {source}")]
    Io {
        /// Manifest path.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a missing key or a wrong type (the message from the
    /// TOML parser names the key, line and column).
    #[error("{file}: {message}")]
    Toml {
        /// Manifest path.
        file: PathBuf,
        /// Parser message with line, column and key.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable (unknown asset, duplicate symbol …).
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        /// Manifest path.
        file: PathBuf,
        /// Dotted key path, e.g. `assets[1].decimals`.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
}

/// A parsed, validated incident manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// What happened and where.
    pub incident: Incident,
    /// Every asset the incident involves, with its reference price.
    #[serde(default)]
    pub assets: Vec<AssetSpec>,
    /// Input files.
    #[serde(default)]
    pub inputs: Inputs,
    /// Vault or pool share tokens whose holders lost through the share price.
    #[serde(default)]
    pub vaults: Vec<VaultSpec>,
    /// Node state diffs decoded into balance changes and share-price losses (`[state_diff]`,
    /// see [`StateDiffConfig`]); paths in it are relative to the manifest.
    #[serde(default)]
    pub state_diff: Option<StateDiffConfig>,
    /// Wrappers (gauges, staking pools, LP tokens) looked through to their holders.
    #[serde(default)]
    pub wrappers: Vec<WrapperSpec>,
    /// Accounts excluded from payment.
    #[serde(default)]
    pub exclusions: Vec<ExclusionSpec>,
    /// Funding sources in waterfall order (`[[funding]]`, see [`FundingSource`]).
    #[serde(default)]
    pub funding: Vec<FundingSource>,
    /// The allocation policy (`[policy]`, see [`PolicyConfig`]).
    pub policy: PolicyConfig,
    /// What to write.
    #[serde(default)]
    pub outputs: Outputs,
    /// The directory relative paths are resolved against (the manifest's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The manifest's path as given.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[incident]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Short stable id, e.g. `"eminence-2020"`.
    pub id: String,
    /// Human name for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Snapshot block: the last block before the first attack transaction.
    pub snapshot_block: u64,
    /// Per-pool snapshot blocks where pools were snapshotted separately (Curve 2023).
    /// Provenance only: shown in the report; the inputs must already be taken at them.
    #[serde(default)]
    pub pool_snapshot_blocks: BTreeMap<String, u64>,
    /// The block after the exploit the "after" balances are taken at.
    #[serde(default)]
    pub post_block: Option<u64>,
    /// Numeraire values are expressed in: `"USD"` or an asset symbol.
    #[serde(default = "default_numeraire")]
    pub numeraire: String,
    /// Free text shown at the top of the report.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_numeraire() -> String {
    "USD".to_owned()
}

/// `[[assets]]`: a token and its reference price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// Symbol used as the asset's key everywhere.
    pub symbol: String,
    /// Token contract (EIP-55 checked); omit for the native asset.
    #[serde(default, deserialize_with = "de_opt_address")]
    pub address: Option<Address>,
    /// Decimals (0..=77).
    pub decimals: u8,
    /// Reference price in numeraire units per whole token, as a decimal string.
    #[serde(deserialize_with = "de_decimal")]
    pub price: Decimal,
    /// Where the price comes from (oracle, pool, exchange).
    #[serde(default)]
    pub price_source: Option<String>,
    /// The block the price was read at.
    #[serde(default)]
    pub price_block: Option<u64>,
}

impl AssetSpec {
    /// The asset without its price.
    pub fn asset(&self) -> Asset {
        Asset {
            symbol: self.symbol.clone(),
            address: self.address,
            decimals: self.decimals,
        }
    }
}

/// Units a CSV's amount columns are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// Integers of base units (10^-decimals of a token). The default.
    #[default]
    Base,
    /// Whole tokens with up to `decimals` fractional digits (`"1.5"`).
    Token,
}

/// The layout of an input file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// CSV with a header row (the default).
    #[default]
    Csv,
    /// `address = amount` lines, optionally under `[ASSET]` section headers: the TOML
    /// tables of the Eminence 2020 and Harvest 2020 reimbursement pipelines. Loss lists
    /// and netting only.
    AddressMap,
}

/// One input file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvInput {
    /// Path relative to the manifest.
    pub path: PathBuf,
    /// File layout (`csv` or `address-map`).
    #[serde(default)]
    pub format: InputFormat,
    /// Units of the amount columns.
    #[serde(default)]
    pub units: Units,
    /// Pool the rows belong to when the file has no `pool` column.
    #[serde(default)]
    pub pool: Option<String>,
    /// The asset of every row, for a loss or netting file without an `asset` column
    /// (CSV) or without `[ASSET]` sections (`address-map`).
    #[serde(default)]
    pub asset: Option<String>,
    /// Column renames for CSV files: recoup's column name → the file's header, e.g.
    /// `{ account = "address", amount = "unripeBeans" }`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// A cover list: per-account cover amounts of one insurance funding source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverInput {
    /// The `[[funding]]` source id the cover belongs to.
    pub source: String,
    /// CSV `account,amount` (amount in the source asset).
    pub path: PathBuf,
    /// Units of `amount`.
    #[serde(default)]
    pub units: Units,
}

/// `[inputs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Balance snapshots, CSV `account,asset,before,after[,pool]`.
    #[serde(default)]
    pub balances: Vec<CsvInput>,
    /// Loss lists, CSV `account,asset,amount[,pool]`.
    #[serde(default)]
    pub losses: Vec<CsvInput>,
    /// Post-exploit withdrawals and refunds to net, CSV `account,asset,amount[,pool][,kind]`.
    #[serde(default)]
    pub netting: Vec<CsvInput>,
    /// Cover lists for insurance sources.
    #[serde(default)]
    pub covers: Vec<CoverInput>,
    /// User classes, CSV `account,class`.
    #[serde(default)]
    pub classes: Option<PathBuf>,
}

/// `[[vaults]]`: a share token whose price per share fell (share-price losses).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSpec {
    /// Name, used as the pool of its loss rows.
    pub name: String,
    /// The underlying asset symbol losses are measured in.
    pub underlying: String,
    /// Vault total assets at the snapshot block, base units of `underlying`.
    #[serde(deserialize_with = "de_amount")]
    pub total_assets_before: Amount,
    /// Vault total share supply at the snapshot block, base units of shares.
    #[serde(deserialize_with = "de_amount")]
    pub total_supply_before: Amount,
    /// Vault total assets after the exploit.
    #[serde(deserialize_with = "de_amount")]
    pub total_assets_after: Amount,
    /// Vault total share supply after the exploit.
    #[serde(deserialize_with = "de_amount")]
    pub total_supply_after: Amount,
    /// CSV `account,shares`: holders' share balances at the snapshot (base units).
    pub holders: PathBuf,
}

/// `[[wrappers]]`: an account whose loss belongs to its token holders (look-through).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapperSpec {
    /// Human name (e.g. `"Uniswap EMN/DAI LP"`).
    pub name: String,
    /// The wrapper contract, whose loss rows are passed through and removed.
    #[serde(deserialize_with = "de_address")]
    pub address: Address,
    /// CSV `account,balance`: wrapper balances at the snapshot (base units).
    pub holders: PathBuf,
}

/// `[[exclusions]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionSpec {
    /// The excluded account.
    #[serde(deserialize_with = "de_address")]
    pub account: Address,
    /// Why (attacker, bot, liquidator, insured elsewhere …).
    pub reason: String,
    /// `redistribute` or `withhold`.
    pub mode: ExclusionMode,
}

/// `[outputs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// Output directory relative to the working directory (`--out` overrides).
    #[serde(default = "default_out_dir")]
    pub dir: PathBuf,
    /// Claim trees to build (`[[outputs.trees]]`, see [`ClaimTreeSpec`]); each must name
    /// its payout `asset`.
    #[serde(default)]
    pub trees: Vec<ClaimTreeSpec>,
}

impl Default for Outputs {
    fn default() -> Self {
        Self {
            dir: default_out_dir(),
            trees: Vec::new(),
        }
    }
}

/// Files every run writes into its output directory; tree files must not collide.
pub const RESERVED_FILES: [&str; 3] = ["claims.csv", "summary.json", "report.md"];

fn default_out_dir() -> PathBuf {
    PathBuf::from("out")
}

fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let s = String::deserialize(d)?;
    let v: Decimal = s.parse().map_err(|e| {
        serde::de::Error::custom(format!("expected a decimal string, got {s:?}: {e}"))
    })?;
    if v.is_sign_negative() {
        return Err(serde::de::Error::custom(format!(
            "expected a non-negative price, got {s:?}"
        )));
    }
    Ok(v)
}

fn de_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
    let s = String::deserialize(d)?;
    parse_units(&s, 0).map_err(serde::de::Error::custom)
}

fn de_address<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    let s = String::deserialize(d)?;
    parse_address(&s).map_err(serde::de::Error::custom)
}

fn de_opt_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
    de_address(d).map(Some)
}

impl Manifest {
    /// Reads and validates a manifest file.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file and key.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses manifest text; `path` is used for messages and to resolve relative paths.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file and key.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let mut m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Toml {
            file: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        m.path = path.to_owned();
        m.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if m.base_dir.as_os_str().is_empty() {
            m.base_dir = PathBuf::from(".");
        }
        m.validate()?;
        Ok(m)
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            file: self.path.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.incident.id.trim().is_empty() {
            return Err(self.invalid("incident.id", "expected a non-empty id"));
        }
        let mut seen = BTreeMap::new();
        for (i, a) in self.assets.iter().enumerate() {
            if a.symbol.trim().is_empty() {
                return Err(
                    self.invalid(format!("assets[{i}].symbol"), "expected a non-empty symbol")
                );
            }
            if a.decimals > 77 {
                return Err(self.invalid(
                    format!("assets[{i}].decimals"),
                    format!("expected 0..=77, got {}", a.decimals),
                ));
            }
            if let Some(j) = seen.insert(a.symbol.as_str(), i) {
                return Err(self.invalid(
                    format!("assets[{i}].symbol"),
                    format!("duplicate symbol {:?} (also assets[{j}])", a.symbol),
                ));
            }
        }
        if self.incident.numeraire != "USD" && !seen.contains_key(self.incident.numeraire.as_str())
        {
            return Err(self.invalid(
                "incident.numeraire",
                format!(
                    "expected \"USD\" or an asset symbol, got {:?}",
                    self.incident.numeraire
                ),
            ));
        }
        for (i, v) in self.vaults.iter().enumerate() {
            if !seen.contains_key(v.underlying.as_str()) {
                return Err(self.invalid(
                    format!("vaults[{i}].underlying"),
                    format!("unknown asset {:?}: declare it in [[assets]]", v.underlying),
                ));
            }
            if v.total_supply_before.is_zero() {
                return Err(self.invalid(
                    format!("vaults[{i}].total_supply_before"),
                    "expected a non-zero share supply",
                ));
            }
        }
        let inputs = self
            .inputs
            .balances
            .iter()
            .map(|c| ("balances", c))
            .chain(self.inputs.losses.iter().map(|c| ("losses", c)))
            .chain(self.inputs.netting.iter().map(|c| ("netting", c)));
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (table, c) in inputs {
            let i = *counts.entry(table).and_modify(|n| *n += 1).or_insert(0);
            if let Some(a) = &c.asset {
                if !seen.contains_key(a.as_str()) {
                    return Err(self.invalid(
                        format!("inputs.{table}[{i}].asset"),
                        format!("unknown asset {a:?}: declare it in [[assets]]"),
                    ));
                }
                if table == "balances" {
                    return Err(self.invalid(
                        format!("inputs.{table}[{i}].asset"),
                        "balance snapshots have an asset column",
                    ));
                }
            }
            const NAMES: [&str; 7] = [
                "account", "asset", "amount", "before", "after", "pool", "kind",
            ];
            if let Some(k) = c.columns.keys().find(|k| !NAMES.contains(&k.as_str())) {
                return Err(self.invalid(
                    format!("inputs.{table}[{i}].columns.{k}"),
                    format!("unknown column {k:?}: expected one of {NAMES:?}"),
                ));
            }
            if table == "balances" && c.format != InputFormat::Csv {
                return Err(self.invalid(
                    format!("inputs.{table}[{i}].format"),
                    "balance snapshots are CSV `account,asset,before,after`",
                ));
            }
        }
        let mut ids = BTreeMap::new();
        for (i, f) in self.funding.iter().enumerate() {
            if !seen.contains_key(f.asset.as_str()) {
                return Err(self.invalid(
                    format!("funding[{i}].asset"),
                    format!("unknown asset {:?}: declare it in [[assets]]", f.asset),
                ));
            }
            if let Some(j) = ids.insert(f.id.as_str(), i) {
                return Err(self.invalid(
                    format!("funding[{i}].id"),
                    format!("duplicate funding id {:?} (also funding[{j}])", f.id),
                ));
            }
        }
        for (i, c) in self.inputs.covers.iter().enumerate() {
            match ids.get(c.source.as_str()).map(|&j| &self.funding[j]) {
                None => {
                    return Err(self.invalid(
                        format!("inputs.covers[{i}].source"),
                        format!("no [[funding]] source with id {:?}", c.source),
                    ))
                }
                Some(f) if f.kind != SourceKind::Insurance => {
                    return Err(self.invalid(
                        format!("inputs.covers[{i}].source"),
                        format!(
                            "funding {:?} is {:?}, not an insurance source",
                            c.source, f.kind
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let mut files = BTreeMap::new();
        for (i, t) in self.outputs.trees.iter().enumerate() {
            match &t.asset {
                None => {
                    return Err(self.invalid(
                        format!("outputs.trees[{i}].asset"),
                        "expected the payout asset whose claims the tree carries",
                    ))
                }
                Some(a) if !seen.contains_key(a.as_str()) => {
                    return Err(self.invalid(
                        format!("outputs.trees[{i}].asset"),
                        format!("unknown asset {a:?}: declare it in [[assets]]"),
                    ))
                }
                Some(_) => {}
            }
            if t.file.contains('/')
                || t.file.contains('\\')
                || t.file.starts_with('.')
                || RESERVED_FILES.contains(&t.file.as_str())
            {
                return Err(self.invalid(
                    format!("outputs.trees[{i}].file"),
                    format!(
                        "expected a plain file name other than {RESERVED_FILES:?}, got {:?}",
                        t.file
                    ),
                ));
            }
            if let Some(j) = files.insert(t.file.as_str(), i) {
                return Err(self.invalid(
                    format!("outputs.trees[{i}].file"),
                    format!("file {:?} is also written by outputs.trees[{j}]", t.file),
                ));
            }
        }
        let mut excl = BTreeMap::new();
        for (i, e) in self.exclusions.iter().enumerate() {
            if let Some(j) = excl.insert(e.account, i) {
                return Err(self.invalid(
                    format!("exclusions[{i}].account"),
                    format!("{} is already excluded by exclusions[{j}]", e.account),
                ));
            }
        }
        Ok(())
    }

    /// The asset with `symbol`, or `None`.
    pub fn asset(&self, symbol: &str) -> Option<&AssetSpec> {
        self.assets.iter().find(|a| a.symbol == symbol)
    }

    /// Resolves a manifest-relative path.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Every input file the manifest names, resolved, in a fixed order (for the run hash).
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        let i = &self.inputs;
        v.extend(i.balances.iter().map(|c| self.resolve(&c.path)));
        v.extend(i.losses.iter().map(|c| self.resolve(&c.path)));
        v.extend(i.netting.iter().map(|c| self.resolve(&c.path)));
        v.extend(i.covers.iter().map(|c| self.resolve(&c.path)));
        v.extend(i.classes.iter().map(|c| self.resolve(c)));
        v.extend(self.vaults.iter().map(|x| self.resolve(&x.holders)));
        v.extend(self.wrappers.iter().map(|x| self.resolve(&x.holders)));
        if let Some(d) = &self.state_diff {
            v.extend(d.traces.iter().map(|t| self.resolve(t.path())));
            v.extend(d.call_traces.iter().map(|p| self.resolve(p)));
            v.extend(d.transfer_logs.iter().map(|p| self.resolve(p)));
            v.extend(d.holders.iter().map(|p| self.resolve(p)));
            v.extend(
                d.vaults
                    .iter()
                    .filter_map(|x| x.totals.as_ref())
                    .map(|p| self.resolve(p)),
            );
            if let Some(e) = &d.eth {
                v.extend(e.receipts.iter().chain(&e.blocks).map(|p| self.resolve(p)));
            }
        }
        v
    }
}
