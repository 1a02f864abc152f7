//! Storage: SQLite (embedded, the default) or PostgreSQL, through sqlx.
//!
//! One code path over `sqlx::Any` with runtime queries (no database at build time), and
//! one migration set per backend in `migrations/sqlite` and `migrations/postgres`,
//! embedded by `sqlx::migrate!`. Amounts are stored as TEXT of base-unit digits (see the
//! migrations for why). Every save is one transaction: an error leaves the database as it
//! was. Runs are keyed by a hash of the manifest and its inputs, so saving the same run
//! twice is a no-op.
//!
//! A user's claims are kept in the user's own row (`user_results.claims_json`, migration
//! `20261206000006`), one entry per tree that owns its leaves; a tree whose leaves are
//! another's (one payout asset published in two formats) names that tree in
//! `roots.leaves_of` and has no entries of its own (migration `20261205000005`). The
//! `claims` view shows one row per leaf of every tree.

use crate::primitives::Amount;
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor, Row};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("unsupported database URL {0:?}: expected sqlite:PATH or postgres://…")]
    Url(String),
    /// Could not connect.
    #[error("cannot open database {url}: {source}")]
    Connect {
        /// URL (without credentials).
        url: String,
        /// Cause.
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed; the transaction was rolled back.
    #[error("database error while {context}: {source}")]
    Query {
        /// What was being done.
        context: &'static str,
        /// Cause.
        source: sqlx::Error,
    },
    /// The caller withdrew the run before the commit; nothing was stored.
    #[error("run not stored: {0}")]
    Aborted(String),
    /// A run's roots and its users' claims disagree (a tree's claims not as many as its
    /// root's leaves, at a leaf index twice or past the count, or not summing to its total;
    /// claims of a tree with no root or of one whose leaves are another's, two claims of one
    /// account in a tree, a [`RootRecord::leaves_of`] naming no owner); the transaction was
    /// rolled back.
    #[error("claim leaves of tree {tree:?}: {problem}")]
    Leaves {
        /// The tree.
        tree: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The run id exists for another incident (a hash collision or a tampered database).
    #[error("run {run_id} is stored for incident {stored:?}, not {given:?}")]
    RunMismatch {
        /// Run id.
        run_id: String,
        /// Incident stored.
        stored: String,
        /// Incident given.
        given: String,
    },
}

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// An open, migrated database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite database's file, for [`Writeback`] (none in memory and on PostgreSQL).
    file: Option<std::path::PathBuf>,
}

/// The incident a run belongs to.
#[derive(Debug, Clone)]
pub struct IncidentRecord {
    /// Incident id.
    pub id: String,
    /// Human name.
    pub name: Option<String>,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Snapshot block.
    pub snapshot_block: u64,
}

/// One per-user row to store: the user's result and its claims.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// EIP-55 account.
    pub account: String,
    /// The user's result as compact JSON (`user_results.result_json`).
    pub result_json: String,
    /// The user's claim leaves, at most one per tree, only of trees that own their leaves
    /// (see [`RootRecord::leaves_of`]); in any order (they are stored in ascending tree
    /// name order). Empty: the user claims nothing (`claims_json` is NULL).
    pub claims: Vec<UserClaim>,
}

/// One claim leaf of a user, in a tree that owns its leaves.
#[derive(Debug, Clone)]
pub struct UserClaim {
    /// Tree name (its output file), shared by the tree's claims.
    pub tree: std::sync::Arc<str>,
    /// Amount in the tree's asset's base units, stored as its decimal digits in a JSON
    /// string (a JSON number would be read back as a float and round a U256). Being a
    /// U256, it is always 1 to 78 digits of at most 2^256 − 1.
    pub amount: Amount,
    /// The leaf's index ([`crate::pipeline::TreeLeaves`]): the position of its value in an
    /// OpenZeppelin dump, the `index` of a merkle-distributor's claim.
    pub leaf_index: u64,
}

/// One root to store.
#[derive(Debug, Clone)]
pub struct RootRecord {
    /// Tree name.
    pub tree: String,
    /// Tree format.
    pub format: String,
    /// Payout asset symbol.
    pub asset: String,
    /// 0x-prefixed root.
    pub root: String,
    /// Number of leaves.
    pub leaves: u64,
    /// Σ amounts in the tree's asset's base units, stored as decimal digits like
    /// [`UserClaim::amount`].
    pub total: Amount,
    /// `None` when this tree owns its leaves: the users' [`UserClaim`]s of this tree are
    /// its leaves, exactly [`RootRecord::leaves`] of them. Otherwise the run's tree whose
    /// claims are exactly this tree's leaves too (the same accounts and amounts at the same
    /// leaf indices: one payout asset in two formats), which then owns them: it must be a
    /// root of the same run, of the same asset and leaf count, whose own `leaves_of` is
    /// `None`, and no user is given a claim of this tree. Saves storing the same leaves
    /// twice; the `claims` view shows them under both trees.
    pub leaves_of: Option<String>,
}

