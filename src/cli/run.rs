//! `recoup run`: the whole pipeline on an incident manifest.
//!
//! Order of effects, so that an error leaves nothing behind: everything is computed in
//! memory; the rows are inserted in one database transaction, begun on a thread of its own
//! as soon as the policy's result has passed its checks (the per-user rows with their
//! claims while the claim trees are built, the roots once they are), while the files are
//! rendered, on every thread, into a temporary directory beside the output directory; the
//! transaction commits only once every file is staged; only then are the files renamed into
//! place. A stage that fails after the rows began (a claim tree, a file) rolls the
//! transaction back.

use super::direct::DirectWriter;
use super::{GlobalArgs, EXIT_CHECK_FAILED};
use crate::claims::ClaimTreeSpec;
use crate::manifest::Manifest;
use crate::pipeline::{self, PipelineError, RunOutput, TreeLeaves};
use crate::policy::PolicyResult;
use crate::primitives::B256;
use crate::report;
use crate::store::{IncidentRecord, RootRecord, RunTail, Saved, Store, UserClaim, UserRecord};
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Arguments of `recoup run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The incident manifest (TOML).
    pub manifest: PathBuf,
    /// Output directory (default: the manifest's `[outputs] dir`, relative to the working directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not store the run in the database.
    #[arg(long)]
    pub no_store: bool,
}

struct Steps {
    bar: Option<ProgressBar>,
}

impl Steps {
    fn new(show: bool) -> Self {
        let bar = show.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .expect("static template"),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self { bar }
    }
    fn step(&self, msg: &'static str) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The files of one run, in a fixed order.
fn output_names(out: &RunOutput) -> Vec<String> {
    let mut names: Vec<String> = [
        "summary.json",
        "claims.csv",
        "user_results.csv",
        "report.md",
    ]
    .map(String::from)
    .to_vec();
    names.extend(out.trees.iter().map(|t| t.spec.file.clone()));
    names
}

/// The run's summary and its `summary.json` text.
type RunRecord<'a> = (report::Summary<'a>, Vec<u8>);

/// Renders the file called `name` (one of [`output_names`]) into `w`, as it goes. `record`
/// gives the run's summary, made when first asked for (see [`produce`]).
fn render_one<'a>(
    m: &Manifest,
    out: &RunOutput,
    record: &dyn Fn() -> anyhow::Result<&'a RunRecord<'a>>,
    accounts: &[[u8; 42]],
    name: &str,
    w: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match name {
        "summary.json" => w.write_all(&record()?.1)?,
        "claims.csv" => report::claims_csv(out, accounts, w)?,
        "user_results.csv" => report::user_results_csv(out, accounts, w)?,
        "report.md" => w.write_all(report::markdown(m, out, &record()?.0)?.as_bytes())?,
        tree => {
            let t = out
                .trees
                .iter()
                .find(|t| t.spec.file == tree)
                .context("unknown output")?;
            t.tree.write_json_to(w)?;
        }
    }
    Ok(())
}

/// The per-asset totals of a stored per-user row ([`UserTotals::json`]), made into vectors
/// reused from user to user (a million users' maps were three allocations each).
#[derive(Default)]
struct UserTotals<'a> {
    losses: Vec<(&'a str, crate::primitives::Amount)>,
    haircuts: Vec<(&'a str, crate::primitives::Amount)>,
    payouts: Vec<(&'a str, crate::primitives::Amount)>,
}

impl<'a> UserTotals<'a> {
    /// `u`'s row as the compact JSON text stored in `user_results.result_json`:
    ///
    /// ```text
    /// {"tier":null,"loss_value":"342876.63","residual_value":"42169.52",
    ///  "losses":{"DAI":"78833291803593760512","USDC":"263346493952"},
    ///  "haircuts":{"DAI":"46349085803593760512","USDC":"1871044737"},
    ///  "payouts":{"USDC":"289719027076"}}
    /// ```
    ///
    /// (on one line): the user's tier (a JSON string, or `null`), loss value and residual
    /// value (numeraire, [`Decimal`](crate::primitives::Decimal)'s text) and, per asset
    /// symbol in symbol order, the loss and haircut summed over the user's rows and the
    /// payout summed over its payouts, base-unit digits. Written directly rather than through
    /// serde's serializer, which was ≈ 1 CPU-s of a million-claimant run (`perf`); the
    /// tests hold it byte for byte to `serde_json`'s text of the same object. Appended to
    /// `json`.
    fn json_into(
        &mut self,
        u: crate::policy::UserRef<'a>,
        json: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        use crate::primitives::{Amount, DecimalText};
        let total = |list: &mut Vec<(&'a str, Amount)>, asset: &'a str, a: Amount| {
            match list.binary_search_by(|(k, _)| (*k).cmp(asset)) {
                Ok(i) => list[i].1 = list[i].1.checked_add(a)?,
                Err(i) => list.insert(i, (asset, a)),
            }
            Ok::<(), crate::primitives::AmountError>(())
        };
        self.losses.clear();
        self.haircuts.clear();
        for r in u.rows() {
            total(&mut self.losses, r.asset(), r.loss())
                .and_then(|()| total(&mut self.haircuts, r.asset(), r.haircut()))
                .with_context(|| format!("totals of {}", u.account()))?;
        }
        self.payouts.clear();
        for p in u.payouts() {
            total(&mut self.payouts, p.asset, p.amount)
                .with_context(|| format!("totals of {}", u.account()))?;
        }
        // A JSON object of `list`'s amounts keyed by symbol. Names (symbols, tiers) come from
        // the manifest and are escaped as JSON strings; digits and a decimal's text need no
        // escaping.
        fn by_asset(json: &mut Vec<u8>, list: &[(&str, Amount)]) -> serde_json::Result<()> {
            json.push(b'{');
            for (i, (asset, amount)) in list.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                serde_json::to_writer(&mut *json, asset)?;
                json.extend_from_slice(b":\"");
                amount.push_digits(json);
                json.push(b'"');
            }
            json.push(b'}');
            Ok(())
        }
        json.extend_from_slice(b"{\"tier\":");
        match u.tier() {
            Some(tier) => serde_json::to_writer(&mut *json, tier)?,
            None => json.extend_from_slice(b"null"),
        }
        json.extend_from_slice(b",\"loss_value\":\"");
        json.extend_from_slice(DecimalText(u.loss_value()).text().as_str().as_bytes());
        json.extend_from_slice(b"\",\"residual_value\":\"");
        json.extend_from_slice(DecimalText(u.residual_value()).text().as_str().as_bytes());
        json.extend_from_slice(b"\",\"losses\":");
        by_asset(json, &self.losses)?;
        json.extend_from_slice(b",\"haircuts\":");
        by_asset(json, &self.haircuts)?;
        json.extend_from_slice(b",\"payouts\":");
        by_asset(json, &self.payouts)?;
        json.push(b'}');
        Ok(())
    }
}

