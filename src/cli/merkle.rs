//! `recoup merkle`: build claim trees from a CSV, print proofs from a tree file, verify a
//! proof against a root.

use super::{parse_address_arg, GlobalArgs, EXIT_CHECK_FAILED};
use crate::claims::{
    self, build_tree, ClaimEntry, ClaimTreeSpec, LeafEncoding, LeafValue, SolType,
    StandardMerkleTree, TreeFormat,
};
use crate::primitives::{format_address, parse_address, Address, Amount, B256};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Subcommands of `recoup merkle`.
#[derive(Debug, clap::Subcommand)]
pub enum MerkleCommand {
    /// Build a claim tree from a claims CSV (header `account,amount`, amounts in base units).
    Build(BuildArgs),
    /// Print the proof of one claim from a tree file (an OpenZeppelin `standard-v1` dump or
    /// a Uniswap `parseBalanceMap` JSON); the proof is checked against the file's root first.
    Proof(ProofArgs),
    /// Verify a proof against a root. Exit 0 when valid, 1 when not.
    Verify(VerifyArgs),
}

/// `recoup merkle build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Claims CSV: header `account,amount`; one row per account; amount in base units.
    #[arg(long)]
    pub claims: PathBuf,
    /// Tree format: `oz-standard`, `uniswap` or `layered-packed`.
    #[arg(long, default_value = "oz-standard", value_parser = parse_format)]
    pub format: TreeFormat,
    /// Leaf encoding for `oz-standard`, comma-separated: `address,uint256` (default) or
    /// `uint256,address,uint256` (index, account, amount).
    #[arg(long)]
    pub encoding: Option<String>,
    /// Keep the CSV's row order for values and leaves (default: canonical, sorted).
    #[arg(long)]
    pub no_sort_leaves: bool,
    /// Output file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// `recoup merkle proof`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(false).args(["account", "index"])))]
pub struct ProofArgs {
    /// Tree file: OZ `standard-v1` dump or Uniswap `parseBalanceMap` JSON.
    #[arg(long)]
    pub tree: PathBuf,
    /// The claimant.
    #[arg(long, value_parser = parse_address_arg)]
    pub account: Option<Address>,
    /// The value index (OZ dump) or claim index (Uniswap).
    #[arg(long)]
    pub index: Option<usize>,
}

/// `recoup merkle verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("leaf_or_values").required(true).multiple(false).args(["leaf", "values"])))]
pub struct VerifyArgs {
    /// The expected root.
    #[arg(long, value_parser = parse_b256)]
    pub root: B256,
    /// Proof hashes, comma-separated, leaf to root (empty for a one-leaf tree).
    #[arg(long, value_delimiter = ',', num_args = 0.., value_parser = parse_b256)]
    pub proof: Vec<B256>,
    /// The leaf hash itself.
    #[arg(long, value_parser = parse_b256)]
    pub leaf: Option<B256>,
    /// Leaf values for an OZ standard leaf, comma-separated (`0xabc…,1000`) or a JSON array.
    #[arg(long)]
    pub values: Option<String>,
    /// Leaf encoding of `--values`, comma-separated (default `address,uint256`).
    #[arg(long)]
    pub encoding: Option<String>,
}

fn parse_format(s: &str) -> Result<TreeFormat, String> {
    s.parse().map_err(|e: claims::ClaimsError| e.to_string())
}

fn parse_b256(s: &str) -> Result<B256, String> {
    claims::parse_hash(s).ok_or_else(|| format!("expected 0x followed by 64 hex digits, got {s:?}"))
}

/// Splits a comma-separated type or value list at top-level commas (tuples keep theirs),
/// trimmed; unbalanced brackets leave the text whole, for the type or value parser to reject.
fn split_types(s: &str) -> Vec<String> {
    crate::claims::abi::split_top_level(s)
        .unwrap_or_else(|| vec![s])
        .into_iter()
        .map(|p| p.trim().to_owned())
        .collect()
}

/// Runs `recoup merkle …`; returns the exit code.
///
/// # Errors
/// Bad input files or arguments (exit 2 from `main`).
pub async fn run(cmd: MerkleCommand, global: &GlobalArgs) -> anyhow::Result<u8> {
    match cmd {
        MerkleCommand::Build(a) => build(a, global),
        MerkleCommand::Proof(a) => proof(a, global),
        MerkleCommand::Verify(a) => verify(a, global),
    }
}