/// Everything one run stores.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The incident.
    pub incident: IncidentRecord,
    /// 0x-prefixed SHA-256 of the manifest and input bytes ([`crate::pipeline::run_id`]; runs
    /// stored by earlier builds of recoup have the keccak256 of the same bytes).
    pub run_id: String,
    /// The summary JSON.
    pub summary_json: String,
    /// Per-user rows, with their claims.
    pub users: Vec<UserRecord>,
    /// Roots.
    pub roots: Vec<RootRecord>,
}

/// The part of a run known only once its claim trees are built (see
/// [`Store::save_run_streamed`]).
#[derive(Debug, Clone)]
pub struct RunTail {
    /// The summary JSON.
    pub summary_json: String,
    /// Roots.
    pub roots: Vec<RootRecord>,
}

/// Whether a save wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The run was new and is now stored.
    Inserted,
    /// The same run was already stored; nothing changed.
    AlreadyStored,
}

fn q(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { context, source }
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`:
    /// `sqlite:PATH` or `postgres://…`.
    ///
    /// # Errors
    /// [`StoreError::Url`], [`StoreError::Connect`], [`StoreError::Migrate`].
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = connect_url(url)?;
        let shown = shown_url(&url);
        let mut opts = AnyPoolOptions::new();
        if backend == Backend::Sqlite {
            // A rollback journal, not WAL: a run is one large transaction of new rows. In
            // WAL mode every page of it is written twice, to the WAL and then into the
            // database by the checkpoint at commit; with a rollback journal the pages
            // appended past the old end of the file need no journal entry and are written
            // once. On a million-claimant run (0.7 GB of rows) SQLite's thread spent 80% of
            // its time in `pwrite`, half of that in the checkpoint (BENCHMARKS.md, "Session
            // 8"). Setting it also turns a database an earlier version left in WAL mode back.
            // A 16 MiB page cache: the rows are appended in key order, so the cache holds
            // little more than the dirty pages waiting to be written; 128 MiB was as fast
            // and kept 70 MB more resident at a million claimants.
            // 64 KiB pages for a database this creates (SQLite's largest; an existing
            // database keeps the page size it was made with): a run's rows are appended in
            // large sorted batches, which then fill 16 times fewer pages to split, allocate
            // and write. On one day a million-claimant run's save took 0.5–0.9 s less than
            // with 4 KiB pages; on a noisier one the two were within the noise of each
            // other (BENCHMARKS.md, "Session 9"). The file is 3.5% larger (748 MB, 722 MB).
            opts = opts.max_connections(1).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA page_size = 65536; PRAGMA foreign_keys = ON; PRAGMA journal_mode = DELETE; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA cache_size = -16384;").await?;
                    Ok(())
                })
            });
        } else {
            opts = opts.max_connections(4);
        }
        let pool = opts
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect { url: shown, source })?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let file = match backend {
            Backend::Sqlite => sqlite_path(&url),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            backend,
            file,
        })
    }

    /// Checks that [`Store::open`] could open `url`, creating and changing nothing: a
    /// PostgreSQL server is connected to and the connection closed; a SQLite file that
    /// exists must open for reading and writing (as a file: SQLite does not open it here),
    /// and for one that does not, its directory must exist and take a new file (an
    /// unnamed temporary one, gone when closed). Lets a caller refuse a database it cannot
    /// reach before a long run rather than after it: `recoup run` opens its database only
    /// once the policy's checks pass, so that bad input never creates one. Returns the
    /// backend.
    ///
    /// # Errors
    /// [`StoreError::Url`] when `url` is neither `sqlite:PATH` nor `postgres://…`;
    /// [`StoreError::Connect`] when the server cannot be reached or refuses the connection,
    /// or the SQLite file cannot be opened or made.
    pub async fn reachable(url: &str) -> Result<Backend, StoreError> {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let (backend, connect) = connect_url(url)?;
        let shown = shown_url(&connect);
        let err = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let io = |what: String, e: std::io::Error| {
            err(sqlx::Error::Io(std::io::Error::new(
                e.kind(),
                format!("{what}: {e}"),
            )))
        };
        match backend {
            Backend::Postgres => {
                let conn = sqlx::AnyConnection::connect(&connect).await.map_err(err)?;
                conn.close().await.map_err(err)?;
            }
            Backend::Sqlite => match sqlite_path(url) {
                None => {} // in memory
                Some(path) if path.exists() => {
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .map_err(|e| io(format!("cannot open {}", path.display()), e))?;
                }
                Some(path) => {
                    let dir = match path.parent() {
                        Some(d) if !d.as_os_str().is_empty() => d,
                        _ => std::path::Path::new("."),
                    };
                    tempfile::tempfile_in(dir)
                        .map_err(|e| io(format!("cannot create a file in {}", dir.display()), e))?;
                }
            },
        }
        Ok(backend)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for read queries in tests and reports.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stores a run in one transaction. A run id already stored is left as it is.
    ///
    /// # Errors
    /// [`StoreError::Query`] (the transaction is rolled back), [`StoreError::RunMismatch`].
    pub async fn save_run(&self, run: &RunRecord) -> Result<Saved, StoreError> {
        self.save_run_gated(run, async { Ok(()) }).await
    }

    /// Like [`Store::save_run`], but commits only when `gate` resolves to `Ok(())`; on
    /// `Err(reason)` the transaction is rolled back and [`StoreError::Aborted`] returned.
    /// Lets a caller insert the rows while it writes its files, and commit only once they
    /// are safely staged.
    ///
    /// # Errors
    /// As [`Store::save_run`], and [`StoreError::Aborted`].
    pub async fn save_run_gated(
        &self,
        run: &RunRecord,
        gate: impl std::future::Future<Output = Result<(), String>>,
    ) -> Result<Saved, StoreError> {
        let tail = RunTail {
            summary_json: run.summary_json.clone(),
            roots: run.roots.clone(),
        };
        self.save_run_streamed(
            &run.incident,
            &run.run_id,
            run.users.iter().cloned(),
            async { Ok(tail) },
            gate,
        )
        .await
    }

    /// Like [`Store::save_run_gated`], for a run whose parts become known one after the
    /// other: the per-user rows with their claims as soon as the policy's result is checked
    /// (a claim's leaf position is fixed before its tree is hashed), the summary and roots
    /// when `tail` resolves (once the claim trees are built), and the commit when `gate`
    /// does (once the files are staged). Rows are pulled from the iterator a few at a time,
    /// so a run of millions of claimants is never held as rows in memory; neither iterator
    /// nor future is touched when the run is already stored.
    ///
    /// The run's row is inserted first, so that the rows naming it satisfy their foreign
    /// keys as they go (PostgreSQL checks them row by row; SQLite's are checked at the
    /// commit, see migration `20261205000004`), and its summary is filled in
    /// from `tail`, inside the same transaction: no one sees the run before the commit.
    ///
    /// # Errors
    /// As [`Store::save_run_gated`]; when `tail` resolves to `Err(reason)` the
    /// transaction is rolled back and [`StoreError::Aborted`] returned; when a root's
    /// [`RootRecord::leaves_of`] names no root of the run that owns its leaves (the same
    /// asset and leaf count), a user has two claims of one tree, or the claims of a tree
    /// disagree with the roots (a tree with no root, a tree whose leaves are another's, a
    /// count other than its root's [`RootRecord::leaves`], two claims at one leaf index, an
    /// index not below the count, or amounts that do not sum to its [`RootRecord::total`]),
    /// it is rolled back and [`StoreError::Leaves`] returned.
    pub async fn save_run_streamed(
        &self,
        incident: &IncidentRecord,
        run_id: &str,
        users: impl Iterator<Item = UserRecord>,
        tail: impl std::future::Future<Output = Result<RunTail, String>>,
        gate: impl std::future::Future<Output = Result<(), String>>,
    ) -> Result<Saved, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(q("starting a transaction"))?;
        if let Some(row) = sqlx::query("SELECT incident_id FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("looking up the run"))?
        {
            let stored: String = row.try_get(0).map_err(q("reading the run"))?;
            if stored != incident.id {
                return Err(StoreError::RunMismatch {
                    run_id: run_id.to_owned(),
                    stored,
                    given: incident.id.clone(),
                });
            }
            return Ok(Saved::AlreadyStored);
        }
        let i = incident;
        sqlx::query("INSERT INTO incidents (id, name, chain_id, snapshot_block) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET name = excluded.name, chain_id = excluded.chain_id, snapshot_block = excluded.snapshot_block")
            .bind(&i.id)
            .bind(i.name.clone())
            .bind(i.chain_id as i64)
            .bind(i.snapshot_block as i64)
            .execute(&mut *tx)
            .await
            .map_err(q("saving the incident"))?;
        // The run's number: one more than the largest so far, inside this transaction (a
        // concurrent save of another run fails on the unique `seq` and rolls back).
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs")
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(q("numbering the run"))?;
        // The summary is not known yet: an empty one stands in until `tail` gives it.
        sqlx::query("INSERT INTO runs (run_id, incident_id, recoup_version, summary_json, seq) VALUES ($1, $2, $3, '', $4)")
            .bind(run_id)
            .bind(&i.id)
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(q("saving the run"))?;
        // A user whose claims cannot be stored ends the rows there; the run is then rolled
        // back and that error returned.
        let mut tally = ClaimTally::default();
        let mut refused: Option<StoreError> = None;
        let rows = users.map_while(|u| match tally.claims_json(u.claims) {
            Ok(claims) => Some((u.account, u.result_json, claims)),
            Err(e) => {
                refused = Some(e);
                None
            }
        });
        let mut writeback = Writeback::of(self.file.as_deref());
        insert_rows(
            &mut tx,
            self.backend,
            USER_ROWS,
            rows,
            |query| query.bind(seq),
            |query, (account, json, claims)| query.bind(account).bind(json).bind(claims),
            || writeback.statement_done(),
        )
        .await?;
        let tail = match (refused, tail.await) {
            (Some(e), _) => Err(e),
            (None, Err(reason)) => Err(StoreError::Aborted(reason)),
            (None, Ok(tail)) => check_leaves_of(&tail.roots)
                .and_then(|()| tally.check(&tail.roots))
                .map(|()| tail),
        };
        let tail = match tail {
            Ok(tail) => tail,
            Err(e) => {
                tx.rollback().await.map_err(q("rolling back the run"))?;
                return Err(e);
            }
        };
        for r in &tail.roots {
            let _: AnyQueryResult = sqlx::query("INSERT INTO roots (run_id, tree, format, asset, root, leaves, total, leaves_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(run_id)
                .bind(&r.tree)
                .bind(&r.format)
                .bind(&r.asset)
                .bind(&r.root)
                .bind(r.leaves as i64)
                .bind(r.total.to_string())
                .bind(r.leaves_of.clone())
                .execute(&mut *tx)
                .await
                .map_err(q("saving roots"))?;
        }
        sqlx::query("UPDATE runs SET summary_json = $1 WHERE seq = $2")
            .bind(tail.summary_json)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(q("saving the run's summary"))?;
        if let Err(reason) = gate.await {
            tx.rollback().await.map_err(q("rolling back the run"))?;
            return Err(StoreError::Aborted(reason));
        }
        tx.commit().await.map_err(q("committing the run"))?;
        Ok(Saved::Inserted)
    }

    /// Stores a simulation report keyed by its model hash (a repeat is a no-op).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn save_simulation(
        &self,
        model_hash: &str,
        model_name: &str,
        seed: u64,
        trials: u64,
        report_json: &str,
    ) -> Result<Saved, StoreError> {
        let r = sqlx::query("INSERT INTO simulations (model_hash, model_name, seed, trials, report_json) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model_hash) DO NOTHING")
            .bind(model_hash)
            .bind(model_name)
            .bind(seed as i64)
            .bind(trials as i64)
            .bind(report_json)
            .execute(&self.pool)
            .await
            .map_err(q("saving the simulation"))?;
        Ok(if r.rows_affected() == 0 {
            Saved::AlreadyStored
        } else {
            Saved::Inserted
        })
    }

    /// Counts rows of a table (for checks and tests).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn count(&self, table: StoredTable) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        // `table.name()` is one of a fixed set of identifiers.
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(q("counting rows"))?;
        row.try_get::<i64, _>(0).map_err(q("counting rows"))
    }

    /// The stored root of `tree` in `run_id`, if any.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn root(&self, run_id: &str, tree: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT root FROM roots WHERE run_id = $1 AND tree = $2")
            .bind(run_id)
            .bind(tree)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a root"))?;
        row.map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(q("reading a root"))
    }
}