/// The incident a stored run belongs to.
fn incident_record(m: &Manifest) -> IncidentRecord {
    IncidentRecord {
        id: m.incident.id.clone(),
        name: m.incident.name.clone(),
        chain_id: m.incident.chain_id,
        snapshot_block: m.incident.snapshot_block,
    }
}

/// The roots to store, as the summary states them, each naming the tree whose claims are
/// its leaves when that is another's ([`shared_leaves`] of `out`'s trees).
fn root_records(summary: &report::Summary<'_>, out: &RunOutput) -> Vec<RootRecord> {
    let shared = shared_leaves(out.trees.iter().map(|t| &t.spec), &out.leaves);
    summary
        .trees
        .iter()
        .map(|t| RootRecord {
            tree: t.file.clone(),
            format: t.format.clone(),
            asset: t.asset.clone(),
            root: t.root.clone(),
            leaves: t.leaves as u64,
            total: t.total,
            leaves_of: shared.get(t.file.as_str()).map(|&o| o.to_owned()),
        })
        .collect()
}

/// Each tree of `specs` (with its `leaves`, in the same order) whose leaves are exactly an
/// earlier tree's, in the order of their file names (the same payout asset, and the same
/// users at the same leaf indices, so the same accounts and amounts: one asset published in
/// two formats), mapped to the first such tree. The store keeps those leaves once
/// ([`RootRecord::leaves_of`]; BENCHMARKS.md, "Session 14"). Not a merkle-distributor with
/// sorted leaves beside an OpenZeppelin tree of the same claims, as in the bundled scenario:
/// it numbers its claims by EIP-55 text, the other by account ("Session 19").
fn shared_leaves<'a>(
    specs: impl IntoIterator<Item = &'a ClaimTreeSpec>,
    leaves: &[TreeLeaves],
) -> std::collections::BTreeMap<&'a str, &'a str> {
    let mut trees: Vec<(&ClaimTreeSpec, &TreeLeaves)> = specs.into_iter().zip(leaves).collect();
    trees.sort_by(|a, b| a.0.file.cmp(&b.0.file));
    let mut owners: Vec<(&ClaimTreeSpec, &TreeLeaves)> = Vec::new();
    let mut shared = std::collections::BTreeMap::new();
    for (spec, l) in trees {
        match owners
            .iter()
            .find(|(o, ol)| o.asset == spec.asset && *ol == l)
        {
            Some((o, _)) => {
                shared.insert(spec.file.as_str(), o.file.as_str());
            }
            None => owners.push((spec, l)),
        }
    }
    shared
}

/// A tree whose claims are stored with its users' rows: one that owns its leaves (see
/// [`shared_leaves`]).
struct ClaimedTree {
    /// The tree's name (its file), shared by its users' claims.
    tree: Arc<str>,
    /// Its payout asset: a user's claim is the user's payout of it.
    asset: String,
    /// Its index in the manifest's trees (and the run's [`TreeLeaves`]).
    k: usize,
}

/// The trees of `specs` (manifest order, `leaves` alike) whose claims are stored.
fn claimed_trees(specs: &[ClaimTreeSpec], leaves: &[TreeLeaves]) -> Vec<ClaimedTree> {
    let shared = shared_leaves(specs, leaves);
    specs
        .iter()
        .enumerate()
        .filter(|(_, s)| !shared.contains_key(s.file.as_str()))
        .map(|(k, s)| ClaimedTree {
            tree: Arc::from(s.file.as_str()),
            asset: s.asset.clone().unwrap_or_default(),
            k,
        })
        .collect()
}

