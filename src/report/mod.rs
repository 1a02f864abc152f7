//! Reports: the summary JSON, the claims and per-user CSVs, and the Markdown claim report
//! a treasury team publishes (template `reports/claim-report.md.j2`).
//!
//! Rendering only: every function returns bytes; the CLI writes them atomically.

use crate::manifest::Manifest;
use crate::pipeline::RunOutput;
use crate::policy::{Rounding, Scope};
use crate::primitives::{format_address, format_units, value_of, Amount, Decimal};
use serde::Serialize;
use std::collections::BTreeMap;

/// The Markdown template, embedded at build time.
pub const CLAIM_REPORT_TEMPLATE: &str = include_str!("../../reports/claim-report.md.j2");

/// A report could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The template failed to render.
    #[error("claim report template: {0}")]
    Template(#[from] minijinja::Error),
    /// CSV writing failed.
    #[error("CSV output: {0}")]
    Csv(#[from] csv::Error),
    /// JSON writing failed.
    #[error("JSON output: {0}")]
    Json(#[from] serde_json::Error),
    /// A report total does not fit `Decimal`.
    #[error("{0} overflows Decimal (max about 7.9e28)")]
    ValueOverflow(&'static str),
    /// A payout could not be valued.
    #[error(transparent)]
    Value(#[from] crate::primitives::ValueError),
}

/// One tree in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct TreeSummary {
    /// File name in the output directory.
    pub file: String,
    /// Format.
    pub format: String,
    /// Payout asset.
    pub asset: String,
    /// 0x-prefixed root.
    pub root: String,
    /// Leaves.
    pub leaves: usize,
    /// Σ amounts, base units.
    pub total: Amount,
}

/// The machine-readable summary of a run (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary<'a> {
    /// recoup version.
    pub recoup_version: &'static str,
    /// Run id.
    pub run_id: String,
    /// Incident id.
    pub incident: &'a str,
    /// Chain id.
    pub chain_id: u64,
    /// Snapshot block.
    pub snapshot_block: u64,
    /// Numeraire.
    pub numeraire: &'a str,
    /// Users with a loss.
    pub users: usize,
    /// Loss rows.
    pub loss_rows: usize,
    /// Σ loss value.
    pub total_loss_value: Decimal,
    /// Σ value not made good.
    pub total_residual_value: Decimal,
    /// Loss-stage totals (base units).
    pub loss: &'a crate::loss::LossStats,
    /// Sources after the waterfall.
    pub sources: &'a [crate::policy::SourceResult],
    /// Totals per (asset, pool, class).
    pub groups: &'a [crate::policy::GroupTotals],
    /// Totals per tier.
    pub tiers: &'a [crate::policy::TierTotals],
    /// Σ payouts per asset.
    pub payouts: &'a [crate::policy::AssetAmount],
    /// Conservation checks that passed.
    pub checks: &'a [crate::policy::Check],
    /// Claim trees.
    pub trees: Vec<TreeSummary>,
    /// State-diff token slots that matched no candidate holder.
    pub unmatched_slots: &'a [crate::ingest::trace::UnmatchedSlots],
}

/// Σ of numeraire values, checked (`Decimal`'s `Sum` panics on overflow).
fn checked_sum(
    values: impl IntoIterator<Item = Decimal>,
    what: &'static str,
) -> Result<Decimal, ReportError> {
    values
        .into_iter()
        .try_fold(Decimal::ZERO, |acc, v| acc.checked_add(v))
        .ok_or(ReportError::ValueOverflow(what))
}

/// Builds the summary.
///
/// # Errors
/// [`ReportError::ValueOverflow`] when a total value exceeds `Decimal`'s range (~7.9e28).
pub fn summary<'a>(m: &'a Manifest, out: &'a RunOutput) -> Result<Summary<'a>, ReportError> {
    let total_loss_value = checked_sum(
        out.policy.users().map(|u| u.loss_value()),
        "total loss value",
    )?;
    let total_residual_value = checked_sum(
        out.policy.users().map(|u| u.residual_value()),
        "total residual value",
    )?;
    Ok(Summary {
        recoup_version: env!("CARGO_PKG_VERSION"),
        run_id: out.run_id.to_string(),
        incident: &m.incident.id,
        chain_id: m.incident.chain_id,
        snapshot_block: m.incident.snapshot_block,
        numeraire: &m.incident.numeraire,
        users: out.policy.user_count(),
        loss_rows: out.loss_rows(),
        total_loss_value,
        total_residual_value,
        loss: &out.loss_stats,
        sources: &out.policy.sources,
        groups: &out.policy.groups,
        tiers: &out.policy.tiers,
        payouts: &out.policy.payouts,
        checks: &out.policy.checks,
        unmatched_slots: &out.unmatched_slots,
        trees: out
            .trees
            .iter()
            .map(|t| TreeSummary {
                file: t.spec.file.clone(),
                format: t.tree.format().to_string(),
                asset: t.asset.clone(),
                root: t.tree.root().to_string(),
                leaves: t.tree.len(),
                total: t.tree.total(),
            })
            .collect(),
    })
}

/// `summary.json`: pretty-printed, keys in a fixed order, newline-terminated.
///
/// # Errors
/// [`ReportError::Json`].
pub fn summary_json(s: &Summary<'_>) -> Result<Vec<u8>, ReportError> {
    let mut v = serde_json::to_vec_pretty(s)?;
    v.push(b'\n');
    Ok(v)
}

/// Each user with its account's text from `texts` ([`RunOutput::account_texts`] of the same run).
fn with_texts<'a>(
    out: &'a RunOutput,
    texts: &'a [[u8; 42]],
) -> impl Iterator<Item = (crate::policy::UserRef<'a>, &'a str)> {
    assert_eq!(
        texts.len(),
        out.policy.user_count(),
        "account texts of another run"
    );
    out.policy
        .users()
        .zip(texts.iter().map(|t| std::str::from_utf8(t).expect("ASCII")))
}

/// `claims.csv`: `account,asset,amount` — one row per user and payout asset, amount in
/// base units, sorted by account then asset (the input of `recoup merkle build`),
/// written to `w` as it goes; accounts as `texts` ([`RunOutput::account_texts`]) gives them.
///
/// # Errors
/// [`ReportError::Csv`], including the writer's errors.
///
/// # Panics
/// When `texts` does not have one entry per user of `out` (texts of another run).
pub fn claims_csv(
    out: &RunOutput,
    texts: &[[u8; 42]],
    w: &mut dyn std::io::Write,
) -> Result<(), ReportError> {
    let mut w = csv_writer(out, w);
    w.write_record(["account", "asset", "amount"])?;
    for (u, account) in with_texts(out, texts) {
        for p in u.payouts() {
            let amount = p.amount.digits();
            w.write_record([account.as_bytes(), p.asset.as_bytes(), amount.as_bytes()])?;
        }
    }
    w.flush().map_err(|e| ReportError::Csv(e.into()))
}

/// A CSV writer for rows of `out`, quoting as the `csv` crate does by default (a field with
/// a comma, quote or line break, and only such a field). The rows' only free text is the
/// result's names ([`PolicyResult::names`](crate::policy::PolicyResult::names)): accounts,
/// statuses and numbers never need quotes. When no name needs them either, no field does,
/// and the writer is told not to look (the same bytes; `csv` otherwise checks every byte
/// of every field, ≈ 0.4 s of a million-claimant run's `user_results.csv`).
fn csv_writer<'w>(
    out: &RunOutput,
    w: &'w mut dyn std::io::Write,
) -> csv::Writer<&'w mut dyn std::io::Write> {
    csv::WriterBuilder::new()
        .quote_style(quote_style(out.policy.names()))
        .from_writer(w)
}