/// The claims of a run's users as they are stored: each user's as its `claims_json` text,
/// tallied per tree, for [`ClaimTally::check`] against the roots once they are known.
#[derive(Debug, Default)]
struct ClaimTally {
    /// Each claimed tree's tally, in order of first appearance.
    trees: Vec<TreeTally>,
}

/// One tree's claims so far: how many, their sum, and which leaf indices they have.
#[derive(Debug)]
struct TreeTally {
    tree: std::sync::Arc<str>,
    /// The tree's name as a JSON string (names come from the manifest), escaped once for
    /// all its claims.
    key: Vec<u8>,
    claims: u64,
    /// Σ amounts, `None` once above 2^256 − 1 (then no root's total can match it).
    total: Option<Amount>,
    /// One bit a leaf index seen.
    seen: Vec<u64>,
    /// The largest leaf index seen.
    max_index: u64,
}

/// Leaf indices at or above this are refused as they come: recoup's trees number their
/// leaves by `u32` below `u32::MAX` ([`crate::pipeline::TreeLeaves`]), and a tally's bitmap
/// grows to the largest index it is given.
const LEAF_INDEX_LIMIT: u64 = u32::MAX as u64;

impl ClaimTally {
    /// One user's `claims_json` (`None`: no claims): a JSON object keyed by tree name in
    /// ascending order, each value `[leaf_index, "amount"]` (the layout migration
    /// `20261206000006` documents and the `claims` view reads). Tallies each claim under its
    /// tree.
    ///
    /// # Errors
    /// [`StoreError::Leaves`] when the user has two claims of one tree, or a claim has a leaf
    /// index another claim of its tree has, or one of 2^32 − 1 or more.
    fn claims_json(&mut self, mut claims: Vec<UserClaim>) -> Result<Option<String>, StoreError> {
        if claims.is_empty() {
            return Ok(None);
        }
        claims.sort_unstable_by(|a, b| a.tree.cmp(&b.tree));
        let mut json = Vec::with_capacity(40 * claims.len());
        json.push(b'{');
        for (i, c) in claims.iter().enumerate() {
            if i > 0 {
                if claims[i - 1].tree == c.tree {
                    return Err(StoreError::Leaves {
                        tree: c.tree.to_string(),
                        problem: "an account has two claims in it",
                    });
                }
                json.push(b',');
            }
            let k = self.tally(c)?;
            json.extend_from_slice(&self.trees[k].key);
            json.extend_from_slice(b":[");
            json.extend_from_slice(itoa::Buffer::new().format(c.leaf_index).as_bytes());
            json.extend_from_slice(b",\"");
            c.amount.push_digits(&mut json);
            json.extend_from_slice(b"\"]");
        }
        json.push(b'}');
        Ok(Some(String::from_utf8(json).expect("JSON text is UTF-8")))
    }