/// A batch of per-user rows as the thread that makes them writes them: every row's texts
/// in one buffer and its claims in one vector, a few allocations a batch instead of four
/// a row. Rows made one `String` at a time on that thread were freed on the store's
/// thread, and glibc's malloc takes the lock of a block's arena to free it there: the two
/// threads spent a million-claimant run's store taking turns at the making thread's arena
/// lock (≈ 260k `futex` calls a run, 5.5k now; BENCHMARKS.md, "Session 20"). The rows'
/// `String`s are now made from the batch by the thread that binds and frees them
/// ([`RowBatch::records`]).
struct RowBatch {
    /// Each row's EIP-55 account, then its result JSON, back to back.
    text: String,
    /// Each row's end of account and end of JSON in `text`, and end of claims in
    /// `claims`.
    ends: Vec<(usize, usize, usize)>,
    /// Every row's claims: (its tree's index in the claimed trees, leaf index, amount).
    claims: Vec<(usize, u64, crate::primitives::Amount)>,
    /// Why the row after the batch's last could not be made: the rows end there.
    error: Option<anyhow::Error>,
}

impl RowBatch {
    /// The batch's rows as the store takes them, then its error, if any.
    fn records(
        self,
        claimed: &[ClaimedTree],
    ) -> impl Iterator<Item = anyhow::Result<UserRecord>> + '_ {
        let Self {
            text,
            ends,
            claims,
            error,
        } = self;
        let mut from = (0, 0);
        let rows = ends
            .into_iter()
            .map(move |(account_end, json_end, claims_end)| {
                let (text_at, claims_at) = from;
                from = (json_end, claims_end);
                Ok(UserRecord {
                    account: text[text_at..account_end].to_owned(),
                    result_json: text[account_end..json_end].to_owned(),
                    claims: claims[claims_at..claims_end]
                        .iter()
                        .map(|&(t, leaf_index, amount)| UserClaim {
                            tree: Arc::clone(&claimed[t].tree),
                            amount,
                            leaf_index,
                        })
                        .collect(),
                })
            });
        rows.chain(error.map(Err))
    }
}

/// The per-user rows, in batches of `batch` ([`AHEAD_BATCH`] when stored), in the text
/// order of the accounts (`order`, [`pipeline::text_order`] of `accounts`): EIP-55 account, compact
/// result JSON, and the user's claims in the `claimed` trees (its leaf there, `leaves`, and
/// its payout of the tree's asset: the tree's entry, [`pipeline::claim_entries`]). A row
/// that cannot be made ends its batch with the error, and the batches there.
fn user_row_batches<'a>(
    policy: &'a PolicyResult,
    accounts: &'a [[u8; 42]],
    order: &'a [u32],
    (claimed, leaves): (&'a [ClaimedTree], &'a [TreeLeaves]),
    batch: usize,
) -> impl Iterator<Item = RowBatch> + 'a {
    let mut totals = UserTotals::default();
    // Sized as the largest batch so far (≈ 400 KB of text at three assets).
    let mut capacity = (0, 0);
    let mut failed = false;
    order.chunks(batch).map_while(move |chunk| {
        if failed {
            return None;
        }
        let mut text: Vec<u8> = Vec::with_capacity(capacity.0);
        let mut ends = Vec::with_capacity(chunk.len());
        let mut claims = Vec::with_capacity(capacity.1);
        let mut row = |i: usize| -> anyhow::Result<()> {
            let u = policy.user(i);
            text.extend_from_slice(&accounts[i]);
            let account_end = text.len();
            totals.json_into(u, &mut text)?;
            for (t, tree) in claimed.iter().enumerate() {
                let Some(leaf_index) = leaves[tree.k].leaf(i) else {
                    continue;
                };
                let amount = u.payout(&tree.asset).with_context(|| {
                    format!(
                        "{} has a leaf in {} but no payout of {}",
                        u.account(),
                        tree.tree,
                        tree.asset
                    )
                })?;
                claims.push((t, leaf_index, amount));
            }
            ends.push((account_end, text.len(), claims.len()));
            Ok(())
        };
        let error = chunk.iter().find_map(|&i| row(i as usize).err());
        failed = error.is_some();
        capacity = (capacity.0.max(text.len()), capacity.1.max(claims.len()));
        Some(RowBatch {
            text: String::from_utf8(text).expect("EIP-55 texts and JSON are UTF-8"),
            ends,
            claims,
            error,
        })
    })
}

/// Rows per batch [`user_row_batches`] makes: a quarter of an INSERT's rows, so that a
/// batch's text (≈ 390 bytes a row at three assets) stays under the binary's 1 MiB mmap
/// threshold and comes from malloc's heap, where a freed batch's pages are used again by
/// the next. As large as an INSERT, each batch was a fresh mapping: 100k more page faults
/// a million-claimant run.
const AHEAD_BATCH: usize = crate::store::ROWS_PER_INSERT / 4;
/// Batches [`made_ahead`] may be ahead by: a few MB of rows at most.
const AHEAD_BATCHES: usize = 16;