/// `Necessary` when one of `names` has a byte the default writer quotes a field for (comma,
/// quote, CR, LF), else `Never`.
fn quote_style<'a>(mut names: impl Iterator<Item = &'a str>) -> csv::QuoteStyle {
    let quoted = |n: &str| n.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if names.any(quoted) {
        csv::QuoteStyle::Necessary
    } else {
        csv::QuoteStyle::Never
    }
}

/// `user_results.csv`: one row per loss row with its policy outcome, base units:
/// `account,asset,pool,class,tier,status,loss,value,claim,covered,withheld,haircut,excess,sources`
/// where `sources` is `id:amount` pairs joined by `;`; written to `w` as it goes; accounts
/// as `texts` ([`RunOutput::account_texts`]) gives them.
///
/// # Errors
/// [`ReportError::Csv`], including the writer's errors.
///
/// # Panics
/// When `texts` does not have one entry per user of `out` (texts of another run).
pub fn user_results_csv(
    out: &RunOutput,
    texts: &[[u8; 42]],
    w: &mut dyn std::io::Write,
) -> Result<(), ReportError> {
    let mut w = csv_writer(out, w);
    w.write_record([
        "account", "asset", "pool", "class", "tier", "status", "loss", "value", "claim", "covered",
        "withheld", "haircut", "excess", "sources",
    ])?;
    // The row's numbers and its sources (`id:amount` pairs joined by `;`) are made into one
    // reused buffer, each field a range of it.
    let mut text: Vec<u8> = Vec::new();
    for (u, account) in with_texts(out, texts) {
        let tier = u.tier().unwrap_or("");
        for r in u.rows() {
            text.clear();
            let mut ends = [0usize; 8];
            let fields = [
                r.loss(),
                r.claim(),
                r.covered(),
                r.withheld(),
                r.haircut(),
                r.excess(),
            ];
            for (end, a) in ends.iter_mut().zip(fields) {
                a.push_digits(&mut text);
                *end = text.len();
            }
            text.extend_from_slice(crate::primitives::DecimalText(r.value()).text().as_bytes());
            ends[6] = text.len();
            for (i, s) in r.sources().enumerate() {
                if i > 0 {
                    text.push(b';');
                }
                text.extend_from_slice(s.source.as_bytes());
                text.push(b':');
                s.amount.push_digits(&mut text);
            }
            ends[7] = text.len();
            let field = |k: usize| &text[if k == 0 { 0 } else { ends[k - 1] }..ends[k]];
            w.write_record([
                account.as_bytes(),
                r.asset().as_bytes(),
                r.pool().unwrap_or("").as_bytes(),
                r.class().unwrap_or("").as_bytes(),
                tier.as_bytes(),
                r.status().as_str().as_bytes(),
                field(0),
                field(6),
                field(1),
                field(2),
                field(3),
                field(4),
                field(5),
                field(7),
            ])?;
        }
    }
    w.flush().map_err(|e| ReportError::Csv(e.into()))
}