    /// Tallies `c` under its tree; the tree's index in [`ClaimTally::trees`].
    fn tally(&mut self, c: &UserClaim) -> Result<usize, StoreError> {
        let refuse = |problem| {
            Err(StoreError::Leaves {
                tree: c.tree.to_string(),
                problem,
            })
        };
        if c.leaf_index >= LEAF_INDEX_LIMIT {
            return refuse("a claim's leaf index is 2^32 - 1 or more");
        }
        // A run has a few trees, and its users' claims share each tree's name.
        let k = match self
            .trees
            .iter()
            .position(|t| std::sync::Arc::ptr_eq(&t.tree, &c.tree) || t.tree == c.tree)
        {
            Some(k) => k,
            None => {
                self.trees.push(TreeTally {
                    tree: std::sync::Arc::clone(&c.tree),
                    key: serde_json::to_vec(&*c.tree).expect("a string serializes"),
                    claims: 0,
                    total: Some(Amount::ZERO),
                    seen: Vec::new(),
                    max_index: 0,
                });
                self.trees.len() - 1
            }
        };
        let t = &mut self.trees[k];
        let (word, bit) = ((c.leaf_index / 64) as usize, 1u64 << (c.leaf_index % 64));
        if t.seen.len() <= word {
            t.seen.resize(word + 1, 0);
        }
        if t.seen[word] & bit != 0 {
            return refuse("two claims have one leaf index");
        }
        t.seen[word] |= bit;
        t.claims += 1;
        t.max_index = t.max_index.max(c.leaf_index);
        t.total = t.total.and_then(|sum| sum.checked_add(c.amount).ok());
        Ok(k)
    }