/// `batches`, made on a thread of their own in `scope` up to [`AHEAD_BATCHES`] ahead of
/// the caller, in the same order. The store's thread binds each statement's rows and
/// waits for SQLite's worker; made on that thread too, the rows (JSON, amounts and
/// accounts as text) were not ready when SQLite's worker finished the statement before,
/// which then stood idle for about a third of the time left after the files were written
/// (`perf`, BENCHMARKS.md, "Session 11"). When the caller stops early (drops the
/// iterator), the making thread stops at its next batch.
///
/// # Panics
/// The returned iterator panics when the making thread ended before the batches did (it
/// panicked): the rows must never look complete when they are not, or a run would be
/// committed without some of them.
fn made_ahead<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    batches: impl Iterator<Item = T> + Send + 'scope,
) -> impl Iterator<Item = T> + 'scope {
    // `None` marks the end.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Option<T>>(AHEAD_BATCHES);
    scope.spawn(move || {
        for batch in batches {
            if tx.send(Some(batch)).is_err() {
                return; // the caller stopped
            }
        }
        let _ = tx.send(None);
    });
    std::iter::from_fn(move || match rx.recv() {
        Ok(next) => next,
        Err(_) => panic!("the thread making the rows stopped before their end"),
    })
    .fuse()
}

/// Renders each output straight into its file in a fresh temporary directory beside `dir`
/// (no file is ever held whole in memory), on as many threads as rayon has (each file is
/// rendered by one thread; the largest are taken first, see [`render_order`]). Every file
/// is attempted, so that when some fail the one reported is always the first of them in
/// `names` order, however the threads ran.
fn stage(
    dir: &Path,
    names: &[String],
    render: impl Fn(&str, &mut dyn std::io::Write) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<tempfile::TempDir> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "output directory {} exists and is not a directory",
            dir.display()
        );
    }
    for name in names {
        let target = dir.join(name);
        if target.is_dir() {
            anyhow::bail!(
                "{} is a directory; cannot write the {name} output there",
                target.display()
            );
        }
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".recoup-run-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let write_one = |name: &str| -> anyhow::Result<()> {
        let p = tmp.path().join(name);
        let mut w =
            DirectWriter::create(&p).with_context(|| format!("creating {}", p.display()))?;
        render(name, &mut w).with_context(|| format!("writing {}", p.display()))?;
        w.finish()
            .map(drop)
            .with_context(|| format!("writing {}", p.display()))
    };
    let queue = render_order(names);
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<anyhow::Result<()>>>> =
        names.iter().map(|_| Default::default()).collect();
    let workers = rayon::current_num_threads().clamp(1, names.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(&i) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = write_one(&names[i]);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    for r in results {
        if let Some(Err(e)) = r.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    }
    Ok(tmp)
}

/// The order in which [`stage`] starts the files (indices into `names`): the per-row
/// results first, then the claim trees (proofs make them large), then the rest, so that
/// with two threads the largest files run side by side and the small ones fill in.
fn render_order(names: &[String]) -> Vec<usize> {
    let rank = |n: &str| match n {
        "user_results.csv" => 0,
        "summary.json" | "report.md" => 3,
        "claims.csv" => 2,
        _ => 1,
    };
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| rank(&names[i]));
    order
}