/// Formats base units of `asset` as whole tokens with the symbol, with thousands separators.
/// `1234567` → `1,234,567` (digits only).
fn group_thousands(int: &str) -> String {
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    grouped
}

/// Base units of `asset` as whole tokens with the symbol, thousands grouped, at most 6
/// fractional digits.
///
/// # Rounding
/// Truncated (toward zero) past 6 decimals; the report says so, and the exact base units
/// are in `claims.csv`, `user_results.csv` and `summary.json`.
fn tokens(m: &Manifest, asset: &str, a: Amount) -> String {
    let d = m.asset(asset).map_or(0, |x| x.decimals);
    let s = format_units(a, d);
    let (int, frac) = s.split_once('.').unwrap_or((s.as_str(), ""));
    let frac: String = frac.chars().take(6).collect();
    let grouped = group_thousands(int);
    if frac.is_empty() {
        format!("{grouped} {asset}")
    } else {
        format!("{grouped}.{frac} {asset}")
    }
}

/// A numeraire value rounded half-even to cents, thousands grouped.
fn money(d: Decimal) -> String {
    let s = format!("{:.2}", d.round_dp(2));
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    format!("{sign}{}.{frac}", group_thousands(int))
}

/// `part / whole` as a percentage rounded half-even to 2 decimals; `—` when `whole` is 0.
fn pct(part: Decimal, whole: Decimal) -> String {
    match part
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|x| x.checked_div(whole))
    {
        Some(p) => p.round_dp(2).to_string(),
        _ => "—".to_owned(),
    }
}

fn bps_pct(bps: u32) -> String {
    (Decimal::from(bps) / Decimal::from(100))
        .normalize()
        .to_string()
        + "%"
}