    /// Checks the claims tallied against the run's `roots`: every tree claimed has a root
    /// that owns its leaves, and every such root's claims are its leaves: exactly its leaf
    /// count of them, at the indices below it (each once, so every leaf has its claim), and
    /// their amounts sum to its total.
    ///
    /// # Errors
    /// [`StoreError::Leaves`] naming the first tree that disagrees.
    fn check(&self, roots: &[RootRecord]) -> Result<(), StoreError> {
        let err = |tree: &str, problem| {
            Err(StoreError::Leaves {
                tree: tree.to_owned(),
                problem,
            })
        };
        for t in &self.trees {
            match roots.iter().find(|r| r.tree == *t.tree) {
                None => return err(&t.tree, "claims given for a tree with no root in the run"),
                Some(r) if r.leaves_of.is_some() => {
                    return err(
                        &t.tree,
                        "claims given for a tree whose leaves are another tree's",
                    );
                }
                Some(_) => {}
            }
        }
        for r in roots.iter().filter(|r| r.leaves_of.is_none()) {
            let tally = self.trees.iter().find(|t| *t.tree == *r.tree);
            if tally.map_or(0, |t| t.claims) != r.leaves {
                return err(
                    &r.tree,
                    "its users' claims are not as many as its root's leaves",
                );
            }
            let Some(t) = tally else { continue };
            // As many claims as leaves, at distinct indices: all below the count, or some
            // leaf has no claim.
            if t.max_index >= r.leaves {
                return err(
                    &r.tree,
                    "a claim's leaf index is not below its root's leaf count",
                );
            }
            if t.total != Some(r.total) {
                return err(&r.tree, "its users' claims do not sum to its root's total");
            }
        }
        Ok(())
    }
}

/// Checks each root's [`RootRecord::leaves_of`] against the run's other roots: it must name
/// another root of the run that owns its leaves (`leaves_of` `None`), of the same asset and
/// leaf count.
fn check_leaves_of(roots: &[RootRecord]) -> Result<(), StoreError> {
    for r in roots {
        let Some(of) = &r.leaves_of else { continue };
        let err = |problem| {
            Err(StoreError::Leaves {
                tree: r.tree.clone(),
                problem,
            })
        };
        let Some(owner) = roots.iter().find(|o| &o.tree == of && o.tree != r.tree) else {
            return err("its leaves_of names no other root of the run");
        };
        if owner.leaves_of.is_some() {
            return err("its leaves_of names a tree whose leaves are another tree's");
        }
        if (&owner.asset, owner.leaves) != (&r.asset, r.leaves) {
            return err("its leaves_of names a tree of another asset or leaf count");
        }
    }
    Ok(())
}