/// Moves staged files into `dir` (renames within one file system).
fn publish(tmp: tempfile::TempDir, dir: &Path, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in names {
        let (from, to) = (tmp.path().join(name), dir.join(name));
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// What the store needs once the claim trees are built: the run's summary JSON and its
/// roots.
type Tail = (String, Vec<RootRecord>);

/// What the store needs once the policy's result is checked.
struct Checked {
    run_id: B256,
    policy: Arc<PolicyResult>,
    /// Each tree's leaves by user, in manifest order.
    leaves: Arc<Vec<TreeLeaves>>,
    /// Each user's EIP-55 text ([`RunOutput::account_texts`]).
    texts: Arc<Vec<[u8; 42]>>,
    /// The users in the byte order of their texts ([`RunOutput::text_order`], SQLite's
    /// BINARY collation). Rows are stored in this order so that on SQLite each insert
    /// appends to the end of its table's primary-key b-tree (on PostgreSQL the order
    /// depends on the database's collation; it changes nothing but speed either way): rows
    /// in account order land all over the b-tree and split its pages, and SQLite spent
    /// more than half of its time on a million-claimant run rebalancing pages (`perf`).
    order: Arc<Vec<u32>>,
    /// The trees whose claims are stored.
    claimed: Vec<ClaimedTree>,
}

/// How the pipeline-and-files side of `recoup run` ended.
enum Produced {
    /// Every file staged in `tmp`, to be published once the run is stored.
    Staged {
        names: Vec<String>,
        tmp: tempfile::TempDir,
        summary: Vec<u8>,
    },
    /// The conservation checks failed; nothing was written or stored.
    CheckFailed(PipelineError),
}

/// What the store is handed as the run goes (see [`produce`]). A sender dropped unsent,
/// because the run failed, rolls the store's transaction back.
struct Feeds {
    /// The run id, the checked policy result and the claims' leaves: the per-user rows
    /// start.
    checked: std::sync::mpsc::SyncSender<Checked>,
    /// The run's summary and roots.
    tail: tokio::sync::oneshot::Sender<Tail>,
    /// Whether the files were staged: the commit, or the rollback.
    staged: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Runs the pipeline and stages the output files, handing the store what it needs as soon
/// as it exists ([`Feeds`]). The run's output is kept in `out_slot`.
fn produce<'a>(
    m: &'a Manifest,
    opts: pipeline::RunOptions,
    dir: &Path,
    (steps, timer, store_on): (&Steps, &crate::timing::StageTimer, bool),
    out_slot: &'a OnceLock<RunOutput>,
    feeds: Feeds,
) -> anyhow::Result<Produced> {
    let checked = feeds.checked;
    let run = pipeline::run_observed(m, opts, |run_id, policy, leaves, (texts, order)| {
        let claimed = claimed_trees(&m.outputs.trees, leaves);
        // Fails only when nothing receives it: the run is not stored.
        let _ = checked.send(Checked {
            run_id,
            policy: Arc::clone(policy),
            leaves: Arc::clone(leaves),
            texts: Arc::clone(texts),
            order: Arc::clone(order),
            claimed,
        });
    });
    let out: &RunOutput = match run {
        Ok(o) => out_slot.get_or_init(|| o),
        Err(e) if e.is_check_failure() => return Ok(Produced::CheckFailed(e)),
        Err(e) => return Err(e.into()),
    };
    timer.lap("pipeline (stages above)");
    steps.step(if store_on {
        "rendering and writing outputs; storing the run"
    } else {
        "rendering and writing outputs"
    });
    let accounts = &out.account_texts;
    // The run's summary, and the roots the store takes with it, are made when a file first
    // needs them. `summary.json` and `report.md` are rendered last ([`render_order`]), so
    // the summary's walk over every user (≈ 0.2 s at a million claimants) runs beside the
    // largest files instead of holding all of them back. A summary error fails the file
    // that asked for it, so the staging; the store, never given the roots, rolls back.
    let tail = std::sync::Mutex::new(Some(feeds.tail));
    let made: OnceLock<anyhow::Result<RunRecord<'_>>> = OnceLock::new();
    let record = || -> anyhow::Result<&RunRecord<'_>> {
        made.get_or_init(|| {
            let started = std::time::Instant::now();
            let summary = report::summary(m, out)?;
            let json = report::summary_json(&summary)?;
            if let Some(tail) = tail.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tail.send((
                    String::from_utf8_lossy(&json).into_owned(),
                    root_records(&summary, out),
                ));
            }
            timer.took("  run record", started.elapsed());
            Ok((summary, json))
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
    };
    let names = output_names(out);
    let staged = stage(dir, &names, |name, w| {
        let started = std::time::Instant::now();
        let r = render_one(m, out, &record, accounts, name, w);
        timer.took(&format!("  {name}"), started.elapsed());
        r
    });
    let _ = feeds
        .staged
        .send(staged.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
    timer.lap("render+write (rest)");
    let tmp = staged?;
    Ok(Produced::Staged {
        names,
        tmp,
        summary: record()?.1.clone(),
    })
}

/// What the store's thread receives as the run goes: the other ends of [`Feeds`].
struct Intake {
    checked: std::sync::mpsc::Receiver<Checked>,
    tail: tokio::sync::oneshot::Receiver<Tail>,
    staged: tokio::sync::oneshot::Receiver<Result<(), String>>,
}

/// Stores the run in `db_url` as its parts arrive ([`Intake`]): opens the database once the
/// policy's result is checked (so that bad input never creates one), inserts the per-user
/// rows with their claims in the text order of the accounts (see [`Checked::order`]), then the
/// roots once the trees exist, and commits once the files are staged. `Ok(None)`: the run failed before
/// its result was checked, and nothing was stored.
fn store_run(
    db_url: &str,
    incident: &IncidentRecord,
    intake: Intake,
    (runtime, timer): (&tokio::runtime::Handle, &crate::timing::StageTimer),
) -> anyhow::Result<Option<Saved>> {
    let Ok(Checked {
        run_id,
        policy,
        leaves,
        texts: accounts,
        order,
        claimed,
    }) = intake.checked.recv()
    else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let store = runtime.block_on(Store::open(db_url))?;
    std::thread::scope(|scope| {
        // A row that cannot be made ends the rows early; the gate then refuses the commit, so
        // the run is rolled back and the row's error reported.
        let row_error: std::cell::RefCell<Option<anyhow::Error>> = Default::default();
        let batches =
            user_row_batches(&policy, &accounts, &order, (&claimed, &leaves), AHEAD_BATCH);
        let claimed = &claimed;
        let users = made_ahead(scope, batches)
            .flat_map(|b| b.records(claimed))
            .map_while(|r| match r {
                Ok(row) => Some(row),
                Err(e) => {
                    row_error.borrow_mut().get_or_insert(e);
                    None
                }
            });
        let tail = async {
            timer.took("  per-user rows stored", started.elapsed());
            let (summary_json, roots) = intake
                .tail
                .await
                .map_err(|_| "the run did not finish".to_owned())?;
            Ok(RunTail {
                summary_json,
                roots,
            })
        };
        let gate = async {
            timer.took("  roots stored", started.elapsed());
            let staged = intake
                .staged
                .await
                .unwrap_or_else(|_| Err("the output files were not written".into()));
            match row_error.borrow().as_ref() {
                Some(e) => Err(format!("{e:#}")),
                None => staged,
            }
        };
        let run_id = run_id.to_string();
        let saved = runtime.block_on(store.save_run_streamed(incident, &run_id, users, tail, gate));
        match row_error.into_inner() {
            Some(e) => Err(e),
            None => Ok(Some(saved?)),
        }
    })
}

/// Runs `recoup run`.
///
/// # Errors
/// Bad manifest or inputs, I/O and database errors (exit 2). A broken conservation
/// invariant returns exit code 1 after printing it; nothing is written either way.
pub async fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let steps = Steps::new(global.progress());
    steps.step("reading the manifest");
    let m = Manifest::load(&args.manifest)?;
    steps.step(if args.no_store {
        "ingest → loss → policy → claim trees"
    } else {
        "ingest → loss → policy → claim trees; storing the run"
    });
    // Nothing after the policy reads the loss rows (the per-row outcomes are in the policy
    // result, the count in `loss_rows()`): the pipeline frees them (≈ 400 MB at a million
    // claimants) before the claim trees, rendering and storing add their memory.
    let opts = pipeline::RunOptions {
        keep_loss_rows: false,
    };
    let dir = args.out.clone().unwrap_or_else(|| m.outputs.dir.clone());
    let incident = incident_record(&m);
    let db_url = global.db_url();
    if !args.no_store {
        // The database is opened only once the policy's result is checked (bad input must
        // not create one); one that cannot be reached (a URL of no supported kind, a server
        // that is down, a directory that does not exist) is refused now, not after the run.
        Store::reachable(&db_url).await?;
    }
    let runtime = tokio::runtime::Handle::current();
    // Filled in as the run goes, read by the threads below (they outlive no borrow of it).
    let out_slot: OnceLock<RunOutput> = OnceLock::new();
    let timer = crate::timing::StageTimer::new();
    // The store is fed in three steps, each over its own channel (see `Feeds`).
    let (checked_tx, checked_rx) = std::sync::mpsc::sync_channel::<Checked>(1);
    let (tail_tx, tail_rx) = tokio::sync::oneshot::channel::<Tail>();
    let (staged_tx, staged_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let outcome = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let saved = (!args.no_store).then(|| {
                let intake = Intake {
                    checked: checked_rx,
                    tail: tail_rx,
                    staged: staged_rx,
                };
                let (incident, db_url) = (&incident, &db_url);
                let (runtime, timer) = (&runtime, &timer);
                s.spawn(move || store_run(db_url, incident, intake, (runtime, timer)))
            });
            let feeds = Feeds {
                checked: checked_tx,
                tail: tail_tx,
                staged: staged_tx,
            };
            let staged = produce(
                &m,
                opts,
                &dir,
                (&steps, &timer, !args.no_store),
                &out_slot,
                feeds,
            );
            let saved = saved.map_or(Ok(None), |h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("storing the run panicked")))
            });
            (staged, saved)
        })
    });
    timer.lap("db save");
    let (staged, saved) = outcome;
    let (names, tmp, summary) = match staged {
        Ok(Produced::Staged {
            names,
            tmp,
            summary,
        }) => (names, tmp, summary),
        Ok(Produced::CheckFailed(e)) => {
            steps.done();
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({ "error": e.to_string(), "check_failed": true })
                );
            } else {
                eprintln!("check failed: {e}\nnothing was written");
            }
            return Ok(EXIT_CHECK_FAILED);
        }
        // A run or staging error wins over the rollback it caused.
        Err(e) => return Err(e),
    };
    let out = out_slot.get().context("the run's output is missing")?;
    let stored = saved?;
    publish(tmp, &dir, &names)?;
    steps.done();
    if global.json {
        println!("{}", String::from_utf8_lossy(&summary).trim_end());
    } else if !global.quiet {
        println!("incident {}  run {}", m.incident.id, out.run_id);
        println!(
            "{} users with a loss, {} loss rows",
            out.policy.user_count(),
            out.loss_rows()
        );
        for t in &out.trees {
            println!(
                "{:<24} {:<14} {:>8} leaves  root {}",
                t.spec.file,
                t.tree.format().to_string(),
                t.tree.len(),
                t.tree.root()
            );
        }
        match stored {
            Some(Saved::Inserted) => println!("stored in {}", global.db_url()),
            Some(Saved::AlreadyStored) => println!(
                "already stored in {} (same inputs, same run id)",
                global.db_url()
            ),
            None => {}
        }
        println!("wrote {} files to {}", names.len(), dir.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches come in their order, all of them, more than the channel holds; a caller
    /// that stops early does not leave the making thread blocked (the scope would never
    /// end).
    #[test]
    fn batches_made_ahead_come_in_order_and_a_caller_may_stop_early() {
        let n = 3 * AHEAD_BATCHES + 5;
        std::thread::scope(|s| {
            let got: Vec<usize> = made_ahead(s, 0..n).collect();
            assert_eq!(got, (0..n).collect::<Vec<_>>());
            let first: Vec<usize> = made_ahead(s, 0..100 * AHEAD_BATCHES).take(3).collect();
            assert_eq!(first, [0, 1, 2]);
            assert_eq!(made_ahead(s, 0..0).count(), 0);
        });
    }

    /// When the thread making the rows panics, the rows do not just end (a run would be
    /// committed without the rest): the caller panics too, before any short stream is seen
    /// as complete.
    #[test]
    fn rows_whose_maker_panicked_do_not_look_complete() {
        let seen = std::sync::Mutex::new(None);
        let caught = std::panic::catch_unwind(|| {
            std::thread::scope(|s| {
                let rows = (0..4 * AHEAD_BATCHES).inspect(|&i| {
                    assert!(i < 2 * AHEAD_BATCHES + 1, "batch {i} cannot be made");
                });
                let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    made_ahead(s, rows).count()
                }));
                *seen.lock().unwrap() = Some(counted.ok());
            })
        });
        // The caller panicked instead of counting a short stream ...
        assert_eq!(
            seen.into_inner().unwrap(),
            Some(None),
            "the rows ended as if complete"
        );
        // ... and the maker's own panic is re-raised when the scope ends.
        assert!(caught.is_err());
    }

    /// A policy result of four users over four assets whose symbols and tier name JSON
    /// must escape: user `n` lost in the first `n` assets, two are paid from treasuries,
    /// one user is in a tier.
    fn four_user_policy() -> PolicyResult {
        use crate::loss::{LossLedger, LossRow};
        use crate::primitives::{Address, Amount, Asset, Decimal};
        let symbols = ["A\"q", "B\\s", "C\u{1}", "Dé"];
        let assets: Vec<Asset> = symbols
            .iter()
            .map(|s| Asset {
                symbol: (*s).into(),
                address: None,
                decimals: 6,
            })
            .collect();
        let mut rows = Vec::new();
        for user in 1..=4u8 {
            for (k, sym) in symbols.iter().enumerate().take(user as usize) {
                let amount = 1_000 * u128::from(user) + 7 * k as u128;
                rows.push(LossRow {
                    account: Address::with_last_byte(user),
                    asset: (*sym).into(),
                    pool: (k % 2 == 1).then(|| "p".into()),
                    class: None,
                    amount: Amount::from_u128(amount),
                    value: Decimal::new(amount as i64, 3),
                    exclusion: None,
                });
            }
        }
        rows.sort_by(|a, b| (a.account, &a.asset, &a.pool).cmp(&(b.account, &b.asset, &b.pool)));
        let ledger = LossLedger {
            rows,
            gains: vec![],
        };
        #[derive(serde::Deserialize)]
        struct Tables {
            policy: crate::policy::PolicyConfig,
            funding: Vec<crate::policy::FundingSource>,
        }
        let t: Tables = toml::from_str(
            "[policy]\nscope = \"per_asset\"\n\
             [[policy.tiers]]\nname = \"small \\\"q\\\" \\\\ é\"\nmin_value = \"0\"\nmax_value = \"1.5\"\npay_bps = 9000\n\
             [[funding]]\nid = \"a\"\nkind = \"treasury\"\nasset = \"A\\\"q\"\namount = \"2500\"\n\
             [[funding]]\nid = \"b\"\nkind = \"treasury\"\nasset = \"B\\\\s\"\namount = \"1000\"\n",
        )
        .unwrap();
        crate::policy::apply(
            &ledger,
            &t.funding,
            &t.policy,
            &Default::default(),
            &assets,
            &Default::default(),
        )
        .unwrap()
    }

    /// The stored row's JSON, held byte for byte to `serde_json`'s text of the same object
    /// (a struct serialized by serde's derive, fields in the documented order), for users in
    /// and out of a tier, over several assets, with a tier name and asset symbols that JSON
    /// must escape (a quote, a backslash, a control character) or carries as UTF-8.
    #[test]
    fn stored_user_json_is_serde_json_s_text_of_the_row() {
        use crate::primitives::{Amount, Decimal};

        /// Decimals as `Decimal`'s own serialization writes them (a string of its text).
        #[derive(serde::Serialize)]
        struct StoredUser<'a> {
            tier: Option<&'a str>,
            loss_value: Decimal,
            residual_value: Decimal,
            losses: Map<'a>,
            haircuts: Map<'a>,
            payouts: Map<'a>,
        }
        /// Amounts by symbol, in their order, as a JSON object.
        struct Map<'a>(&'a [(&'a str, Amount)]);
        impl serde::Serialize for Map<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }

        let policy = four_user_policy();
        let mut totals = UserTotals::default();
        let mut tiers = 0;
        for i in 0..policy.user_count() {
            let u = policy.user(i);
            let mut got = Vec::new();
            totals.json_into(u, &mut got).unwrap();
            let got = String::from_utf8(got).unwrap();
            let want = serde_json::to_string(&StoredUser {
                tier: u.tier(),
                loss_value: u.loss_value(),
                residual_value: u.residual_value(),
                losses: Map(&totals.losses),
                haircuts: Map(&totals.haircuts),
                payouts: Map(&totals.payouts),
            })
            .unwrap();
            assert_eq!(got, want);
            assert!(!totals.losses.is_empty());
            tiers += usize::from(u.tier().is_some());
        }
        assert_eq!(policy.user_count(), 4);
        assert_eq!(tiers, 1, "one user is in the tier");
        assert!(
            (0..4).any(|i| policy.user(i).payouts().count() > 1),
            "a user is paid in two assets"
        );
    }

    /// The stored rows are the same in batches of any size (one row, a few, more than there
    /// are): each row's account, result JSON and claims, made straight from the policy
    /// result. A row that cannot be made (a leaf of a tree whose asset the user is not paid)
    /// ends the rows with its error, after every row before it and none after.
    #[test]
    fn stored_rows_are_the_same_in_batches_of_any_size_and_end_at_a_bad_row() {
        use crate::claims::ClaimEntry;
        use crate::primitives::{Address, Amount};
        let policy = four_user_policy();
        let n = policy.user_count();
        let accounts: Vec<Address> = (0..n).map(|i| policy.user(i).account()).collect();
        let texts = crate::primitives::checksum_many(&accounts);
        let order = crate::pipeline::text_order(&texts);
        // A tree of each paid asset, its entries in account order, with every user paid it.
        let tree = |name: &str, asset: &str, k: usize| {
            let entries: Vec<ClaimEntry> = (0..n)
                .filter_map(|i| {
                    let amount = policy.user(i).payout(asset)?;
                    (!amount.is_zero()).then(|| ClaimEntry {
                        account: accounts[i],
                        amount,
                    })
                })
                .collect();
            let claimed = ClaimedTree {
                tree: name.into(),
                asset: asset.to_owned(),
                k,
            };
            (
                claimed,
                TreeLeaves::of(&accounts, &entries, false),
                entries.len(),
            )
        };
        let (a, a_leaves, a_len) = tree("a.json", "A\"q", 0);
        let (b, b_leaves, b_len) = tree("b \"x\".json", "B\\s", 1);
        assert!(a_len > 1 && b_len > 0, "{a_len} {b_len}");
        let (claimed, leaves) = (vec![a, b], vec![a_leaves, b_leaves]);
        type Row = (String, String, Vec<(String, u64, Amount)>);
        let rows = |claimed: &[ClaimedTree], leaves: &[TreeLeaves], batch| {
            let made: Vec<anyhow::Result<Row>> =
                user_row_batches(&policy, &texts, &order, (claimed, leaves), batch)
                    .flat_map(|b| b.records(claimed))
                    .map(|r| {
                        r.map(|u| {
                            let claims = u
                                .claims
                                .iter()
                                .map(|c| (c.tree.to_string(), c.leaf_index, c.amount));
                            (u.account, u.result_json, claims.collect())
                        })
                    })
                    .collect();
            made
        };
        let mut want: Vec<Row> = Vec::new();
        for &i in &order {
            let u = policy.user(i as usize);
            let mut json = Vec::new();
            UserTotals::default().json_into(u, &mut json).unwrap();
            let claims = claimed
                .iter()
                .filter_map(|t| {
                    let leaf = leaves[t.k].leaf(i as usize)?;
                    Some((t.tree.to_string(), leaf, u.payout(&t.asset).unwrap()))
                })
                .collect();
            want.push((
                u.account().to_checksum(None),
                String::from_utf8(json).unwrap(),
                claims,
            ));
        }
        assert!(
            want.iter().any(|(_, _, c)| c.len() == 2),
            "a user has two claims"
        );
        for batch in [1, 3, AHEAD_BATCH] {
            let got: Vec<Row> = rows(&claimed, &leaves, batch)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, want, "batches of {batch}");
        }
        // A tree in which only the second row's user has a leaf, of an asset nobody is paid:
        // that row fails, the rows after it would not.
        let bad = ClaimedTree {
            tree: "c.json".into(),
            asset: "C\u{1}".to_owned(),
            k: 0,
        };
        let first_bad = 1;
        let entry = ClaimEntry {
            account: accounts[order[first_bad] as usize],
            amount: Amount::from_u128(1),
        };
        let bad_leaves = [TreeLeaves::of(&accounts, &[entry], false)];
        for batch in [1, 3, AHEAD_BATCH] {
            let got = rows(std::slice::from_ref(&bad), &bad_leaves, batch);
            assert_eq!(got.len(), first_bad + 1, "batches of {batch}");
            for (g, w) in got.iter().zip(&want) {
                if let Ok(g) = g {
                    assert_eq!((&g.0, &g.1), (&w.0, &w.1));
                }
            }
            let e = got.last().unwrap().as_ref().unwrap_err();
            assert!(
                format!("{e:#}").contains("has a leaf in c.json but no payout of C"),
                "{e:#}"
            );
        }
    }

    /// A run's file names: the four fixed ones and one tree.
    fn names() -> Vec<String> {
        [
            "summary.json",
            "claims.csv",
            "user_results.csv",
            "report.md",
            "t.json",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn the_largest_files_are_started_first() {
        let n = names();
        let order: Vec<&str> = render_order(&n).iter().map(|&i| n[i].as_str()).collect();
        assert_eq!(
            order,
            [
                "user_results.csv",
                "t.json",
                "claims.csv",
                "summary.json",
                "report.md"
            ]
        );
    }

    #[test]
    fn every_file_is_staged_and_the_first_failure_in_name_order_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let n = names();
        let tmp = stage(&out, &n, |name, w| {
            w.write_all(name.as_bytes())?;
            Ok(())
        })
        .unwrap();
        for name in &n {
            assert_eq!(
                std::fs::read_to_string(tmp.path().join(name)).unwrap(),
                *name
            );
        }
        let staged_at = tmp.path().to_owned();
        drop(tmp);
        assert!(!staged_at.exists());
        // `t.json` is started before `claims.csv`, but `claims.csv` comes first by name
        // order: its error is the one reported, on any number of threads.
        for _ in 0..20 {
            let e = stage(&out, &n, |name, w| {
                if name == "claims.csv" || name == "t.json" {
                    anyhow::bail!("cannot render {name}");
                }
                w.write_all(name.as_bytes())?;
                Ok(())
            })
            .unwrap_err();
            assert!(
                format!("{e:#}").contains("cannot render claims.csv"),
                "{e:#}"
            );
        }
        assert!(!out.exists(), "nothing is published by staging");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 0, "failed stagings leave no temporary directory");
    }
}
