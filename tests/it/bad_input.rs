//! Malformed inputs: each gives an error naming file, line, column and field, exits 2, and
//! leaves the output directory and the database exactly as they were.

use crate::support;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = r#"
[incident]
id = "bad-input-fixture"
chain_id = 1
snapshot_block = 100

[[assets]]
symbol = "DAI"
decimals = 18
price = "1"

[[assets]]
symbol = "USDC"
decimals = 6
price = "1"

[[inputs.balances]]
path = "balances.csv"

[[inputs.losses]]
path = "losses.csv"

[[funding]]
id = "returned"
kind = "recovered"
asset = "DAI"
amount = "1000000000000000000000"
bounty_bps = 1000

[[funding]]
id = "treasury"
kind = "treasury"
asset = "USDC"
amount = "500000000"

[policy]
scope = "global"

[[outputs.trees]]
format = "oz-standard"
asset = "DAI"
file = "dai.json"
"#;

const BALANCES: &str = "account,asset,before,after
0x1111111111111111111111111111111111111111,DAI,5000000000000000000000,1000000000000000000000
0x2222222222222222222222222222222222222222,USDC,900000000,100000000
";

const LOSSES: &str = "account,asset,amount
0x3333333333333333333333333333333333333333,DAI,250000000000000000000
";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Self {
            dir: support::tempdir(),
        };
        f.write("incident.toml", MANIFEST);
        f.write("balances.csv", BALANCES);
        f.write("losses.csv", LOSSES);
        f
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }
    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.path(name)).unwrap();
        assert!(text.contains(from), "fixture {name} lacks {from:?}");
        self.write(name, &text.replacen(from, to, 1));
    }
    fn run(&self) -> (i32, String) {
        self.run_on("recoup.db")
    }
    /// `recoup run` with `--db db`: exit code and stderr.
    fn run_on(&self, db: &str) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_recoup"))
            .current_dir(self.dir.path())
            .args(["-q", "--db", db, "run", "incident.toml", "--out", "out"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    /// Every file under `out/` and the database, as bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut m = BTreeMap::new();
        for dir in [self.path("out")] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd {
                    let p = e.unwrap().path();
                    m.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        for db in ["recoup.db", "recoup.db-wal", "recoup.db-journal"] {
            if let Ok(b) = std::fs::read(self.path(db)) {
                m.insert(self.path(db), b);
            }
        }
        m
    }
    fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".recoup-")
            })
            .collect()
    }
}

/// Runs a good run first, applies `mutate`, runs again and checks the failure.
fn check(name: &str, mutate: impl FnOnce(&Fixture), needles: &[&str]) {
    let f = Fixture::new();
    let (code, err) = f.run();
    assert_eq!(code, 0, "{name}: the unmutated fixture must run: {err}");
    let before = f.snapshot();
    assert!(before.keys().any(|p| p.ends_with("report.md")));
    mutate(&f);
    let (code, err) = f.run();
    assert_eq!(
        code, 2,
        "{name}: expected exit 2, got {code}; stderr: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{name}: stderr lacks {n:?}:\n{err}");
    }
    assert_eq!(
        f.snapshot(),
        before,
        "{name}: output directory or database changed"
    );
    assert!(
        f.leftovers().is_empty(),
        "{name}: staging directory left behind"
    );
}

#[test]
fn bad_address_names_file_line_column_field() {
    check(
        "bad address",
        |f| {
            f.edit(
                "balances.csv",
                "0x2222222222222222222222222222222222222222",
                "0x22222222222222222222222222222222222222zz",
            )
        },
        &["balances.csv:3:1", "field `account`", "40 hex digits"],
    );
}

/// The balance files are read beside the other inputs; with errors in both, the one
/// reported is still the balance file's, the first that reading one file after another meets.
#[test]
fn with_two_bad_files_the_first_in_reading_order_is_named() {
    check(
        "two bad files",
        |f| {
            f.edit(
                "losses.csv",
                "0x3333333333333333333333333333333333333333",
                "0x33333333333333333333333333333333333333zz",
            );
            f.edit(
                "balances.csv",
                "0x2222222222222222222222222222222222222222",
                "0x22222222222222222222222222222222222222zz",
            );
        },
        &["balances.csv:3:1", "field `account`"],
    );
    check(
        "bad loss list alone",
        |f| {
            f.edit(
                "losses.csv",
                "0x3333333333333333333333333333333333333333",
                "0x33333333333333333333333333333333333333zz",
            )
        },
        &["losses.csv:2:1", "field `account`"],
    );
}