/// Reads `account,amount` rows, naming file, line, column and field on any error.
pub fn read_claims_csv(path: &Path) -> anyhow::Result<Vec<ClaimEntry>> {
    // Read whole, so that a row's line can be told from the bytes before it
    // ([`crate::ingest::files::record_line`]).
    let data =
        std::fs::read(path).with_context(|| format!("reading claims CSV {}", path.display()))?;
    // Fields are trimmed here, not by `csv`, whose field trimming allocates a record per row.
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_reader(&data[..]);
    let headers = rdr
        .headers()
        .with_context(|| format!("{}: reading the header", path.display()))?
        .clone();
    if headers.len() != 2 || &headers[0] != "account" || &headers[1] != "amount" {
        bail!(
            "{}: line 1: expected header `account,amount`, got `{}`",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        );
    }
    let mut out = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let more = rdr
            .read_record(&mut rec)
            .with_context(|| format!("{}: malformed CSV", path.display()))?;
        if !more {
            break;
        }
        let line = rec
            .position()
            .map_or(0, |p| crate::ingest::files::record_line(p, &data));
        let account = parse_address(rec[0].trim())
            .with_context(|| format!("{}: line {line}, column 1 (account)", path.display()))?;
        let amount: Amount = rec[1].trim().parse().with_context(|| {
            format!(
                "{}: line {line}, column 2 (amount, base units)",
                path.display()
            )
        })?;
        out.push(ClaimEntry { account, amount });
    }
    Ok(out)
}

/// Writes `bytes` to `out` through a temporary file in the same directory and a rename,
/// so a failure leaves no half-written file.
pub fn write_atomically(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(out)
        .with_context(|| format!("renaming the temporary file to {}", out.display()))?;
    Ok(())
}

fn spinner(global: &GlobalArgs, msg: &str) -> Option<indicatif::ProgressBar> {
    global.progress().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb.set_message(msg.to_owned());
        pb
    })
}

fn build(a: BuildArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let pb = spinner(global, "reading claims");
    let entries = read_claims_csv(&a.claims)?;
    if let Some(pb) = &pb {
        pb.set_message(format!("hashing {} leaves", entries.len()));
    }
    let spec = ClaimTreeSpec {
        format: a.format,
        leaf_encoding: a.encoding.as_deref().map(split_types),
        sort_leaves: !a.no_sort_leaves,
        asset: None,
        file: a.out.display().to_string(),
        order: crate::claims::EntryOrder::Input, // the CSV's own order
        hex: Default::default(),
    };
    let tree = build_tree(&spec, &entries)
        .with_context(|| format!("building the {} tree from {}", a.format, a.claims.display()))?;
    if let Some(pb) = &pb {
        pb.set_message(format!("writing {}", a.out.display()));
    }
    let mut bytes = Vec::new();
    tree.write_json(&mut bytes);
    write_atomically(&a.out, &bytes)?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "format": a.format.to_string(), "root": tree.root().to_string(), "leaves": tree.len(), "total": tree.total().to_string(), "file": a.out })
        );
    } else if !global.quiet {
        println!("root {}", tree.root());
        eprintln!(
            "{} leaves, total {} base units, {} written to {}",
            tree.len(),
            tree.total(),
            a.format,
            a.out.display()
        );
    }
    Ok(0)
}

fn proof(a: ProofArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.tree)
        .with_context(|| format!("reading {}", a.tree.display()))?;
    let head: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", a.tree.display()))?;
    let report = if head.get("format").is_some() {
        let t = StandardMerkleTree::load(&text)
            .with_context(|| format!("{}: loading the OpenZeppelin dump", a.tree.display()))?;
        let i = match (a.index, a.account) {
            (Some(i), _) if i < t.len() => i,
            (Some(i), _) => bail!(
                "{}: index {i} out of range ({} values)",
                a.tree.display(),
                t.len()
            ),
            (None, Some(acc)) => (0..t.len())
                .find(|&i| t.value(i).contains(&LeafValue::Address(acc)))
                .with_context(|| {
                    format!(
                        "{}: no value holds {}",
                        a.tree.display(),
                        format_address(&acc)
                    )
                })?,
            (None, None) => unreachable!("clap requires --account or --index"),
        };
        let value = head["values"][i]["value"].clone();
        serde_json::json!({ "format": "oz-standard", "root": t.root().to_string(), "index": i, "value": value, "leaf": t.leaf_hash(i).to_string(), "proof": t.proof(i).iter().map(ToString::to_string).collect::<Vec<_>>() })
    } else if head.get("merkleRoot").is_some() && head.get("claims").is_some() {
        uniswap_proof(&a, &head)?
    } else {
        bail!(
            "{}: neither an OpenZeppelin standard-v1 dump nor a Uniswap parseBalanceMap file",
            a.tree.display()
        );
    };
    if global.json {
        println!("{report}");
    } else {
        for (k, v) in report.as_object().expect("object") {
            match v {
                serde_json::Value::Array(xs) if k == "proof" => println!(
                    "{k} {}",
                    xs.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                serde_json::Value::String(s) => println!("{k} {s}"),
                other => println!("{k} {other}"),
            }
        }
    }
    Ok(0)
}