/// The backend of `url` and the URL sqlx connects to: a SQLite file is created when missing
/// (`mode=rwc`, unless the URL sets a mode).
fn connect_url(url: &str) -> Result<(Backend, String), StoreError> {
    if let Some(rest) = sqlite_rest(url) {
        let sep = if rest.contains('?') { '&' } else { '?' };
        let u = if rest.contains("mode=") {
            format!("sqlite:{rest}")
        } else {
            format!("sqlite:{rest}{sep}mode=rwc")
        };
        Ok((Backend::Sqlite, u))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_owned()))
    } else {
        Err(StoreError::Url(url.to_owned()))
    }
}

/// What follows `sqlite:` (and `//`, if any) in a SQLite URL: its path and query.
fn sqlite_rest(url: &str) -> Option<&str> {
    Some(url.strip_prefix("sqlite:")?.trim_start_matches("//"))
}

/// The file a `sqlite:` URL names (its path, without `//` or query), or `None` for an
/// in-memory database or another kind of URL.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = sqlite_rest(url)?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// A database URL as errors show it: without the credentials before an `@`.
fn shown_url(url: &str) -> String {
    url.split('@').next_back().unwrap_or(url).to_owned()
}

/// Tables whose rows can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredTable {
    /// `incidents`.
    Incidents,
    /// `runs`.
    Runs,
    /// `user_results`.
    UserResults,
    /// `claims`: every tree's leaves (a view over `user_results.claims_json`; see
    /// [`RootRecord::leaves_of`]).
    Claims,
    /// `roots`.
    Roots,
    /// `simulations`.
    Simulations,
}

impl StoredTable {
    fn name(self) -> &'static str {
        match self {
            Self::Incidents => "incidents",
            Self::Runs => "runs",
            Self::UserResults => "user_results",
            Self::Claims => "claims",
            Self::Roots => "roots",
            Self::Simulations => "simulations",
        }
    }
}

/// A query whose values are being bound.
type AnyQuery = sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>;

/// The shape of [`insert_rows`]' statements: `INSERT INTO {table} SELECT` the `shared`
/// leading columns, bound once a statement, and the `cols` others from a `VALUES` list of
/// one tuple a row.
struct Insert {
    /// Table and its columns, shared ones first: `t (a, b, c)`.
    table: &'static str,
    /// Leading columns every row of a statement has in common (the run, the tree).
    shared: usize,
    /// The other columns, one value a row each.
    cols: usize,
    /// What the rows are, for errors.
    context: &'static str,
}

/// The per-user rows: the run's number bound once a statement, account, result JSON and
/// claims JSON a row.
const USER_ROWS: Insert = Insert {
    table: "user_results (run_seq, account, result_json, claims_json)",
    shared: 1,
    cols: 3,
    context: "saving per-user results",
};

/// Statements of per-user rows between two [`Writeback`] hints: ≈ 17 MB of rows at a
/// million claimants (4,096 rows of ≈ 530 bytes a statement). 2 and 32 ran as fast.
const WRITEBACK_EVERY: u32 = 8;

/// Has the kernel write a SQLite database file's new pages to disk while a run's rows go
/// in, and drop them from the page cache once written: `posix_fadvise(POSIX_FADV_DONTNEED)`
/// over the whole file every [`WRITEBACK_EVERY`] statements, which on Linux starts
/// writeback of the dirty pages and evicts the clean ones.
///
/// Why: a million-claimant run writes ≈ 600 MB of pages through SQLite, which until the
/// commit stayed dirty in the page cache, each page newly taken from the kernel's free
/// memory and first touched by the copy in `pwrite` (on these VMs a first touch is slow:
/// ≈ 2 CPU-s of the run went to that copy, `perf`); the commit's `fsync` then wrote them
/// all at once. With the hint the page cache reuses the pages it just wrote back, the
/// copy no longer shows, and the commit has little left to flush (BENCHMARKS.md,
/// "Session 21"). It changes no data and no ordering SQLite relies on: the kernel may
/// write a dirty page back at any time anyway, and SQLite syncs its journal before it
/// writes a page it must be able to roll back. A file that cannot be opened, and other
/// systems, get no hint.
struct Writeback {
    file: Option<std::fs::File>,
    statements: u32,
}

impl Writeback {
    fn of(path: Option<&std::path::Path>) -> Self {
        Self {
            file: path
                .filter(|_| cfg!(target_os = "linux"))
                .and_then(|p| std::fs::File::open(p).ok()),
            statements: 0,
        }
    }