#[test]
fn mis_checksummed_address_is_rejected() {
    // The correct EIP-55 form is 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed.
    check(
        "bad checksum",
        |f| {
            f.edit(
                "balances.csv",
                "0x2222222222222222222222222222222222222222",
                "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            )
        },
        &[
            "balances.csv:3:1",
            "EIP-55",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ],
    );
}

#[test]
fn negative_amount_is_rejected() {
    check(
        "negative",
        |f| f.edit("balances.csv", ",100000000\n", ",-100000000\n"),
        &["balances.csv:3:4", "field `after`", "non-negative"],
    );
}

#[test]
fn amount_above_u256_max_is_rejected() {
    let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    check(
        "over 2^256-1",
        |f| f.edit("losses.csv", "250000000000000000000", over),
        &["losses.csv:2:3", "field `amount`", "2^256-1"],
    );
}

#[test]
fn more_decimal_places_than_the_asset_has_is_rejected() {
    check(
        "too many decimals",
        |f| {
            f.edit(
                "incident.toml",
                "path = \"losses.csv\"",
                "path = \"losses.csv\"\nunits = \"token\"",
            );
            f.write(
                "losses.csv",
                "account,asset,amount\n0x3333333333333333333333333333333333333333,USDC,1.1234567\n",
            );
        },
        &[
            "losses.csv:2:3",
            "field `amount`",
            "more decimal places than the asset's 6",
        ],
    );
}

#[test]
fn fractional_base_units_are_rejected_with_a_hint() {
    check(
        "fractional base units",
        |f| f.edit("losses.csv", "250000000000000000000", "2.5"),
        &[
            "losses.csv:2:3",
            "expected an integer of base units",
            "units = \"token\"",
        ],
    );
}

#[test]
fn duplicate_rows_are_rejected() {
    check(
        "duplicate",
        |f| {
            f.write(
                "balances.csv",
                &format!("{BALANCES}0x2222222222222222222222222222222222222222,USDC,5,1\n"),
            )
        },
        &["balances.csv:4", "duplicate row", "first at line 3"],
    );
}

#[test]
fn same_account_asset_in_two_inputs_is_rejected() {
    check(
        "conflict across files",
        |f| {
            f.write(
                "losses.csv",
                "account,asset,amount\n0x1111111111111111111111111111111111111111,DAI,5\n",
            )
        },
        &["losses.csv:2", "balances.csv:2", "already has a loss"],
    );
}

#[test]
fn unknown_asset_in_csv_is_rejected() {
    check(
        "unknown asset",
        |f| f.edit("losses.csv", ",DAI,", ",WBTC,"),
        &["losses.csv:2:2", "field `asset`", "unknown asset \"WBTC\""],
    );
}

#[test]
fn missing_price_is_rejected() {
    check(
        "missing price",
        |f| {
            f.edit(
                "incident.toml",
                "decimals = 6\nprice = \"1\"",
                "decimals = 6",
            )
        },
        &["incident.toml", "missing field `price`"],
    );
}

#[test]
fn wrong_csv_columns_are_rejected() {
    check(
        "wrong columns",
        |f| {
            f.edit(
                "balances.csv",
                "account,asset,before,after",
                "holder,asset,before,after",
            )
        },
        &[
            "balances.csv:1",
            "wrong CSV columns",
            "expected `account,asset,before,after[,pool]`",
        ],
    );
}

#[test]
fn unknown_manifest_key_is_rejected() {
    check(
        "unknown key",
        |f| {
            f.edit(
                "incident.toml",
                "snapshot_block = 100",
                "snapshot_block = 100\nsnapshot_blok = 101",
            )
        },
        &["incident.toml", "unknown field `snapshot_blok`", "line 6"],
    );
}

#[test]
fn empty_file_is_rejected() {
    check(
        "empty file",
        |f| f.write("losses.csv", ""),
        &["losses.csv", "empty file"],
    );
}

#[test]
fn header_without_rows_is_rejected() {
    check(
        "header only",
        |f| f.write("losses.csv", "account,asset,amount\n"),
        &["losses.csv", "empty file"],
    );
}

#[test]
fn funding_in_an_undeclared_asset_is_rejected() {
    check(
        "funds that do not exist",
        |f| {
            f.edit(
                "incident.toml",
                "asset = \"USDC\"\namount",
                "asset = \"USDT\"\namount",
            )
        },
        &[
            "incident.toml",
            "funding[1].asset",
            "unknown asset \"USDT\"",
        ],
    );
}

#[test]
fn cover_list_for_a_missing_source_is_rejected() {
    check(
        "cover source",
        |f| {
            f.edit("incident.toml", "[[funding]]\nid = \"returned\"", "[[inputs.covers]]\nsource = \"nexus\"\npath = \"covers.csv\"\n\n[[funding]]\nid = \"returned\"");
            f.write(
                "covers.csv",
                "account,amount\n0x1111111111111111111111111111111111111111,5\n",
            );
        },
        &[
            "incident.toml",
            "inputs.covers[0].source",
            "no [[funding]] source with id \"nexus\"",
        ],
    );
}

#[test]
fn tree_for_an_unknown_asset_is_rejected() {
    check(
        "tree asset",
        |f| {
            f.edit(
                "incident.toml",
                "asset = \"DAI\"\nfile",
                "asset = \"WETH\"\nfile",
            )
        },
        &["outputs.trees[0].asset", "unknown asset \"WETH\""],
    );
}

#[test]
fn tree_file_that_would_overwrite_the_report_is_rejected() {
    check(
        "tree file",
        |f| {
            f.edit(
                "incident.toml",
                "file = \"dai.json\"",
                "file = \"report.md\"",
            )
        },
        &["outputs.trees[0].file"],
    );
}

#[test]
fn missing_input_file_is_named() {
    check(
        "missing file",
        |f| std::fs::remove_file(f.path("losses.csv")).unwrap(),
        &["losses.csv", "cannot read"],
    );
}

#[test]
fn malformed_toml_names_line_and_column() {
    check(
        "toml syntax",
        |f| f.edit("incident.toml", "chain_id = 1", "chain_id = = 1"),
        &["incident.toml", "line 4, column"],
    );
}

#[test]
fn bounty_above_100_percent_is_rejected() {
    check(
        "bounty bps",
        |f| f.edit("incident.toml", "bounty_bps = 1000", "bounty_bps = 10001"),
        &["incident.toml", "bounty_bps"],
    );
}

#[test]
fn empty_field_is_rejected() {
    check(
        "empty field",
        |f| f.edit("losses.csv", ",DAI,250000000000000000000", ",DAI,"),
        &["losses.csv:2:3", "field `amount`", "empty field"],
    );
}

#[test]
fn ragged_csv_row_is_rejected() {
    check(
        "ragged row",
        |f| {
            f.write(
                "losses.csv",
                "account,asset,amount\n0x3333333333333333333333333333333333333333,DAI\n",
            )
        },
        &["losses.csv:2", "malformed CSV row"],
    );
}

#[test]
fn vault_holders_above_supply_are_rejected() {
    check(
        "vault shares",
        |f| {
            f.edit(
                "incident.toml",
                "[[funding]]\nid = \"returned\"",
                "[[vaults]]\nname = \"v\"\nunderlying = \"DAI\"\ntotal_assets_before = \"100\"\ntotal_supply_before = \"10\"\ntotal_assets_after = \"50\"\ntotal_supply_after = \"10\"\nholders = \"holders.csv\"\n\n[[funding]]\nid = \"returned\"",
            );
            f.write(
                "holders.csv",
                "account,shares\n0x4444444444444444444444444444444444444444,11\n",
            );
        },
        &[
            "vault v",
            "holders hold 11 shares",
            "total_supply_before is 10",
        ],
    );
}

#[test]
fn unknown_numeraire_is_rejected() {
    check(
        "numeraire",
        |f| {
            f.edit(
                "incident.toml",
                "snapshot_block = 100",
                "snapshot_block = 100\nnumeraire = \"EUR\"",
            )
        },
        &["incident.numeraire", "\"EUR\""],
    );
}

#[test]
fn unknown_scope_is_rejected() {
    check(
        "scope",
        |f| {
            f.edit(
                "incident.toml",
                "scope = \"global\"",
                "scope = \"everyone\"",
            )
        },
        &["incident.toml", "unknown variant `everyone`"],
    );
}

#[test]
fn per_pool_scope_without_pools_is_rejected() {
    check(
        "per_pool",
        |f| {
            f.edit(
                "incident.toml",
                "scope = \"global\"",
                "scope = \"per_pool\"",
            )
        },
        &["pools"],
    );
}

#[test]
fn decimals_above_77_are_rejected() {
    check(
        "decimals",
        |f| f.edit("incident.toml", "decimals = 6", "decimals = 78"),
        &["assets[1].decimals", "0..=77"],
    );
}

#[test]
fn a_claim_tree_failing_after_the_rows_began_rolls_them_back() {
    // The per-user rows start being stored as soon as the policy's result is checked, while
    // the claim trees are still being built; a tree that then fails (amounts of ≈ 10^20 do
    // not fit a uint8 leaf) must leave the database as it was.
    check(
        "tree after the rows began",
        |f| {
            f.edit(
                "incident.toml",
                "file = \"dai.json\"",
                "file = \"dai.json\"\nleaf_encoding = [\"address\", \"uint8\"]",
            )
        },
        &["claim tree dai.json", "uint8"],
    );
}

#[test]
fn a_database_url_of_no_supported_kind_is_refused_before_the_run() {
    let f = Fixture::new();
    // Bad input too: the URL is refused first, before the inputs are read (the database is
    // opened only after the policy's checks, so it must be checked on its own).
    f.edit("losses.csv", "250000000000000000000", "-5");
    let (code, err) = f.run_on("mysql://localhost/recoup");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unsupported database URL"), "{err}");
    assert!(f.snapshot().is_empty(), "nothing may be written");
    assert!(f.leftovers().is_empty());
}

/// A database of a supported kind that cannot be reached (a server not listening, a SQLite
/// file in a directory that does not exist) is refused before the run: with bad input
/// beside it, the database is what is reported (the run would have stopped at the input
/// before ever opening it), and nothing is written or created.
#[test]
fn a_database_that_cannot_be_reached_is_refused_before_the_run() {
    for (db, names) in [
        // Port 1 on the loopback: nothing listens there.
        ("postgres://127.0.0.1:1/test", "127.0.0.1:1/test"),
        ("sqlite:missing/dir/recoup.db", "missing/dir"),
    ] {
        let f = Fixture::new();
        f.edit("losses.csv", "250000000000000000000", "-5");
        let (code, err) = f.run_on(db);
        assert_eq!(code, 2, "{db}: {err}");
        assert!(
            err.contains("cannot open database") && err.contains(names),
            "{db}: {err}"
        );
        assert!(
            !err.contains("losses.csv"),
            "{db}: the input was read: {err}"
        );
        assert!(f.snapshot().is_empty(), "{db}: nothing may be written");
        assert!(f.leftovers().is_empty(), "{db}");
        assert!(!Path::new(&f.path("missing")).exists(), "{db}");
    }
}

#[test]
fn a_good_run_twice_is_idempotent() {
    let f = Fixture::new();
    assert_eq!(f.run().0, 0);
    let first = f.snapshot();
    let (code, err) = f.run();
    assert_eq!(code, 0, "{err}");
    let second = f.snapshot();
    // Output files are byte-identical; the database holds the same run once.
    let outputs = |m: &BTreeMap<PathBuf, Vec<u8>>| {
        m.iter()
            .filter(|(p, _)| p.parent().is_some_and(|d| d.ends_with("out")))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(outputs(&first), outputs(&second));
    assert!(Path::new(&f.path("out/dai.json")).exists());
    // The stored claims of the DAI tree are exactly the DAI rows of claims.csv.
    let csv = std::fs::read_to_string(f.path("out/claims.csv")).unwrap();
    let want: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            (v[1] == "DAI").then(|| (v[0].to_owned(), v[2].to_owned()))
        })
        .collect();
    assert!(!want.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got: Vec<(String, String)> = rt.block_on(async {
        use sqlx::Row;
        let s = recoup::store::Store::open(&format!("sqlite:{}", f.path("recoup.db").display()))
            .await
            .unwrap();
        let rows = sqlx::query(
            "SELECT account, amount FROM claims WHERE tree = 'dai.json' ORDER BY leaf_index",
        )
        .fetch_all(s.pool())
        .await
        .unwrap();
        rows.iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    });
    assert_eq!(got, want);
}

#[test]
fn unwritable_output_rolls_back_the_database_transaction() {
    let f = Fixture::new();
    assert_eq!(f.run().0, 0);
    let runs = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s =
                recoup::store::Store::open(&format!("sqlite:{}", f.path("recoup.db").display()))
                    .await
                    .unwrap();
            let n = s.count(recoup::store::StoredTable::Runs).await.unwrap();
            s.pool().close().await;
            n
        })
    };
    assert_eq!(runs(), 1);
    // New inputs (a new run id), and an output path that is a file: the rows were inserted
    // while the files were staged, and must be rolled back.
    f.edit(
        "losses.csv",
        "250000000000000000000",
        "250000000000000000001",
    );
    std::fs::remove_dir_all(f.path("out")).unwrap();
    std::fs::write(f.path("out"), "not a directory").unwrap();
    let (code, err) = f.run();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    assert_eq!(runs(), 1, "the failed run must not be stored");
    assert_eq!(
        std::fs::read_to_string(f.path("out")).unwrap(),
        "not a directory"
    );
    assert!(f.leftovers().is_empty());
}