/// Renders the Markdown claim report from the run and its [`summary`] (built once by the
/// caller, shared with `summary.json`).
///
/// # Errors
/// [`ReportError::Template`].
pub fn markdown(m: &Manifest, out: &RunOutput, s: &Summary<'_>) -> Result<String, ReportError> {
    use minijinja::context;
    // Payout assets are manifest assets (the policy checks it), so each has a price.
    let mut paid_values = Vec::with_capacity(out.policy.payouts.len());
    for p in &out.policy.payouts {
        if let Some(a) = m.asset(&p.asset) {
            paid_values.push(value_of(p.amount, &a.asset(), a.price)?);
        }
    }
    let paid_value = checked_sum(paid_values, "total paid value")?;

    let assets: Vec<_> = m
        .assets
        .iter()
        .map(|a| {
            context! {
                symbol => a.symbol, address => a.address.map(|x| format!("`{}`", format_address(&x))).unwrap_or_else(|| "native".into()),
                decimals => a.decimals, price => a.price.to_string(), price_source => a.price_source.clone().unwrap_or_default(),
                price_block => a.price_block.map(|b| b.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    let get = |map: &BTreeMap<String, Amount>, k: &str| map.get(k).copied().unwrap_or_default();
    let losses: Vec<_> = m
        .assets
        .iter()
        .filter(|a| s.loss.gross.contains_key(&a.symbol) || s.loss.gains.contains_key(&a.symbol))
        .map(|a| {
            let k = a.symbol.as_str();
            context! {
                asset => k, gross => tokens(m, k, get(&s.loss.gross, k)), share_price => tokens(m, k, get(&s.loss.share_price, k)),
                netted => tokens(m, k, get(&s.loss.netted, k)), net => tokens(m, k, get(&s.loss.net, k)), gains => tokens(m, k, get(&s.loss.gains, k)),
            }
        })
        .collect();
    let wrappers: Vec<_> = s
        .loss
        .looked_through
        .iter()
        .map(|(name, per)| context! { name => name, amounts => per.iter().map(|(a, v)| tokens(m, a, *v)).collect::<Vec<_>>().join(", ") })
        .collect();
    let exclusions: Vec<_> = m.exclusions.iter().map(|e| context! { account => format_address(&e.account), reason => e.reason, mode => format!("{:?}", e.mode).to_lowercase() }).collect();
    let sources: Vec<_> = out
        .policy
        .sources
        .iter()
        .map(|x| {
            let a = x.asset.as_str();
            context! {
                id => x.id, kind => format!("{:?}", x.kind).to_lowercase(), asset => a, funds => tokens(m, a, x.funds), bounty => tokens(m, a, x.bounty),
                paid => tokens(m, a, x.paid), withheld => tokens(m, a, x.withheld), left_over => tokens(m, a, x.left_over),
            }
        })
        .collect();
    let p = &m.policy;
    let scope = match p.scope {
        Scope::Global => "global (socialised across every asset, pro rata to value)",
        Scope::PerAsset => "per asset (in kind)",
        Scope::PerPool => "per pool (non-socialised)",
        Scope::PerClass => "per class",
    };
    let rounding = match p.rounding {
        Rounding::Floor => "floor (dust stays with the source)",
        Rounding::LargestRemainder => "largest remainder (dust handed out one unit each)",
    };
    let dust = p.dust.as_ref().map(|d| {
        d.min
            .iter()
            .map(|(a, v)| format!("losses under {}", tokens(m, a, *v)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let dust_mode = p
        .dust
        .as_ref()
        .map(|d| format!("{:?}", d.mode).to_lowercase());
    let tiers_cfg: Vec<_> = p.tiers.iter().map(|t| context! { name => t.name, min_value => money(t.min_value), max_value => money(t.max_value), pay => bps_pct(t.pay_bps.0) }).collect();
    let tiers: Vec<_> = out
        .policy
        .tiers
        .iter()
        .map(|t| {
            context! {
                name => t.tier.clone().unwrap_or_else(|| "pro rata (no tier)".into()), users => t.users, loss_value => money(t.loss_value),
                residual_value => money(t.residual_value), recovery_pct => pct(t.loss_value - t.residual_value, t.loss_value),
            }
        })
        .collect();
    let groups: Vec<_> = out
        .policy
        .groups
        .iter()
        .map(|g| {
            let a = g.asset.as_str();
            context! {
                asset => a, pool => g.pool.clone().unwrap_or_else(|| "—".into()), class => g.class.clone().unwrap_or_else(|| "—".into()), rows => g.rows,
                loss => tokens(m, a, g.loss), claim => tokens(m, a, g.claim), covered => tokens(m, a, g.covered), withheld => tokens(m, a, g.withheld), haircut => tokens(m, a, g.haircut),
            }
        })
        .collect();
    let payouts: Vec<_> = out
        .policy
        .payouts
        .iter()
        .map(|x| {
            let claimants = out.policy.users().filter(|u| u.payout(&x.asset).is_some()).count();
            context! { asset => x.asset, amount => tokens(m, &x.asset, x.amount), claimants => claimants }
        })
        .collect();
    // The ten largest losses, ties by account: a total order, so selecting the first ten
    // and sorting only them gives what a full sort would.
    let by_loss = |a: &crate::policy::UserRef<'_>, b: &crate::policy::UserRef<'_>| {
        b.loss_value()
            .cmp(&a.loss_value())
            .then(a.account().cmp(&b.account()))
    };
    let mut top: Vec<crate::policy::UserRef<'_>> = out.policy.users().collect();
    if top.len() > 10 {
        top.select_nth_unstable_by(9, by_loss);
        top.truncate(10);
    }
    top.sort_by(by_loss);
    let top: Vec<_> = top
        .into_iter()
        .take(10)
        .map(|u| {
            context! {
                account => format_address(&u.account()), loss_value => money(u.loss_value()), residual_value => money(u.residual_value()),
                payouts => if u.payouts().len() == 0 { "—".to_owned() } else { u.payouts().map(|q| tokens(m, q.asset, q.amount)).collect::<Vec<_>>().join(" + ") },
            }
        })
        .collect();
    let trees: Vec<_> = s.trees.iter().map(|t| context! { file => t.file, format => t.format, asset => t.asset, leaves => t.leaves, total => t.total.to_string(), root => t.root }).collect();

    let mut env = minijinja::Environment::new();
    env.add_template("claim-report", CLAIM_REPORT_TEMPLATE)?;
    let ctx = context! {
        title => m.incident.name.clone().unwrap_or_else(|| m.incident.id.clone()),
        description => m.incident.description.clone(),
        incident => context! { id => m.incident.id, chain_id => m.incident.chain_id, snapshot_block => m.incident.snapshot_block, post_block => m.incident.post_block,
            pool_blocks => m.incident.pool_snapshot_blocks.iter().map(|(p, b)| format!("{p}: {b}")).collect::<Vec<_>>().join(", ") },
        numeraire => m.incident.numeraire, users => s.users, loss_rows => s.loss_rows,
        total_loss_value => money(s.total_loss_value), total_paid_value => money(paid_value), total_residual_value => money(s.total_residual_value),
        recovery_pct => pct(paid_value, s.total_loss_value), run_id => s.run_id, version => s.recoup_version,
        assets => assets, losses => losses, wrappers => wrappers, exclusions => exclusions, sources => sources,
        policy => context! { scope => scope, rounding => rounding, cap => bps_pct(p.cap_bps.0), dust => dust, dust_mode => dust_mode, tiers => tiers_cfg },
        unmatched => out.unmatched_slots.iter().map(|u| context! { asset => u.asset, count => u.count, value => tokens(m, &u.asset, u.value_moved) }).collect::<Vec<_>>(),
        tiers => tiers, groups => groups, checks => out.policy.checks.len(), payouts => payouts, top => top, trees => trees,
    };
    Ok(env.get_template("claim-report")?.render(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn money_groups_thousands_and_rounds_half_even_to_cents() {
        assert_eq!(
            money(Decimal::from_str("-1234567.005").unwrap()),
            "-1,234,567.00"
        );
        assert_eq!(money(Decimal::from_str("999.995").unwrap()), "1,000.00");
        assert_eq!(money(Decimal::ZERO), "0.00");
        assert_eq!(group_thousands("123"), "123");
        assert_eq!(group_thousands("1234"), "1,234");
    }

    #[test]
    fn percentages_of_zero_are_a_dash_not_a_panic() {
        assert_eq!(pct(Decimal::ONE, Decimal::ZERO), "—");
        assert_eq!(pct(Decimal::ONE, Decimal::from(3)), "33.33");
        assert_eq!(
            pct(Decimal::MAX, Decimal::ONE),
            "—",
            "overflow is reported as a dash"
        );
    }

    /// Names with a byte the default writer quotes for choose `Necessary`; others `Never`,
    /// which for such fields writes the very bytes `Necessary` writes (every ASCII
    /// character, and a non-ASCII one, in a field of its own and among others).
    #[test]
    fn quoting_is_left_out_only_when_no_field_could_need_it() {
        use super::quote_style;
        use csv::QuoteStyle::{Necessary, Never};
        let style = |names: &[&str]| quote_style(names.iter().copied());
        assert!(matches!(
            style(&["DAI", "pool a", "treasury", "é;:x"]),
            Never
        ));
        for bad in ["a,b", "x\"y", "l\nm", "cr\r"] {
            assert!(matches!(style(&["DAI", bad]), Necessary), "{bad:?}");
        }
        let write = |style, fields: &[&str]| {
            let mut w = csv::WriterBuilder::new()
                .quote_style(style)
                .flexible(true)
                .from_writer(Vec::new());
            w.write_record(fields).unwrap();
            w.write_record(["", "0x00Ab", "123", ""]).unwrap();
            w.into_inner().unwrap()
        };
        let safe: Vec<String> = (0u8..128)
            .filter(|b| !matches!(b, b',' | b'"' | b'\n' | b'\r'))
            .map(|b| char::from(b).to_string())
            .chain(["é".to_owned(), " lead".to_owned(), "trail ".to_owned()])
            .collect();
        for f in &safe {
            let one = [f.as_str(), "x"];
            assert_eq!(write(Never, &one), write(Necessary, &one), "{f:?}");
        }
        let all: Vec<&str> = safe.iter().map(String::as_str).collect();
        assert_eq!(write(Never, &all), write(Necessary, &all));
    }
}