    fn statement_done(&mut self) {
        self.statements += 1;
        if !self.statements.is_multiple_of(WRITEBACK_EVERY) {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.file {
            // Advice only: a failure changes nothing stored.
            let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
        }
    }
}

/// Inserts `rows` with multi-row INSERTs of at most [`ROWS_PER_INSERT`] rows each, shaped
/// as `shape` says. `bind_shared` binds the columns every row has in common, once a
/// statement; `bind` binds each row's own `cols` values in order, taking the row (its
/// strings move into the query instead of being copied). Values shared by every row are
/// bound once: the claim rows of earlier versions bound their run and tree a row each, on a
/// million-claimant run 3M copies of a tree's name, each allocated four times on its way
/// through sqlx's `Any` arguments and freed on SQLite's thread. Rows are pulled from the iterator a chunk at a time. Only placeholders
/// are generated; values are bound. The SQL of a full chunk is made once and shared (`Arc`), only a shorter chunk gets its
/// own: building it per chunk was 6.7% of the CPU spent making a million-claimant run's
/// rows (`perf`).
///
/// The next chunk is made while the database runs the current one: each statement is
/// handed to the driver (for SQLite, its worker thread) by a first poll, the next chunk's
/// rows are made and bound, and only then is the statement awaited. Made one after the
/// other, a million-claimant run's rows spent 3.2 s (per-user rows) and 1.8 s (claims)
/// being made and bound on this thread while SQLite's thread waited, and SQLite's 9.9 s
/// waited on them in turn (BENCHMARKS.md, "Session 8"). `after_each` is called after each
/// statement has run.
async fn insert_rows<T>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    shape: Insert,
    mut rows: impl Iterator<Item = T>,
    bind_shared: impl Fn(AnyQuery) -> AnyQuery,
    bind: impl Fn(AnyQuery, T) -> AnyQuery,
    mut after_each: impl FnMut(),
) -> Result<(), StoreError> {
    use std::future::Future as _;
    use std::task::Poll;
    let sql = |n: usize| -> std::sync::Arc<str> { insert_sql(backend, &shape, n).into() };
    let full = sql(ROWS_PER_INSERT);
    let mut chunk = Vec::with_capacity(ROWS_PER_INSERT);
    let mut next_query = || -> Option<AnyQuery> {
        chunk.clear();
        chunk.extend(rows.by_ref().take(ROWS_PER_INSERT));
        let text = match chunk.len() {
            0 => return None,
            ROWS_PER_INSERT => full.clone(),
            n => sql(n),
        };
        let query = bind_shared(sqlx::query(sqlx::AssertSqlSafe(text)));
        Some(chunk.drain(..).fold(query, &bind))
    };
    let mut next = next_query();
    while let Some(query) = next {
        let mut running = std::pin::pin!(query.execute(&mut **tx));
        let started = std::future::poll_fn(|cx| Poll::Ready(running.as_mut().poll(cx))).await;
        next = next_query();
        match started {
            Poll::Ready(done) => done,
            Poll::Pending => running.await,
        }
        .map_err(q(shape.context))?;
        after_each();
    }
    Ok(())
}

/// `INSERT INTO t (…) SELECT ?, …, v.column1, … FROM (VALUES (…), (…), …) AS v` for `rows`
/// rows as `shape` says: placeholders `$1, $2, …` for PostgreSQL, anonymous `?` for
/// SQLite (both name a `VALUES` list's columns `column1`, `column2`, …).
///
/// On SQLite the statement is `INSERT OR FAIL`: a row that breaks a NOT NULL or PRIMARY KEY
/// constraint fails the statement as plain `INSERT` does, but leaves the statement's earlier
/// rows in place instead of undoing them (the run is rolled back whole anyway). With that,
/// and the rows' foreign key checked at commit (migration `20261205000004`), nothing in the
/// statement can abort half-way, so SQLite keeps no statement journal for it: with one, every
/// existing page a statement changed was first copied to a temporary file, 1.3 GB of writes
/// on a million-claimant run (BENCHMARKS.md, "Session 13").
///
/// SQLite resolves a numbered placeholder's index by a linear scan of the statement's
/// parameter names, and sqlx asks for every parameter's name when it binds, so `$N` costs
/// O(parameters²) a statement there: in a million-claimant run `sqlite3_bind_parameter_name`
/// alone was 9.7% of all CPU (`perf`), the largest single symbol. With `?` sqlx binds by
/// position and SQLite scans nothing.
fn insert_sql(backend: Backend, shape: &Insert, rows: usize) -> String {
    let mut n = 1;
    let mut param = |s: &mut String| {
        match backend {
            Backend::Sqlite => s.push('?'),
            Backend::Postgres => {
                s.push('$');
                s.push_str(&n.to_string());
            }
        }
        n += 1;
    };
    let mut s = String::with_capacity(64 + rows * shape.cols * 7);
    s.push_str(match backend {
        Backend::Sqlite => "INSERT OR FAIL INTO ",
        Backend::Postgres => "INSERT INTO ",
    });
    s.push_str(shape.table);
    s.push_str(" SELECT ");
    for _ in 0..shape.shared {
        param(&mut s);
        s.push_str(", ");
    }
    for c in 1..=shape.cols {
        if c > 1 {
            s.push_str(", ");
        }
        s.push_str("v.column");
        s.push_str(&c.to_string());
    }
    s.push_str(" FROM (VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..shape.cols {
            if c > 0 {
                s.push_str(", ");
            }
            param(&mut s);
        }
        s.push(')');
    }
    s.push_str(") AS v");
    s
}

