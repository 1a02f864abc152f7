//! Storage: SQLite (embedded, the default) or PostgreSQL, through sqlx.
//!
//! One code path over `sqlx::Any` with runtime queries (no database at build time), and
//! one migration set per backend in `migrations/sqlite` and `migrations/postgres`,
//! embedded by `sqlx::migrate!`. Amounts are stored as TEXT of base-unit digits (see the
//! migrations for why). Every save is one transaction: an error leaves the database as it
//! was. Runs are keyed by a hash of the manifest and its inputs, so saving the same run
//! twice is a no-op.
//!
//! A run's trees with the same leaves keep them once: the rows of `claim_leaves` belong to
//! the trees that own their leaves, and a tree whose leaves are another's names it in
//! `roots.leaves_of`. The `claims` view shows every tree's leaves (migration
//! `20261205000005`).

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
    /// A run's roots and claim rows disagree on which tree's rows are whose leaves (see
    /// [`RootRecord::leaves_of`]); the transaction was rolled back.
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

/// One claim leaf to store, of a tree that owns its leaves (a tree whose
/// [`RootRecord::leaves_of`] names another has no rows of its own).
#[derive(Debug, Clone)]
pub struct ClaimRecord {
    /// Tree name, shared by the tree's rows.
    pub tree: std::sync::Arc<str>,
    /// EIP-55 account.
    pub account: String,
    /// Amount in the tree's asset's base units, stored as its decimal digits (TEXT: a
    /// number column would round a U256). Being a U256, it is always 1 to 78 digits of at
    /// most 2^256 − 1, the rule PostgreSQL's CHECK on the column states; SQLite's column has
    /// no CHECK (migration `20261204000003`, whose comment names the text check this type
    /// replaced, `check_claim_amount`).
    pub amount: Amount,
    /// Leaf index in the tree's own ordering.
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
    /// [`ClaimRecord::amount`].
    pub total: Amount,
    /// `None` when this tree's leaves are stored as its own claim rows; otherwise the run's
    /// tree whose rows are exactly this tree's leaves too (the same accounts and amounts at
    /// the same leaf indices: one payout asset in two formats), which then owns them: it
    /// must be a root of the same run, of the same asset and leaf count, whose own
    /// `leaves_of` is `None`, and this tree is given no claim rows. Saves storing the same
    /// leaves twice; the `claims` view shows them under both trees.
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
    /// Per user: (EIP-55 account, result JSON).
    pub users: Vec<(String, String)>,
    /// Claim leaves of the trees that own theirs.
    pub claims: Vec<ClaimRecord>,
    /// Roots.
    pub roots: Vec<RootRecord>,
}