fn uniswap_proof(a: &ProofArgs, head: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let file = a.tree.display();
    let root = head["merkleRoot"]
        .as_str()
        .and_then(claims::parse_hash)
        .with_context(|| format!("{file}: merkleRoot is not a 32-byte hex"))?;
    let claims = head["claims"]
        .as_object()
        .with_context(|| format!("{file}: claims is not an object"))?;
    let (key, c) = claims
        .iter()
        .find(|(k, c)| match (a.account, a.index) {
            (Some(acc), _) => parse_address(k).ok() == Some(acc),
            (None, Some(i)) => c["index"].as_u64() == Some(i as u64),
            _ => false,
        })
        .with_context(|| format!("{file}: no such claim"))?;
    let account = parse_address(key).with_context(|| format!("{file}: claim key {key:?}"))?;
    let index = c["index"]
        .as_u64()
        .with_context(|| format!("{file}: claims[{key}].index is not an integer"))?;
    let amount_hex = c["amount"]
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .with_context(|| format!("{file}: claims[{key}].amount is not 0x hex"))?;
    let amount = Amount::new(
        alloy_primitives::U256::from_str_radix(amount_hex, 16)
            .with_context(|| format!("{file}: claims[{key}].amount"))?,
    );
    let proof: Vec<B256> = c["proof"]
        .as_array()
        .with_context(|| format!("{file}: claims[{key}].proof is not an array"))?
        .iter()
        .map(|x| x.as_str().and_then(claims::parse_hash))
        .collect::<Option<_>>()
        .with_context(|| format!("{file}: claims[{key}].proof holds a non-hash"))?;
    if !claims::verify_uniswap(root, index, &account, amount, &proof) {
        bail!("{file}: the proof stored for {key} does not reach merkleRoot {root}: the file is corrupt");
    }
    Ok(
        serde_json::json!({ "format": "uniswap", "root": root.to_string(), "index": index, "account": format_address(&account), "amount": amount.to_string(), "leaf": claims::uniswap_leaf(index, &account, amount).to_string(), "proof": proof.iter().map(ToString::to_string).collect::<Vec<_>>() }),
    )
}

fn verify(a: VerifyArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let leaf = match (&a.leaf, &a.values) {
        (Some(l), _) => *l,
        (None, Some(v)) => {
            let names = a
                .encoding
                .as_deref()
                .map(split_types)
                .unwrap_or_else(|| vec!["address".into(), "uint256".into()]);
            let enc = LeafEncoding::new(&names).context("--encoding")?;
            let values: Vec<LeafValue> = if v.trim_start().starts_with('[') {
                let row: Vec<serde_json::Value> =
                    serde_json::from_str(v).context("--values: not a JSON array")?;
                enc.parse_json_row(&row).context("--values")?
            } else {
                let parts = split_types(v);
                if parts.len() != enc.len() {
                    bail!(
                        "--values: expected {} comma-separated values for [{}], got {}",
                        enc.len(),
                        names.join(","),
                        parts.len()
                    );
                }
                enc.types()
                    .iter()
                    .zip(&parts)
                    .map(|(t, s): (&SolType, &String)| LeafValue::from_text(t, s))
                    .collect::<Result<_, _>>()
                    .context("--values")?
            };
            claims::standard_leaf_hash(enc.types(), &values)
        }
        (None, None) => unreachable!("clap requires --leaf or --values"),
    };
    let computed = claims::process_proof(leaf, &a.proof);
    let valid = computed == a.root;
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "valid": valid, "root": a.root.to_string(), "leaf": leaf.to_string(), "computed_root": computed.to_string() })
        );
    } else if !global.quiet {
        if valid {
            println!("valid: leaf {leaf} is in the tree with root {}", a.root);
        } else {
            println!(
                "INVALID: the proof from leaf {leaf} leads to {computed}, not {}",
                a.root
            );
        }
    }
    Ok(if valid { 0 } else { EXIT_CHECK_FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_csv_fields_and_header_are_read_without_surrounding_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, padded) = (dir.path().join("plain.csv"), dir.path().join("padded.csv"));
        let a = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let b = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
        std::fs::write(&plain, format!("account,amount\n{a},100\n{b},7\n")).unwrap();
        std::fs::write(
            &padded,
            format!(" account ,\tamount\n  {a} , 100\n{b},\t7 \n"),
        )
        .unwrap();
        let want = read_claims_csv(&plain).unwrap();
        assert_eq!(want.len(), 2);
        assert_eq!(want[1].amount, Amount::from(7u64));
        assert_eq!(read_claims_csv(&padded).unwrap(), want);
    }

    #[test]
    fn a_bad_row_after_blank_lines_is_named_by_its_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("claims.csv");
        let a = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        std::fs::write(&p, format!("account,amount\n{a},100\n\n\n{a},-7\n")).unwrap();
        let e = format!("{:#}", read_claims_csv(&p).unwrap_err());
        assert!(e.contains(": line 5, column 2 (amount"), "{e}");
    }
}