/// Rows per multi-row INSERT. A full chunk always has the same SQL, so it stays in sqlx's
/// per-connection statement cache. Each statement costs two thread hand-offs (to SQLite's
/// worker and back), during which SQLite's thread waits; with the next chunk made while one
/// runs, 1,024 rows a statement saved ≈ 2 s of a million-claimant save against 256
/// (BENCHMARKS.md, "Session 8"). Once SQLite no longer kept a statement journal for them
/// (see [`insert_sql`]), 4,096 rows a statement ran that save's whole run 0.93× the time
/// of 1,024 (medians of seven alternated runs) for 4–12 MB more peak memory; 8,192 was
/// faster again by less but peaked within 23 MB of the run's 1.5 GiB memory target
/// (BENCHMARKS.md, "Session 13"). A statement binds 1 shared and 3 × 4,096 row values,
/// 12,289 parameters, under SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const ROWS_PER_INSERT: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `path` in the page cache, as util-linux's `fincore` counts them.
    #[cfg(target_os = "linux")]
    fn resident_bytes(path: &std::path::Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "fincore: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Every [`WRITEBACK_EVERY`]th statement, and not before, the file's written pages
    /// leave the page cache. The file is synced first, so that its pages are clean and the
    /// hint drops them at once (a dirty page is only sent to disk by it, and dropped by a
    /// later one). Under the target directory: a `/tmp` that is a tmpfs keeps its files in
    /// the page cache.
    #[cfg(target_os = "linux")]
    #[test]
    fn writeback_drops_the_written_pages_every_few_statements() {
        use std::io::Write as _;
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = dir.path().join("pages");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 8 << 20]).unwrap();
        f.sync_all().unwrap();
        assert_eq!(resident_bytes(&path), 8 << 20);
        let mut wb = Writeback::of(Some(&path));
        for _ in 1..WRITEBACK_EVERY {
            wb.statement_done();
        }
        assert_eq!(resident_bytes(&path), 8 << 20, "dropped too soon");
        wb.statement_done();
        assert!(resident_bytes(&path) < 1 << 20, "not dropped");
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 8 << 20]);
    }

    #[test]
    fn insert_statements_bind_the_shared_columns_once_and_each_row_s_own() {
        let shape = USER_ROWS;
        assert_eq!(
            insert_sql(Backend::Sqlite, &shape, 2),
            "INSERT OR FAIL INTO user_results (run_seq, account, result_json, claims_json) SELECT ?, \
             v.column1, v.column2, v.column3 FROM (VALUES (?, ?, ?), (?, ?, ?)) AS v"
        );
        assert_eq!(
            insert_sql(Backend::Postgres, &shape, 2),
            "INSERT INTO user_results (run_seq, account, result_json, claims_json) SELECT $1, \
             v.column1, v.column2, v.column3 FROM (VALUES ($2, $3, $4), ($5, $6, $7)) AS v"
        );
    }

    /// SQLite gives a statement a statement journal (copies of the pages it changes, kept
    /// to undo it alone) when it writes many rows and may abort half-way
    /// (`usesStmtJournal = isMultiWrite && mayAbort` in sqlite3.c). What may abort shows in
    /// the statement's program: a constraint's `Halt`/`HaltIfNull` with P2 = 2 (`OE_Abort`),
    /// or a foreign key counter with P1 = 0 (an immediate key). The bulk INSERTs must have
    /// neither, and must still check their constraints: each key with `OE_Fail` (3), the
    /// run's foreign key with a deferred counter, which fails the commit.
    #[tokio::test]
    async fn sqlite_bulk_inserts_can_not_abort_half_way_and_still_check_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("r.db").display());
        let store = Store::open(&url).await.unwrap();
        {
            let shape = USER_ROWS;
            let sql = format!("EXPLAIN {}", insert_sql(Backend::Sqlite, &shape, 3));
            let ops: Vec<(String, i64, i64)> = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(1), r.get(2), r.get(3)))
                .collect();
            let halts: Vec<i64> = ops
                .iter()
                .filter(|(op, p1, _)| (op == "Halt" && *p1 != 0) || op == "HaltIfNull")
                .map(|&(_, _, p2)| p2)
                .collect();
            assert!(!halts.is_empty(), "{}: no constraint checked", shape.table);
            assert!(
                halts.iter().all(|&on_error| on_error == 3),
                "{}: a constraint aborts the statement: {halts:?}",
                shape.table
            );
            let fk: Vec<i64> = ops
                .iter()
                .filter(|(op, ..)| op == "FkCounter")
                .map(|&(_, p1, _)| p1)
                .collect();
            assert!(
                !fk.is_empty() && fk.iter().all(|&deferred| deferred == 1),
                "{}: the run's key is not checked at commit: {fk:?}",
                shape.table
            );
        }
        // A row naming no run is refused at commit, and nothing stays.
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query("INSERT OR FAIL INTO user_results (run_seq, account, result_json) VALUES (999, '0x01', '{}')")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(tx.commit().await.is_err(), "a row of no run was committed");
        assert_eq!(store.count(StoredTable::UserResults).await.unwrap(), 0);
        store.pool().close().await;
    }
}