/// The part of a run known only once its claim trees are built (see
/// [`Store::save_run_streamed`]).
#[derive(Debug, Clone)]
pub struct RunTail<C> {
    /// The summary JSON.
    pub summary_json: String,
    /// Roots.
    pub roots: Vec<RootRecord>,
    /// Claim leaves of the trees that own theirs, pulled a few at a time.
    pub claims: C,
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
        Ok(Self { pool, backend })
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
            claims: run.claims.iter().cloned(),
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
    /// other: the per-user rows (EIP-55 account, result JSON) as soon as the policy's
    /// result is checked, the summary, roots and claim rows when `tail` resolves (once the
    /// claim trees are built), and the commit when `gate` does (once the files are
    /// staged). Rows are pulled from the iterators a few at a time, so a run of millions of
    /// claimants is never held as rows in memory; neither iterator nor future is touched
    /// when the run is already stored.
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
    /// asset and leaf count), or claim rows are given for a tree whose leaves are another's,
    /// it is rolled back and [`StoreError::Leaves`] returned.
    pub async fn save_run_streamed<C: Iterator<Item = ClaimRecord>>(
        &self,
        incident: &IncidentRecord,
        run_id: &str,
        users: impl Iterator<Item = (String, String)>,
        tail: impl std::future::Future<Output = Result<RunTail<C>, String>>,
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
        insert_rows(
            &mut tx,
            self.backend,
            USER_ROWS,
            users,
            |_| (),
            |query, ()| query.bind(seq),
            |query, (account, json)| query.bind(account).bind(json),
        )
        .await?;
        let tail = match tail.await {
            Ok(tail) => tail,
            Err(reason) => {
                tx.rollback().await.map_err(q("rolling back the run"))?;
                return Err(StoreError::Aborted(reason));
            }
        };
        if let Err(e) = check_leaves_of(&tail.roots) {
            tx.rollback().await.map_err(q("rolling back the run"))?;
            return Err(e);
        }
        // Claim rows of a tree whose leaves are another's would show twice in `claims`: the
        // rows stop at the first one, and the run is rolled back.
        let borrowed: std::collections::HashSet<&str> = tail
            .roots
            .iter()
            .filter(|r| r.leaves_of.is_some())
            .map(|r| r.tree.as_str())
            .collect();
        let mut stray: Option<String> = None;
        let mut last_owner: Option<std::sync::Arc<str>> = None;
        let claims = tail.claims.map_while(|c| {
            if !last_owner
                .as_ref()
                .is_some_and(|t| std::sync::Arc::ptr_eq(t, &c.tree))
            {
                if borrowed.contains(&*c.tree) {
                    stray = Some(c.tree.to_string());
                    return None;
                }
                last_owner = Some(std::sync::Arc::clone(&c.tree));
            }
            Some(c)
        });
        insert_rows(
            &mut tx,
            self.backend,
            CLAIM_ROWS,
            claims,
            |c| std::sync::Arc::clone(&c.tree),
            |query, tree| query.bind(seq).bind(tree.to_string()),
            |query, c| {
                query
                    .bind(c.account)
                    .bind(c.amount.to_string())
                    .bind(c.leaf_index as i64)
            },
        )
        .await?;
        if let Some(tree) = stray {
            tx.rollback().await.map_err(q("rolling back the run"))?;
            return Err(StoreError::Leaves {
                tree,
                problem: "claim rows given for a tree whose leaves are another tree's",
            });
        }
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
    /// `claims`: every tree's leaves (a view; see [`RootRecord::leaves_of`]).
    Claims,
    /// `claim_leaves`: the rows behind `claims`, once per distinct leaf list.
    ClaimLeaves,
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
            Self::ClaimLeaves => "claim_leaves",
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

/// The per-user rows: the run's number bound once a statement, account and result JSON a row.
const USER_ROWS: Insert = Insert {
    table: "user_results (run_seq, account, result_json)",
    shared: 1,
    cols: 2,
    context: "saving per-user results",
};

/// The claim rows: the run's number and the tree bound once a statement, account, amount and
/// leaf index a row.
const CLAIM_ROWS: Insert = Insert {
    table: "claim_leaves (run_seq, tree, account, amount, leaf_index)",
    shared: 2,
    cols: 3,
    context: "saving claims",
};

/// Inserts `rows` with multi-row INSERTs of at most [`ROWS_PER_INSERT`] rows each, shaped
/// as `shape` says. Consecutive rows with the same `key` (and only those) share a
/// statement, whose shared columns `bind_shared` binds from that key; `bind` binds each row's own
/// `cols` values in order, taking the row (its strings move into the query instead of being
/// copied). A claim row's run and tree were bound once a row before: on a
/// million-claimant run that was 3M copies of a tree's name, each allocated four times on
/// its way through sqlx's `Any` arguments and freed on SQLite's thread. Rows are pulled
/// from the iterator a chunk at a time. Only placeholders are generated; values are bound.
/// The SQL of a full chunk is made once and shared (`Arc`), only a shorter chunk gets its
/// own: building it per chunk was 6.7% of the CPU spent making a million-claimant run's
/// rows (`perf`).
///
/// The next chunk is made while the database runs the current one: each statement is
/// handed to the driver (for SQLite, its worker thread) by a first poll, the next chunk's
/// rows are made and bound, and only then is the statement awaited. Made one after the
/// other, a million-claimant run's rows spent 3.2 s (per-user rows) and 1.8 s (claims)
/// being made and bound on this thread while SQLite's thread waited, and SQLite's 9.9 s
/// waited on them in turn (BENCHMARKS.md, "Session 8").
async fn insert_rows<T, K: PartialEq>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    shape: Insert,
    rows: impl Iterator<Item = T>,
    key: impl Fn(&T) -> K,
    bind_shared: impl Fn(AnyQuery, &K) -> AnyQuery,
    bind: impl Fn(AnyQuery, T) -> AnyQuery,
) -> Result<(), StoreError> {
    use std::future::Future as _;
    use std::task::Poll;
    let sql = |n: usize| -> std::sync::Arc<str> { insert_sql(backend, &shape, n).into() };
    let full = sql(ROWS_PER_INSERT);
    let mut rows = rows.peekable();
    let mut chunk = Vec::with_capacity(ROWS_PER_INSERT);
    let mut next_query = || -> Option<AnyQuery> {
        let k = key(rows.peek()?);
        chunk.clear();
        while chunk.len() < ROWS_PER_INSERT {
            match rows.next_if(|r| key(r) == k) {
                Some(r) => chunk.push(r),
                None => break,
            }
        }
        let text = if chunk.len() == ROWS_PER_INSERT {
            full.clone()
        } else {
            sql(chunk.len())
        };
        let query = bind_shared(sqlx::query(sqlx::AssertSqlSafe(text)), &k);
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
/// (BENCHMARKS.md, "Session 13"). A claims statement binds 2 shared and 3 × 4,096 row
/// values, 12,290 parameters, under SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const ROWS_PER_INSERT: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_bind_the_shared_columns_once_and_each_row_s_own() {
        let shape = CLAIM_ROWS;
        assert_eq!(
            insert_sql(Backend::Sqlite, &shape, 2),
            "INSERT OR FAIL INTO claim_leaves (run_seq, tree, account, amount, leaf_index) SELECT ?, ?, \
             v.column1, v.column2, v.column3 FROM (VALUES (?, ?, ?), (?, ?, ?)) AS v"
        );
        assert_eq!(
            insert_sql(Backend::Postgres, &shape, 2),
            "INSERT INTO claim_leaves (run_seq, tree, account, amount, leaf_index) SELECT $1, $2, \
             v.column1, v.column2, v.column3 FROM (VALUES ($3, $4, $5), ($6, $7, $8)) AS v"
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
        for shape in [USER_ROWS, CLAIM_ROWS] {
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
